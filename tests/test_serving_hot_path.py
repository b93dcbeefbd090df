"""The serving hot path (issue 18): a batch of several requests scores exactly as each request alone, the batcher
passes requests (not per-image lists) to the pipeline, onnxruntime sessions get the recorded options, and the fast
JSON and base64 paths accept and refuse exactly what the standard library did."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import numpy as np
import pytest
from rewarddance_exporter.bootstrap import DEFAULT_MODEL
from rewarddance_server.batcher import MicroBatcher
from rewarddance_server.errors import GatewayError
from rewarddance_server.http_app import _loads
from rewarddance_server.images import decode_base64
from rewarddance_server.metrics import Metrics

from rewarddance.cli import main
from rewarddance.preprocess import load_pixels
from rewarddance.scoring.backend import OnnxRuntimeBackend
from rewarddance.scoring.pipeline import RewardPipeline

SAMPLES = json.loads((DEFAULT_MODEL / "samples" / "samples.json").read_text())["samples"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hot") / "model_repository"
    assert main(["bootstrap", "--repo", str(repo)]) == 0
    return repo


@pytest.fixture(scope="module")
def pipeline(repo: Path) -> RewardPipeline:
    run = json.loads((DEFAULT_MODEL / "run.json").read_text())
    return RewardPipeline(repo, f"reward_{run['scale']}").load()


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return load_pixels([DEFAULT_MODEL / "samples" / s["image"] for s in SAMPLES[:5]], 64)


def test_score_requests_equals_scoring_each_image_with_its_prompt(pipeline: RewardPipeline, pixels: np.ndarray):
    prompts, counts, styles = ["a red circle", "two blue squares"], [3, 2], [None, "watercolor"]
    grouped = pipeline.score_requests(pixels, prompts, counts, styles, use_cache=False)
    per_image = pipeline.score(pixels, ["a red circle"] * 3 + ["two blue squares"] * 2, [None] * 3 + ["watercolor"] * 2)
    np.testing.assert_allclose(grouped.reward, per_image.reward, atol=1e-6)
    np.testing.assert_allclose(grouped.components, per_image.components, atol=1e-6)
    alone = pipeline.score(pixels[3:], ["two blue squares"] * 2, ["watercolor"] * 2)
    np.testing.assert_allclose(grouped.reward[3:], alone.reward, atol=1e-5)  # batch composition does not matter
    with pytest.raises(ValueError, match="5 images but the requests hold 4"):
        pipeline.score_requests(pixels, prompts, [2, 2])


def test_batcher_runs_concurrent_requests_as_one_call_and_splits_the_results(
    pipeline: RewardPipeline, pixels: np.ndarray
):
    calls = []

    class Recording:
        name, cache_hits, cache_misses = pipeline.name, 0, 0

        def score_requests(self, *args, **kwargs):
            calls.append(args[1:])
            return pipeline.score_requests(*args, **kwargs)

    recording = Recording()

    async def scenario():
        batcher = MicroBatcher(max_batch=16, max_wait_ms=50, max_queue=8, metrics=Metrics(), workers=1)
        batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit(recording, pixels[:3], "a red circle", None, 30),
                batcher.submit(recording, pixels[3:], "two blue squares", "watercolor", 30),
            )
        finally:
            await batcher.stop()

    first, second = asyncio.run(scenario())
    assert calls == [(["a red circle", "two blue squares"], [3, 2], [None, "watercolor"])]
    assert first.batch_images == second.batch_images == 5
    np.testing.assert_allclose(first.reward, pipeline.score(pixels[:3], ["a red circle"] * 3).reward, atol=1e-5)
    expected = pipeline.score(pixels[3:], ["two blue squares"] * 2, ["watercolor"] * 2).reward
    np.testing.assert_allclose(second.reward, expected, atol=1e-5)


def test_sessions_get_the_recorded_options(repo: Path):
    backend = OnnxRuntimeBackend()
    pipeline = RewardPipeline(repo, "reward_cpu-xs", backend=backend).load()
    session, _ = backend._sessions[(pipeline.name, pipeline.version)]
    options = session.get_session_options()
    assert options.intra_op_num_threads == backend.options["intra_op_num_threads"] == 1
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    spinning = OnnxRuntimeBackend(intra_op_threads=0, allow_spinning=True)
    assert spinning.options["session.intra_op.allow_spinning"] == 1 and spinning.options["intra_op_num_threads"] == 0


@pytest.mark.parametrize(
    "text",
    [
        '{"prompt": "p", "weights": {"style": 0.5}}',
        '{"prompt": "caf\\u00e9 \\ud83d\\ude00", "images": []}',
        '{"weights": {"style": NaN}}',  # orjson refuses NaN; the standard library's reading stands
        '{"prompt": "\\ud800"}',  # a lone surrogate: refused by orjson, read by the standard library
        "[" * 500 + "]" * 500,
    ],
)
def test_fast_json_reads_what_the_standard_library_reads(text: str):
    ours, theirs = _loads(text.encode()), json.loads(text)
    assert json.dumps(ours) == json.dumps(theirs)


def test_an_integer_beyond_64_bits_is_a_float_and_refused_as_a_version():
    assert _loads(b'{"version": 123456789012345678901234567890}')["version"] == pytest.approx(1.2345678901e29)


def test_fast_json_refuses_with_the_old_messages():
    with pytest.raises(ValueError, match="nested too deeply"):
        _loads(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError, match="Expecting"):
        _loads(b"{not json")


def test_base64_fast_path_and_lenient_fallback():
    data = bytes(range(256)) * 3
    text = base64.b64encode(data).decode()
    assert decode_base64(text, "images[0]") == data
    assert decode_base64(text[:40] + "\n  " + text[40:], "images[0]") == data  # whitespace: the lenient path
    assert decode_base64("data:image/png;base64," + text, "images[0]") == data
    with pytest.raises(GatewayError) as refused:
        decode_base64("!!not base64!!", "images[1]")
    assert refused.value.code == "invalid_base64" and refused.value.field == "images[1]"
