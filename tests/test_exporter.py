"""The exporter: ONNX parity guards, manifests, versions never overwritten, reduced precision, and the serving
pipeline (numpy + onnxruntime) scoring exactly like the training path. A tiny reward run on the session's
``tiny`` dataset keeps it fast; the real-Triton checks are in test_exporter_triton.py."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rewarddance_exporter import onnx_io
from rewarddance_exporter.export import ExportError, ExportOptions, Run, export_run, training_path_scores
from rewarddance_trainer.encoders import registry
from rewarddance_trainer.encoders.model import Encoder
from rewarddance_trainer.reward.model import load_model

from rewarddance.components.bundle import ComponentSet
from rewarddance.preprocess import load_pixels
from rewarddance.repository import EncoderRef, ModelRepository, RewardManifest
from rewarddance.scoring.pipeline import RewardPipeline
from rewarddance.scoring.tokenizer import PromptTokenizer


@pytest.fixture
def exported(tiny_repository) -> tuple[Path, RewardManifest]:
    return tiny_repository, ModelRepository(tiny_repository).get("reward_tiny", 1).manifest


@pytest.fixture
def reward_run(tiny_reward_run) -> Path:
    return tiny_reward_run


def _test_images(tiny, n: int = 6) -> tuple[list[bytes], list[str]]:
    images = pd.read_parquet(tiny["data"] / "images.parquet").merge(
        pd.read_parquet(tiny["data"] / "prompts.parquet"), on="prompt_id"
    )
    rows = images[images.split == "test"].head(n)
    return [(tiny["data"] / p).read_bytes() for p in rows.path], rows.text.tolist()


def test_repository_layout_and_manifest(exported):
    repo, manifest = exported
    tree = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and "components" not in p.parts)
    for expected in (
        "image_encoder/config.pbtxt",
        "image_encoder/1/model.onnx",
        "image_encoder/1/model.py",
        "text_encoder/1/tokenizer.json",
        "reward_tiny/config.pbtxt",
        "reward_tiny/1/model.onnx",
        "reward_tiny/1/model.int8.onnx",
        "reward_tiny/1/manifest.json",
        "reward_tiny/1/tokenizer.json",
    ):
        assert expected in tree
    assert not [p for p in repo.rglob(".staging-*")]
    assert manifest.version == 1 and manifest.kind == "reward" and manifest.scale == "tiny" and not manifest.pixel
    assert manifest.components == ("fidelity", "style", "composition", "novelty")
    assert sum(manifest.default_weights.values()) == pytest.approx(1.0)
    assert manifest.encoders == {"image": EncoderRef("image_encoder", 1), "text": EncoderRef("text_encoder", 1)}
    assert set(manifest.export.max_abs_diff) == {"random", "real"}
    assert max(manifest.export.max_abs_diff.values()) <= 1e-4
    assert manifest.export.end_to_end_max_abs_diff <= 1e-4
    assert manifest.image.image_size == 32 and manifest.image.resize == "crop" and manifest.text.context_length == 32
    assert manifest.training["data"]["table_sha256"]
    assert "spearman_reward" in manifest.metrics
    int8 = manifest.variants["int8"]
    assert int8.file == "model.int8.onnx" and int8.measured["eval_images"] > 0
    assert abs(int8.measured["spearman_reward_change"]) < 0.2 and int8.measured["latency_ms_b32"] > 0
    config = (repo / "reward_tiny" / "config.pbtxt").read_text()
    for needle in ("max_batch_size: 64", "dynamic_batching", "max_queue_size: 256", "instance_group", "model_warmup"):
        assert needle in config
    assert 'backend: "python"' in config and "dims: [ -1 ]" not in config


def test_serving_pipeline_scores_like_the_training_path(exported, tiny, reward_run):
    """Same image bytes through decode -> ONNX encoders -> scorers -> ONNX reward vs the torch training path."""
    repo, _ = exported
    data, texts = _test_images(tiny)
    pipeline = RewardPipeline(repo, "reward_tiny").load()
    pixels = load_pixels(data, pipeline.image_size)
    served = pipeline.score(pixels, texts)
    run = Run.open(reward_run)
    reference = training_path_scores(
        Encoder.load(run.encoder_run), load_model(reward_run), ComponentSet.load(run.components), pixels, texts
    )
    assert np.abs(served.components - reference[:, :4]).max() <= 1e-4
    assert np.abs(served.reward - reference[:, 4]).max() <= 1e-4
    assert len(set(np.round(served.reward, 6))) > 1  # the images really score differently


def test_prompt_features_are_cached(exported, tiny):
    repo, _ = exported
    data, texts = _test_images(tiny, 4)
    pipeline = RewardPipeline(repo, "reward_tiny")
    pixels = load_pixels(data, pipeline.image_size)
    pipeline.score(pixels, [texts[0]] * 4)
    assert pipeline.cache_misses == 1 and pipeline.cache_hits == 3
    again = pipeline.score(pixels, [texts[0]] * 4)
    assert pipeline.cache_misses == 1
    fresh = pipeline.score(pixels, [texts[0]] * 4, use_cache=False)
    np.testing.assert_allclose(again.reward, fresh.reward, atol=1e-6)


def test_tokenizer_matches_open_clip():
    ours = PromptTokenizer(registry.minilm_dir() / "tokenizer.json", 32)
    theirs = registry.tokenizer("shapes-clip-tiny")
    texts = [
        "a small red circle at the top left",
        "  three   blue squares,\tin watercolor style  ",
        "word " * 60,  # longer than the context: truncated with [SEP] kept last
        "",
        "Ünïcödé — émoji 🎨 and CAPS",
    ]
    np.testing.assert_array_equal(ours(texts), theirs(texts).numpy())
    assert ours.token_count("word " * 60) == 62


def test_new_export_is_a_new_version_and_reuses_identical_encoders(exported, reward_run, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exported[0], repo)
    second = export_run(reward_run, repo, ExportOptions(flavour="python"), log=lambda _: None)
    models = ModelRepository(repo)
    assert second.version == 2 and models.versions("reward_tiny") == [1, 2]
    assert models.versions("image_encoder") == [1] and models.versions("text_encoder") == [1]
    with pytest.raises(ExportError, match="never overwritten"):
        export_run(reward_run, repo, ExportOptions(version=1), log=lambda _: None)
    assert models.versions("reward_tiny") == [1, 2] and not list(repo.rglob(".staging-*"))


def test_parity_failure_refuses_to_write_the_version(reward_run, tmp_path, monkeypatch):
    real_run_onnx = onnx_io.run_onnx

    def off_by_a_bit(path, inputs):
        out = real_run_onnx(path, inputs)
        return {k: v + 1e-3 if v.dtype == np.float32 else v for k, v in out.items()}

    monkeypatch.setattr(onnx_io, "run_onnx", off_by_a_bit)
    repo = tmp_path / "repo"
    with pytest.raises(onnx_io.ParityError, match="differs from torch"):
        export_run(reward_run, repo, ExportOptions(), log=lambda _: None)
    assert ModelRepository(repo).models() == []
    assert not list(repo.rglob("model.onnx")) and not list(repo.rglob(".staging-*"))


def test_tensorrt_flavour_on_cpu_stops_with_a_clear_message(reward_run, tmp_path):
    with pytest.raises(ExportError, match="needs a CUDA GPU and TensorRT"):
        export_run(reward_run, tmp_path / "repo", ExportOptions(flavour="tensorrt"), log=lambda _: None)


def test_cli_reports_a_missing_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rewarddance.cli", "export", "--run", str(tmp_path / "nope"), "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not a finished reward run" in result.stderr and "Traceback" not in result.stderr


def test_any_image_format_decodes_to_the_same_pixels(tiny):
    data, _ = _test_images(tiny, 1)
    image = Image.open(io.BytesIO(data[0]))
    webp = io.BytesIO()
    image.save(webp, format="WEBP", lossless=True)
    np.testing.assert_array_equal(load_pixels([data[0]], 32), load_pixels([webp.getvalue()], 32))
