"""The exported repository on a real Triton server (``nvidia-pytriton``'s tritonserver, python flavour):
inference over gRPC and HTTP equals in-process onnxruntime, the whole scoring pipeline gives the same scores on
the Triton backend as embedded, and in explicit model-control mode version 1 keeps answering while version 2
loads. The server is started and stopped by the ``triton_server`` fixture (tests/triton_fixtures.py)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from rewarddance_exporter.export import ExportOptions, export_run
from rewarddance_server.triton_backend import TritonBackend, TritonUnavailable
from safetensors.torch import load_file, save_file

from rewarddance.preprocess import load_pixels
from rewarddance.repository import ModelRepository
from rewarddance.scoring.backend import OnnxRuntimeBackend
from rewarddance.scoring.pipeline import RewardPipeline

MODELS = ["image_encoder", "text_encoder", "reward_tiny"]


@pytest.fixture
def repo(tiny_repository, tmp_path) -> Path:
    copy = tmp_path / "model_repository"
    shutil.copytree(tiny_repository, copy)
    return copy


def _real(tiny, n: int = 5) -> tuple[np.ndarray, list[str]]:
    images = pd.read_parquet(tiny["data"] / "images.parquet").merge(
        pd.read_parquet(tiny["data"] / "prompts.parquet"), on="prompt_id"
    )
    rows = images[images.split == "test"].head(n)
    return load_pixels([tiny["data"] / p for p in rows.path], 32), rows.text.tolist()


def _reward_inputs(repo: Path, tiny) -> dict[str, np.ndarray]:
    pipeline = RewardPipeline(repo, "reward_tiny")
    pixels, texts = _real(tiny)
    features = pipeline.prompt_features(texts)
    image = pipeline.backend.infer(pipeline.image_encoder, {"pixels": pixels})
    return {
        "prompt_tokens": np.stack([f.tokens for f in features]).astype(np.float32),
        "prompt_mask": np.stack([f.mask for f in features]),
        "image_tokens": image["tokens"].astype(np.float32),
        "signals": pipeline.score(pixels, texts).signals,
    }


def _infer(module, client, model: str, inputs: dict[str, np.ndarray], version: str = "") -> np.ndarray:
    request = []
    for name, value in inputs.items():
        dtype = {"float32": "FP32", "bool": "BOOL"}[value.dtype.name]
        tensor = module.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        request.append(tensor)
    result = client.infer(model, request, model_version=version, outputs=[module.InferRequestedOutput("reward")])
    return result.as_numpy("reward").reshape(-1)


def test_triton_serves_the_repository_like_onnxruntime(repo, tiny, triton_server):
    server = triton_server(repo, model_control_mode="explicit", load_models=MODELS)
    assert server.startup_seconds is not None and server.startup_seconds < 90
    inputs = _reward_inputs(repo, tiny)
    expected = OnnxRuntimeBackend().infer(ModelRepository(repo).get("reward_tiny"), inputs)["reward"].reshape(-1)
    via_grpc = _infer(grpcclient, grpcclient.InferenceServerClient(server.grpc_url), "reward_tiny", inputs)
    via_http = _infer(httpclient, httpclient.InferenceServerClient(server.http_url), "reward_tiny", inputs)
    np.testing.assert_allclose(via_grpc, expected, atol=1e-6)
    np.testing.assert_allclose(via_http, expected, atol=1e-6)
    print(
        f"triton ready in {server.startup_seconds:.2f} s; grpc/http max |diff| {np.abs(via_grpc - expected).max():.2e}"
    )

    # The gateway's pipeline on the Triton backend scores exactly like the embedded one, over both protocols.
    pixels, texts = _real(tiny)
    embedded = RewardPipeline(repo, "reward_tiny").score(pixels, texts)
    for url in (f"grpc://{server.grpc_url}", f"http://{server.http_url}"):
        triton = RewardPipeline(repo, "reward_tiny", backend=TritonBackend(url)).load().score(pixels, texts)
        np.testing.assert_allclose(triton.components, embedded.components, atol=1e-5)
        np.testing.assert_allclose(triton.reward, embedded.reward, atol=1e-5)


def _perturbed_run(run: Path, out: Path) -> Path:
    """A copy of ``run`` whose heads are shifted, so version 2 answers differently from version 1."""
    shutil.copytree(run, out)
    weights = load_file(out / "reward.safetensors")
    weights["heads.bias"] = weights["heads.bias"] + 0.5
    save_file(weights, out / "reward.safetensors")
    return out


def test_version_1_answers_until_version_2_is_ready(repo, tiny, tiny_reward_run, triton_server, tmp_path):
    server = triton_server(repo, model_control_mode="explicit", load_models=MODELS)
    inputs = _reward_inputs(repo, tiny)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    v1 = _infer(grpcclient, client, "reward_tiny", inputs, "1")
    manifest = export_run(
        _perturbed_run(tiny_reward_run, tmp_path / "run-v2"), repo, ExportOptions(flavour="python"), log=lambda _: None
    )
    assert manifest.version == 2

    answers, failures, stop = [], [], threading.Event()

    def keep_asking() -> None:
        own = grpcclient.InferenceServerClient(server.grpc_url)
        while not stop.is_set():
            try:
                answers.append(_infer(grpcclient, own, "reward_tiny", inputs, "1"))
            except Exception as exc:  # any failure while v2 loads is what this test exists to catch
                failures.append(exc)

    thread = threading.Thread(target=keep_asking)
    thread.start()
    try:
        time.sleep(0.3)
        client.load_model("reward_tiny")  # explicit control: picks up version 2 (policy keeps the newest two)
        assert client.is_model_ready("reward_tiny", "2")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failures and len(answers) >= 3
    for answer in answers:
        np.testing.assert_allclose(answer, v1, atol=1e-6)
    v2 = _infer(grpcclient, client, "reward_tiny", inputs, "2")
    expected_v2 = OnnxRuntimeBackend().infer(ModelRepository(repo).get("reward_tiny", 2), inputs)["reward"].reshape(-1)
    np.testing.assert_allclose(v2, expected_v2, atol=1e-6)
    assert np.abs(v2 - v1).max() > 1e-3  # really the new model
    assert client.is_model_ready("reward_tiny", "1")  # still there for requests routed to it


def test_triton_down_is_reported_fast(repo, triton_server):
    server = triton_server(repo, model_control_mode="explicit", load_models=MODELS)
    backend = TritonBackend(f"grpc://{server.grpc_url}")
    version = ModelRepository(repo).get("reward_tiny")
    assert backend.is_ready()
    server.stop()
    started = time.perf_counter()
    assert not backend.is_ready()
    with pytest.raises(TritonUnavailable):
        backend.infer(version, {"signals": np.zeros((1, 4), np.float32)})
    assert time.perf_counter() - started < 1.5


def test_gateway_on_triton_answers_like_the_embedded_gateway(repo, tiny, triton_server, tmp_path):
    """The same /v1/score and /v1/rank requests to two real gateways, one per backend, give the same scores."""
    import base64

    import httpx
    from test_gateway import ServerProcess, wait_ready

    triton = triton_server(repo, model_control_mode="explicit", load_models=MODELS)
    images = pd.read_parquet(tiny["data"] / "images.parquet").merge(
        pd.read_parquet(tiny["data"] / "prompts.parquet"), on="prompt_id"
    )
    rows = images[images.split == "test"].head(6)
    body = {
        "prompt": rows.text.iloc[0],
        "images": [base64.b64encode((tiny["data"] / p).read_bytes()).decode() for p in rows.path],
    }
    answers = {}
    for backend, extra in (
        ("embedded", ()),
        ("triton", ("--backend", "triton", "--triton-url", f"grpc://{triton.grpc_url}")),
    ):
        server = ServerProcess(repo, tmp_path / f"{backend}.log", "--model", "reward_tiny", *extra)
        try:
            wait_ready(server.url, server.proc)
            with httpx.Client(base_url=server.url, timeout=60) as client:
                score = client.post("/v1/score", json=body)
                rank = client.post("/v1/rank", json=body)
            assert score.status_code == 200 and rank.status_code == 200, (score.text, rank.text)
            answers[backend] = (score.json(), rank.json())
        finally:
            server.stop()
    (embedded_score, embedded_rank), (triton_score, triton_rank) = answers["embedded"], answers["triton"]
    for e, t in zip(embedded_score["results"], triton_score["results"], strict=True):
        assert t["reward"] == pytest.approx(e["reward"], abs=1e-5)
        for name, value in e["components"].items():
            assert t["components"][name] == pytest.approx(value, abs=1e-5)
    assert triton_rank["indices"] == embedded_rank["indices"]
    assert embedded_score["model"] == triton_score["model"] == {"name": "reward_tiny", "version": 1}
