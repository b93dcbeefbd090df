"""rewarddance.repository: the typed manifest (format checked, errors naming the file and the field, format-1 files
from disk read and written back unchanged), publishing (verify, number, config.pbtxt, rename; nothing left on
failure)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from rewarddance.repository import (
    CONFIG,
    MANIFEST,
    PIXEL_ARCHITECTURE,
    EncoderManifest,
    EncoderRef,
    ExportRecord,
    ImagePreprocessing,
    ManifestError,
    ModelRepository,
    PublishError,
    RewardManifest,
    Tensor,
    TextPreprocessing,
    TritonOptions,
    Variant,
    publish,
    staged,
)
from rewarddance.repository import manifest as manifests

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("fidelity", "style", "composition", "novelty")
EXPORT = ExportRecord({"random": 1e-7, "real": 2e-7}, 1e-4, "torchscript", 18, "2.14.1", "2026-11-30T17:01:07+00:00")
TEXT = TextPreprocessing("tokenizer.json", 32, 0)


def prompt_encoder() -> EncoderManifest:
    return EncoderManifest(
        name="prompt_encoder",
        kind="prompt_encoder",
        inputs=(Tensor("input_ids", "int64", (-1, 32)),),
        outputs=(Tensor("tokens", "float32", (-1, 32, 384)), Tensor("mask", "bool", (-1, 32))),
        parameters=22713216,
        export=EXPORT,
        encoder="all-MiniLM-L6-v2",
        encoder_sha256="ab" * 32,
        preprocessing=TEXT,
    )


def pixel_reward(**changes) -> RewardManifest:
    manifest = RewardManifest(
        name="reward_xs",
        inputs=(
            Tensor("pixels", "uint8", (-1, 64, 64, 3)),
            Tensor("prompt_tokens", "float32", (-1, 32, 384)),
            Tensor("prompt_mask", "bool", (-1, 32)),
        ),
        outputs=(Tensor("components", "float32", (-1, 4)), Tensor("reward", "float32", (-1, 1))),
        parameters=245653,
        export=replace(EXPORT, end_to_end_max_abs_diff=1.8e-7, seconds=9.0),
        architecture=PIXEL_ARCHITECTURE,
        scale="cpu-xs",
        components=COMPONENTS,
        default_weights={"fidelity": 0.4000000059604645, "style": 0.25, "composition": 0.25, "novelty": 0.1},
        bt_scale=11.6,
        encoders={"text": EncoderRef("prompt_encoder", 1)},
        image=ImagePreprocessing(64, "pad"),
        text=TEXT,
        styles=("flat", "neon"),
        training={"run": "runs/x", "steps_done": 1200},
        metrics={"spearman_reward": 0.56},
    )
    return replace(manifest, **changes)


def feature_reward_json() -> dict:
    """A format-1 feature (v1) reward manifest as the exporter has always written it (abridged from a real one)."""
    return {
        "format": 1,
        "kind": "reward",
        "name": "reward_tiny",
        "inputs": [{"name": "signals", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "reward", "dtype": "float32", "shape": [-1, 1]}],
        "parameters": 34021,
        "export": {
            "max_abs_diff": {"random": 1.1920928955078125e-07},
            "tolerance": 0.0001,
            "exporter": "torchscript",
            "opset": 18,
            "torch": "2.14.1+cu130",
            "created": "2026-11-30T16:44:27+00:00",
            "end_to_end_max_abs_diff": 1.49e-07,
            "seconds": 4.78,
        },
        "scale": "tiny",
        "components": list(COMPONENTS),
        "default_weights": {"fidelity": 0.4, "style": 0.25, "composition": 0.25, "novelty": 0.1},
        "bt_scale": 9.98,
        "encoders": {"image": {"name": "image_encoder", "version": 1}, "text": {"name": "text_encoder", "version": 1}},
        "preprocessing": {
            "image_size": 32,
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "resize": "crop",
            "tokenizer": "tokenizer.json",
            "context_length": 32,
            "pad_token_id": 0,
            "clean": "whitespace",
        },
        "component_scorers": "components",
        "training": {"run": "/tmp/run", "data": {"path": "/tmp/data"}},
        "metrics": {"spearman_reward": 0.41, "val_n_eval_images": 120.0},
        "variants": {
            "int8": {"file": "model.int8.onnx", "bytes": 81234, "graph_optimization": "all", "eval_images": 96}
        },
        "version": 1,
    }


# -- the manifest ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [prompt_encoder, pixel_reward])
def test_manifests_round_trip_through_json(build):
    manifest = build()
    again = manifests.from_json(json.loads(manifests.dumps(manifest)))
    assert again == manifest


def test_a_format_1_feature_manifest_reads_typed_and_writes_back_unchanged():
    data = feature_reward_json()
    manifest = manifests.from_json(data, "reward_tiny/1/manifest.json")
    assert isinstance(manifest, RewardManifest) and not manifest.pixel and manifest.architecture == "feature"
    assert manifest.encoders["image"] == EncoderRef("image_encoder", 1) and manifest.component_scorers == "components"
    assert manifest.image.image_size == 32 and manifest.image.resize == "crop" and manifest.text.context_length == 32
    assert manifest.variants["int8"] == Variant("model.int8.onnx", "all", {"bytes": 81234, "eval_images": 96})
    assert manifest.export.end_to_end_max_abs_diff == pytest.approx(1.49e-7) and manifest.version == 1
    assert manifest.to_json() == data


def test_the_old_resize_description_reads_as_crop_and_unknown_keys_are_kept():
    data = feature_reward_json()
    data["preprocessing"]["resize"] = "shortest-side bicubic, centre crop"  # what exports before crop/pad wrote
    data["note"] = {"added": "by hand"}
    manifest = manifests.from_json(data)
    assert manifest.image.resize == "crop"
    assert manifest.to_json()["note"] == {"added": "by hand"}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda d: d.update(format=2), "format", "is 2; this version of rewarddance reads format 1"),
        (lambda d: d.pop("format"), "format", "is missing"),
        (lambda d: d.update(kind="decoder"), "kind", "must be one of"),
        (lambda d: d["preprocessing"].pop("image_size"), "preprocessing.image_size", "is missing"),
        (lambda d: d.update(bt_scale="large"), "bt_scale", "must be int or float, got 'large'"),
        (lambda d: d["preprocessing"].update(resize="stretch"), "preprocessing.resize", "must be one of crop, pad"),
        (lambda d: d["encoders"].pop("image"), "encoders.image", "is missing"),
        (lambda d: d["inputs"][0].update(shape=[-1, "4"]), "inputs[0].shape", "must be a list of integers"),
        (lambda d: d["default_weights"].pop("novelty"), "default_weights", "must name every component"),
        (lambda d: d["encoders"]["text"].update(version="1"), "encoders.text.version", "must be int"),
    ],
)
def test_a_bad_manifest_names_the_file_and_the_field(tmp_path: Path, change, field, says):
    data = feature_reward_json()
    change(data)
    path = tmp_path / MANIFEST
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        manifests.load(path)
    assert str(info.value).startswith(f"{path}: field {field!r} ") and says in str(info.value)


def test_a_manifest_that_is_not_json_names_the_file(tmp_path: Path):
    path = tmp_path / MANIFEST
    path.write_text('{"format": 1, "kind": "rew')
    with pytest.raises(ManifestError, match=re.escape(f"{path}: not valid JSON")):
        manifests.load(path)


# -- publishing -----------------------------------------------------------------------------------------------------
def test_publish_verifies_numbers_writes_the_config_and_renames(tmp_path: Path):
    repo = ModelRepository(tmp_path)
    with staged(repo.root, "reward_xs") as staging:
        (staging / "model.onnx").write_bytes(b"graph")
        published = publish(repo, staging, pixel_reward(), TritonOptions(flavour="python"), verify=_ok)
    assert published.version == 1 and published.export.end_to_end_max_abs_diff == 3e-6
    assert repo.versions("reward_xs") == [1] and repo.get("reward_xs").manifest == published
    assert (tmp_path / "reward_xs" / "1" / "model.py").exists()  # the python flavour's generic model
    config = (tmp_path / "reward_xs" / CONFIG).read_text()
    assert 'name: "reward_xs"' in config and 'backend: "python"' in config and "latest: { num_versions: 2 }" in config
    assert "dims: [ 64, 64, 3 ]" in config and "data_type: TYPE_UINT8" in config
    assert not list(tmp_path.rglob(".staging-*"))


def _ok(staged_version) -> float:
    """A verification that reads the staged version the way the serving pipeline would."""
    assert staged_version.version == 0 and staged_version.manifest.name == "reward_xs"
    return 3e-6


def test_a_version_that_fails_verification_or_whose_number_is_taken_is_not_published(tmp_path: Path):
    repo = ModelRepository(tmp_path)
    with pytest.raises(PublishError, match=r"0\.5 away from the training path"), staged(repo.root, "reward_xs") as s:
        publish(repo, s, pixel_reward(), TritonOptions(), verify=lambda _: 0.5)
    assert repo.versions("reward_xs") == [] and not list(tmp_path.rglob(".staging-*"))
    with staged(repo.root, "reward_xs") as s:
        publish(repo, s, pixel_reward(), TritonOptions())
    with pytest.raises(PublishError, match="never overwritten"), staged(repo.root, "reward_xs") as s:
        publish(repo, s, pixel_reward(), TritonOptions(), version=1)
    assert repo.versions("reward_xs") == [1] and not list(tmp_path.rglob(".staging-*"))


def test_encoders_are_found_by_their_weights_and_keep_every_version_loaded(tmp_path: Path):
    repo = ModelRepository(tmp_path)
    with staged(repo.root, "prompt_encoder") as s:
        publish(repo, s, prompt_encoder(), TritonOptions())
    assert repo.find("prompt_encoder", "ab" * 32) == 1 and repo.find("prompt_encoder", "cd" * 32) is None
    assert "version_policy: { all: {} }" in (tmp_path / "prompt_encoder" / CONFIG).read_text()
    assert repo.models(kind="prompt_encoder") == ["prompt_encoder"] and repo.models(kind="reward") == []
