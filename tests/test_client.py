"""The Python SDK (client/rewarddance_client) against a mocked HTTP transport and an in-test gRPC server.

No gateway is needed: HTTP goes through ``httpx.MockTransport``; gRPC through a servicer built here on the
generated ``_pb2_grpc`` stubs, listening on 127.0.0.1. Sleeps between retries are replaced, so nothing waits.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# A venv whose editable install predates client/rewarddance_client/__init__.py sees the folder as a namespace
# package (refresh with `pip install --no-deps -e .`); putting client/ first imports the real package either way.
sys.path.insert(0, str(ROOT / "client"))

import rewarddance_client  # noqa: E402
from rewarddance_client import (  # noqa: E402
    APIError,
    APITimeoutError,
    AsyncRewardClient,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RewardClient,
    RewardError,
    UnavailableError,
)
from rewarddance_client import _retry as retry_module  # noqa: E402
from rewarddance_client._proto import rewarddance_v1_pb2 as pb  # noqa: E402
from rewarddance_client._proto import rewarddance_v1_pb2_grpc as pb_grpc  # noqa: E402

BASE = "http://gateway.test:8000"
COMPONENTS = {"fidelity": 0.5, "style": 0.25, "composition": 0.75, "novelty": 0.125}
WEIGHTS = {"fidelity": 1.0, "style": 2.0, "composition": 0.5, "novelty": 0.25}


def _result(reward: float) -> dict[str, Any]:
    return {"reward": reward, "components": COMPONENTS}


SCORE_JSON = {
    "model": {"name": "reward_small", "version": 3},
    "weights": WEIGHTS,
    "results": [_result(1.5), _result(-0.5)],
}
COMPARE_JSON = {
    "model": {"name": "reward_small", "version": 3},
    "weights": WEIGHTS,
    "preferred": "b",
    "probability": 0.875,
    "a": _result(-0.5),
    "b": _result(1.5),
}
RANK_JSON = {**SCORE_JSON, "indices": [0, 1]}
MODELS_JSON = {
    "default_model": "reward_small",
    "models": [
        {
            "name": "reward_small",
            "scale": "small",
            "default_version": 3,
            "versions": [
                {
                    "version": 3,
                    "ready": True,
                    "parameters": 1234567,
                    "metrics": {"pair_accuracy": 0.81},
                    "default_weights": WEIGHTS,
                    "components": list(COMPONENTS),
                }
            ],
        }
    ],
}


# ---------------------------------------------------------------------------------------------------- fixtures


class Recorder:
    """A scripted HTTP server: pops one queued response per request, remembers every request."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(response, Exception):
            raise response
        return response

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


def http_client(recorder: Recorder, **kwargs: Any) -> RewardClient:
    return RewardClient(BASE, http_client=httpx.Client(transport=httpx.MockTransport(recorder)), **kwargs)


def error(status: int, code: str = "bad", field: str | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": f"failed with {status}", "field": field}}
    return httpx.Response(status, json=body, headers={"x-request-id": f"req-{status}", **headers})


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay the retry loop asked for (sync and async), without waiting."""
    delays: list[float] = []

    async def async_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(retry_module, "sleep", delays.append)
    monkeypatch.setattr(retry_module, "async_sleep", async_sleep)
    return delays


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REWARDDANCE_API_KEY", raising=False)
    monkeypatch.delenv("REWARDDANCE_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def png() -> bytes:
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[1, 2] = (255, 0, 0)
    rgb[3, 4] = (0, 128, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ HTTP: requests


def test_score_sends_base64_images_and_fields_and_parses_the_response(png: bytes) -> None:
    recorder = Recorder(httpx.Response(200, json=SCORE_JSON, headers={"x-request-id": "abc"}))
    with http_client(recorder, api_key="sk-test") as client:
        result = client.score(
            "a watercolor fox", [png, b"\xff\xd8jpeg"], style="watercolor", weights={"style": 2}, model="m", version=3
        )
    request = recorder.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/v1/score")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["user-agent"] == f"rewarddance-client/{rewarddance_client.__version__}"
    body = recorder.body()
    assert [base64.b64decode(image, validate=True) for image in body.pop("images")] == [png, b"\xff\xd8jpeg"]
    assert body == {
        "prompt": "a watercolor fox",
        "style": "watercolor",
        "weights": {"style": 2.0},
        "model": "m",
        "version": 3,
    }
    assert [r.reward for r in result.results] == [1.5, -0.5]
    assert result.results[1].components.composition == 0.75
    assert (result.model.name, result.model.version, result.weights.style) == ("reward_small", 3, 2.0)
    assert result.request_id == "abc"


def test_unset_options_are_left_out_and_no_key_sends_no_authorization(png: bytes) -> None:
    recorder = Recorder(httpx.Response(200, json=SCORE_JSON))
    http_client(recorder).score("p", [png])
    assert set(recorder.body()) == {"prompt", "images"}
    assert "authorization" not in recorder.requests[0].headers


def test_api_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, png: bytes) -> None:
    monkeypatch.setenv("REWARDDANCE_API_KEY", "from-env")
    recorder = Recorder(httpx.Response(200, json=SCORE_JSON))
    http_client(recorder).score("p", [png])
    assert recorder.requests[0].headers["authorization"] == "Bearer from-env"


def test_compare_sends_image_a_and_image_b(png: bytes) -> None:
    recorder = Recorder(httpx.Response(200, json=COMPARE_JSON))
    result = http_client(recorder).compare("p", png, b"second", weights={"novelty": 0.0})
    body = recorder.body()
    assert str(recorder.requests[0].url) == f"{BASE}/v1/compare"
    assert base64.b64decode(body["image_a"]) == png and base64.b64decode(body["image_b"]) == b"second"
    assert body["weights"] == {"novelty": 0.0} and "images" not in body
    assert (result.preferred, result.probability, result.b.reward, result.a.reward) == ("b", 0.875, 1.5, -0.5)


def test_rank_models_health_and_ready() -> None:
    routes = {
        "/v1/rank": httpx.Response(200, json=RANK_JSON),
        "/v1/models": httpx.Response(200, json=MODELS_JSON),
        "/healthz": httpx.Response(200, json={"status": "ok"}),
        "/readyz": httpx.Response(200, json={"status": "ready"}),
    }
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return routes[request.url.path]

    client = RewardClient(BASE + "/", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert client.rank("p", [b"x", b"y"]).indices == [0, 1]
    models = client.models()
    version = models.models[0].versions[0]
    assert (models.default_model, version.parameters, version.metrics["pair_accuracy"]) == (
        "reward_small",
        1234567,
        0.81,
    )
    assert version.components == ["fidelity", "style", "composition", "novelty"]
    assert client.health().status == "ok"
    assert client.ready() is True
    routes["/readyz"] = error(503, "not_ready")
    assert client.ready() is False
    assert seen[:4] == [("POST", "/v1/rank"), ("GET", "/v1/models"), ("GET", "/healthz"), ("GET", "/readyz")]


def test_a_response_that_breaks_the_contract_raises_api_error() -> None:
    client = http_client(Recorder(httpx.Response(200, json={"model": {"name": "m"}})))
    with pytest.raises(APIError) as info:
        client.score("p", [b"x"])
    assert info.value.code == "invalid_response" and "ScoreResponse" in info.value.message


# -------------------------------------------------------------------------------------------------- HTTP: errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (413, BadRequestError),
        (415, BadRequestError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, UnavailableError),
        (504, APITimeoutError),
    ],
)
def test_each_status_raises_its_error_class(status: int, cls: type[APIError]) -> None:
    client = http_client(Recorder(error(status, code="image_corrupt", field="images[1]")), max_retries=0)
    with pytest.raises(cls) as info:
        client.score("p", [b"x"])
    err = info.value
    assert type(err) is cls and isinstance(err, RewardError)
    assert (err.status, err.code, err.field, err.request_id) == (status, "image_corrupt", "images[1]", f"req-{status}")
    assert err.message == f"failed with {status}"
    assert str(err) == f"{status} image_corrupt: failed with {status} (field: images[1]) [request_id: req-{status}]"


def test_api_timeout_error_is_a_builtin_timeout_error() -> None:
    assert issubclass(APITimeoutError, TimeoutError) and issubclass(APITimeoutError, APIError)


def test_an_error_without_the_json_envelope_keeps_the_text() -> None:
    client = http_client(Recorder(httpx.Response(502, text="upstream down")), max_retries=0)
    with pytest.raises(InternalServerError) as info:
        client.models()
    assert (info.value.status, info.value.message, info.value.code) == (502, "upstream down", None)


# ------------------------------------------------------------------------------------------------- HTTP: retries


def test_retries_a_503_then_succeeds(sleeps: list[float]) -> None:
    recorder = Recorder(error(503), httpx.Response(200, json=SCORE_JSON))
    result = http_client(recorder).score("p", [b"x"])
    assert len(recorder.requests) == 2 and result.results[0].reward == 1.5
    assert len(sleeps) == 1 and 0.375 <= sleeps[0] <= 0.5  # first backoff: 0.5 s minus up to 25 % jitter
    assert recorder.body(0) == recorder.body(1)


def test_backoff_grows_and_the_last_error_is_raised(sleeps: list[float]) -> None:
    recorder = Recorder(error(503, code="backend_down"))
    with pytest.raises(UnavailableError) as info:
        http_client(recorder, max_retries=3).score("p", [b"x"])
    assert len(recorder.requests) == 4 and info.value.code == "backend_down"
    assert [0.375 <= sleeps[0] <= 0.5, 0.75 <= sleeps[1] <= 1.0, 1.5 <= sleeps[2] <= 2.0] == [True] * 3


def test_retry_after_is_honoured_and_capped(sleeps: list[float]) -> None:
    recorder = Recorder(
        error(429, **{"retry-after": "3"}), error(429, **{"retry-after": "7200"}), httpx.Response(200, json=SCORE_JSON)
    )
    http_client(recorder).score("p", [b"x"])
    assert len(recorder.requests) == 3
    assert sleeps == [3.0, retry_module.MAX_RETRY_AFTER]


def test_rate_limit_error_carries_retry_after() -> None:
    with pytest.raises(RateLimitError) as info:
        http_client(Recorder(error(429, **{"retry-after": "1.5"})), max_retries=0).score("p", [b"x"])
    assert info.value.retry_after == 1.5


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(sleeps: list[float], status: int) -> None:
    recorder = Recorder(error(status), httpx.Response(200, json=SCORE_JSON))
    with pytest.raises(APIError):
        http_client(recorder).score("p", [b"x"])
    assert len(recorder.requests) == 1 and sleeps == []


def test_client_timeout_raises_api_timeout_error_after_retries(sleeps: list[float]) -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError) as info:
        http_client(recorder, max_retries=1).score("p", [b"x"], timeout=2.5)
    assert (info.value.status, info.value.code) == (None, "timeout")
    assert len(recorder.requests) == 2 and len(sleeps) == 1
    assert recorder.requests[0].extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


def test_default_timeout_applies_when_the_call_gives_none() -> None:
    recorder = Recorder(httpx.Response(200, json=SCORE_JSON))
    http_client(recorder, timeout=7.0).score("p", [b"x"])
    assert recorder.requests[0].extensions["timeout"]["read"] == 7.0


def test_connection_errors_are_unavailable_and_retried(sleeps: list[float]) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(200, json={"status": "ok"}))
    assert http_client(recorder).health().status == "ok"
    assert len(recorder.requests) == 2
    with pytest.raises(UnavailableError) as info:
        http_client(Recorder(httpx.ConnectError("refused")), max_retries=0).health()
    assert (info.value.status, info.value.code) == (None, "connection_error")


# --------------------------------------------------------------------------------------------- HTTP: image input


def test_pil_numpy_path_bytes_and_file_all_send_the_same_png(png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    path.write_bytes(png)
    pil = Image.open(io.BytesIO(png))
    array = np.asarray(pil.convert("RGB"))
    recorder = Recorder(httpx.Response(200, json=SCORE_JSON))
    with path.open("rb") as handle:
        http_client(recorder).score("p", [pil, array, path, str(path), png, bytearray(png), handle])
    assert {base64.b64decode(image) for image in recorder.body()["images"]} == {png}


@pytest.mark.parametrize(
    ("images", "exc", "match"),
    [
        (b"one image", TypeError, "wrap a single image in a list"),
        (np.zeros((2, 2, 3), np.uint8), TypeError, "not one array"),
        ([], ValueError, "at least one image"),
        ([np.zeros((2, 2), np.uint8)], ValueError, r"images\[0\]: a numpy image must be uint8 of shape \(H, W, 3\)"),
        ([b"x", np.zeros((2, 2, 3), np.float32)], ValueError, r"images\[1\].*float32"),
        ([b"x", b""], ValueError, r"images\[1\]: the image is empty"),
        (["/no/such/file.png"], FileNotFoundError, "no image file"),
        ([3.5], TypeError, "got float"),
    ],
)
def test_bad_image_inputs_name_the_field(images: Any, exc: type[Exception], match: str) -> None:
    recorder = Recorder(httpx.Response(200, json=SCORE_JSON))
    with pytest.raises(exc, match=match):
        http_client(recorder).score("p", images)
    assert recorder.requests == []


def test_numpy_without_pillow_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"needs Pillow.*pip install pillow"):
        http_client(Recorder(httpx.Response(200, json=SCORE_JSON))).score("p", [np.zeros((2, 2, 3), np.uint8)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": {"style": "high"}}, "weights: expected str -> float"),
        ({"weights": [("style", 1.0)]}, "weights: expected a mapping"),
        ({"version": "3"}, "version: expected int"),
        ({"style": 1}, "style: expected str"),
    ],
)
def test_wrong_option_types_raise_type_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        http_client(Recorder(httpx.Response(200, json=SCORE_JSON))).score("p", [b"x"], **kwargs)


# ------------------------------------------------------------------------------------------ endpoint resolution


@pytest.mark.parametrize(
    ("url", "transport", "expected"),
    [
        ("http://h:8000", None, ("http", "http://h:8000")),
        ("https://h/api/", None, ("http", "https://h/api")),
        ("grpc://h:50051", None, ("grpc", "h:50051")),
        ("h:50051", "grpc", ("grpc", "h:50051")),
        ("grpc://h:50051", "grpc", ("grpc", "h:50051")),
    ],
)
def test_the_scheme_or_transport_picks_the_transport(url: str, transport: Any, expected: tuple[str, str]) -> None:
    with RewardClient(url, transport=transport) as client:
        assert (client.transport, client.base_url) == expected


@pytest.mark.parametrize(
    ("url", "transport"), [("grpc://h:1", "http"), ("http://h:1", "grpc"), ("h:1", None), ("ftp://h", None)]
)
def test_contradicting_or_unknown_endpoints_are_refused(url: str, transport: Any) -> None:
    with pytest.raises(ValueError, match="base_url"):
        RewardClient(url, transport=transport)


def test_base_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARDDANCE_BASE_URL", "grpc://env-host:9")
    assert RewardClient().base_url == "env-host:9"


# -------------------------------------------------------------------------------------------------- async HTTP


def test_async_score_retries_then_parses(png: bytes, sleeps: list[float]) -> None:
    recorder = Recorder(error(429, **{"retry-after": "0.25"}), httpx.Response(200, json=SCORE_JSON))

    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        return recorder(request)

    async def main() -> Any:
        transport = httpx.MockTransport(handler)
        async with AsyncRewardClient(BASE, api_key="k", http_client=httpx.AsyncClient(transport=transport)) as client:
            return await client.score("p", [png], style="neon"), await client.compare("p", png, png)

    recorder.responses.extend([httpx.Response(200, json=COMPARE_JSON)])
    score, compare = asyncio.run(main())
    assert [r.reward for r in score.results] == [1.5, -0.5] and compare.preferred == "b"
    assert sleeps == [0.25] and len(recorder.requests) == 3
    assert base64.b64decode(recorder.body(0)["images"][0]) == png and recorder.body(0)["style"] == "neon"
    assert recorder.requests[0].headers["authorization"] == "Bearer k"


def test_async_errors_and_timeouts_map_like_sync(sleeps: list[float]) -> None:
    async def run(response: httpx.Response | Exception) -> APIError:
        recorder = Recorder(response)
        transport = httpx.MockTransport(recorder)
        client = AsyncRewardClient(BASE, http_client=httpx.AsyncClient(transport=transport), max_retries=1)
        with pytest.raises(APIError) as info:
            await client.models()
        assert len(recorder.requests) == (2 if isinstance(info.value, UnavailableError | APITimeoutError) else 1)
        return info.value

    assert type(asyncio.run(run(error(404)))) is NotFoundError
    assert type(asyncio.run(run(error(503)))) is UnavailableError
    assert type(asyncio.run(run(httpx.ConnectTimeout("slow")))) is APITimeoutError


# ---------------------------------------------------------------------------------------------------------- gRPC


class Servicer(pb_grpc.RewardServiceServicer):
    """Rewards each image by its byte length; replays queued failures first; records requests and metadata."""

    def __init__(self) -> None:
        self.failures: list[tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]] = []
        self.requests: list[Any] = []
        self.metadata: list[dict[str, str]] = []
        self.delay = 0.0

    def _enter(self, request: Any, context: grpc.ServicerContext) -> None:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if self.delay:
            threading.Event().wait(self.delay)
        if self.failures:
            code, details, trailing = self.failures.pop(0)
            context.set_trailing_metadata(trailing)
            context.abort(code, details)
        context.send_initial_metadata((("x-request-id", f"grpc-{len(self.requests)}"),))

    @staticmethod
    def _result(image: bytes) -> pb.Result:
        return pb.Result(reward=float(len(image)), components=pb.Components(**COMPONENTS))

    def Score(self, request: pb.ScoreRequest, context: grpc.ServicerContext) -> pb.ScoreResponse:
        self._enter(request, context)
        results = [self._result(image) for image in request.images]
        return pb.ScoreResponse(model=pb.ModelRef(name="reward_small", version=3), weights=WEIGHTS, results=results)

    def Rank(self, request: pb.RankRequest, context: grpc.ServicerContext) -> pb.RankResponse:
        self._enter(request, context)
        order = sorted(range(len(request.images)), key=lambda i: -len(request.images[i]))
        results = [self._result(image) for image in request.images]
        return pb.RankResponse(model=pb.ModelRef(name="m", version=1), weights=WEIGHTS, indices=order, results=results)

    def Compare(self, request: pb.CompareRequest, context: grpc.ServicerContext) -> pb.CompareResponse:
        self._enter(request, context)
        a, b = self._result(request.image_a), self._result(request.image_b)
        preferred = "a" if a.reward >= b.reward else "b"
        return pb.CompareResponse(
            model=pb.ModelRef(name="m", version=1), weights=WEIGHTS, preferred=preferred, probability=0.75, a=a, b=b
        )

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        self._enter(request, context)
        version = pb.VersionInfo(
            version=3,
            ready=True,
            parameters=1234567,
            metrics={"pair_accuracy": 0.81},
            default_weights=WEIGHTS,
            components=list(COMPONENTS),
        )
        info = pb.ModelInfo(name="reward_small", scale="small", default_version=3, versions=[version])
        return pb.ListModelsResponse(models=[info], default_model="reward_small")


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[tuple[str, Servicer, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer, health_servicer = Servicer(), health.HealthServicer()
    pb_grpc.add_RewardServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"grpc://127.0.0.1:{port}", servicer, health_servicer
    server.stop(grace=None)


@pytest.fixture
def rpc(grpc_server: tuple[str, Servicer, health.HealthServicer]) -> Iterator[tuple[str, Servicer]]:
    url, servicer, health_servicer = grpc_server
    servicer.__init__()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("rewarddance.v1.RewardService", health_pb2.HealthCheckResponse.SERVING)
    yield url, servicer


def test_grpc_score_sends_bytes_fields_and_bearer_metadata(rpc: tuple[str, Servicer], png: bytes) -> None:
    url, servicer = rpc
    with RewardClient(url, api_key="sk-grpc") as client:
        result = client.score("a fox", [png, b"abc"], style="watercolor", weights={"style": 2}, model="m", version=3)
    request = servicer.requests[0]
    assert (list(request.images), request.prompt, request.style, request.model, request.version) == (
        [png, b"abc"],
        "a fox",
        "watercolor",
        "m",
        3,
    )
    assert dict(request.weights) == {"style": 2.0}
    assert servicer.metadata[0]["authorization"] == "Bearer sk-grpc"
    assert [r.reward for r in result.results] == [float(len(png)), 3.0]
    assert result.results[0].components.novelty == 0.125 and result.weights.style == 2.0
    assert (result.model.name, result.model.version, result.request_id) == ("reward_small", 3, "grpc-1")


def test_grpc_unset_options_are_proto_defaults(rpc: tuple[str, Servicer]) -> None:
    url, servicer = rpc
    RewardClient(url).score("p", [b"x"])
    request = servicer.requests[0]
    assert (request.style, request.model, request.version, dict(request.weights)) == ("", "", 0, {})
    assert "authorization" not in servicer.metadata[0]


def test_grpc_compare_rank_models_health(rpc: tuple[str, Servicer], png: bytes) -> None:
    url, servicer = rpc
    client = RewardClient(url)
    compare = client.compare("p", b"ab", png)
    assert (compare.preferred, compare.probability, compare.a.reward, compare.b.reward) == ("b", 0.75, 2.0, len(png))
    assert (servicer.requests[0].image_a, servicer.requests[0].image_b) == (b"ab", png)
    assert client.rank("p", [b"a", b"abc", b"ab"]).indices == [1, 2, 0]
    models = client.models()
    version = models.models[0].versions[0]
    assert (models.default_model, version.parameters, version.default_weights["style"]) == (
        "reward_small",
        1234567,
        2.0,
    )
    assert version.metrics == {"pair_accuracy": 0.81} and version.components == list(COMPONENTS)
    assert client.health().status == "ok" and client.ready() is True
    client.close()


def test_grpc_ready_is_false_while_not_serving(grpc_server: Any, rpc: tuple[str, Servicer]) -> None:
    grpc_server[2].set("rewarddance.v1.RewardService", health_pb2.HealthCheckResponse.NOT_SERVING)
    with RewardClient(rpc[0]) as client:
        assert client.ready() is False
        assert client.health().status == "ok"


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, BadRequestError, 400),
        (grpc.StatusCode.UNAUTHENTICATED, AuthenticationError, 401),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError, 403),
        (grpc.StatusCode.NOT_FOUND, NotFoundError, 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimitError, 429),
        (grpc.StatusCode.INTERNAL, InternalServerError, 500),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, APITimeoutError, 504),
    ],
)
def test_grpc_status_codes_map_to_the_same_classes(
    rpc: tuple[str, Servicer], code: grpc.StatusCode, cls: type[APIError], status: int
) -> None:
    url, servicer = rpc
    trailing = (("x-error-code", "bad_weights"), ("x-error-field", "weights.style"), ("x-request-id", "r-9"))
    servicer.failures = [(code, "it failed", trailing)]
    with pytest.raises(cls) as info:
        RewardClient(url, max_retries=0).score("p", [b"x"])
    err = info.value
    assert type(err) is cls
    assert (err.status, err.code, err.field, err.message, err.request_id) == (
        status,
        "bad_weights",
        "weights.style",
        "it failed",
        "r-9",
    )


def test_grpc_code_defaults_to_the_status_name(rpc: tuple[str, Servicer]) -> None:
    url, servicer = rpc
    servicer.failures = [(grpc.StatusCode.NOT_FOUND, "no model 'x'", ())]
    with pytest.raises(NotFoundError) as info:
        RewardClient(url).score("p", [b"x"], model="x")
    assert (info.value.code, info.value.field, info.value.message) == ("not_found", None, "no model 'x'")
    assert len(servicer.requests) == 1


def test_grpc_retries_unavailable_and_resource_exhausted(rpc: tuple[str, Servicer], sleeps: list[float]) -> None:
    url, servicer = rpc
    servicer.failures = [
        (grpc.StatusCode.UNAVAILABLE, "warming up", ()),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", (("retry-after", "2"),)),
    ]
    result = RewardClient(url).score("p", [b"abcd"])
    assert result.results[0].reward == 4.0 and len(servicer.requests) == 3
    assert 0.375 <= sleeps[0] <= 0.5 and sleeps[1] == 2.0


def test_grpc_retries_stop_at_max_retries(rpc: tuple[str, Servicer], sleeps: list[float]) -> None:
    url, servicer = rpc
    servicer.failures = [(grpc.StatusCode.UNAVAILABLE, "down", ())] * 3
    with pytest.raises(UnavailableError, match="down"):
        RewardClient(url, max_retries=1).models()
    assert len(servicer.requests) == 2 and len(sleeps) == 1


def test_grpc_client_deadline_raises_api_timeout_error(rpc: tuple[str, Servicer]) -> None:
    url, servicer = rpc
    servicer.delay = 0.5
    with pytest.raises(APITimeoutError) as info:
        RewardClient(url, max_retries=0).score("p", [b"x"], timeout=0.05)
    assert info.value.status == 504


def test_grpc_unreachable_server_is_unavailable() -> None:
    with pytest.raises(UnavailableError) as info:
        RewardClient("grpc://127.0.0.1:1", max_retries=0, timeout=5).score("p", [b"x"])
    assert info.value.code == "unavailable"


def test_async_grpc_score_retry_and_errors(rpc: tuple[str, Servicer], sleeps: list[float], png: bytes) -> None:
    url, servicer = rpc
    servicer.failures = [(grpc.StatusCode.UNAVAILABLE, "warming up", ())]

    async def main() -> tuple[Any, Any, bool, Exception]:
        async with AsyncRewardClient(url, api_key="k") as client:
            score = await client.score("p", [png, b"ab"], weights={"fidelity": 0.5})
            ranked = await client.rank("p", [b"a", b"abc"])
            ready = await client.ready()
            servicer.failures = [(grpc.StatusCode.PERMISSION_DENIED, "admin only", ())]
            try:
                await client.models()
            except APIError as exc:
                return score, ranked, ready, exc
            raise AssertionError("models() should have failed")

    score, ranked, ready, err = asyncio.run(main())
    assert [r.reward for r in score.results] == [float(len(png)), 2.0] and score.request_id == "grpc-2"
    assert ranked.indices == [1, 0] and ready is True
    assert type(err) is PermissionDeniedError and err.status == 403
    assert len(sleeps) == 1 and dict(servicer.requests[0].weights) == {"fidelity": 0.5}
    assert servicer.metadata[1]["authorization"] == "Bearer k"


# ------------------------------------------------------------------------------------------- packaging and stubs


def _load_gen_proto() -> Any:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_are_up_to_date() -> None:
    gen_proto = _load_gen_proto()
    assert [t.relative_to(ROOT).as_posix() for t in gen_proto.TARGETS] == [
        "client/rewarddance_client/_proto",
        "server/rewarddance_server/proto",
    ]
    for target in gen_proto.TARGETS:
        assert gen_proto.stale_files(target) == [], f"{target}: run python scripts/gen_proto.py"
        assert "from . import rewarddance_v1_pb2 as" in (target / "rewarddance_v1_pb2_grpc.py").read_text()


def test_client_imports_nothing_from_the_project_nor_pillow_or_numpy() -> None:
    code = (
        "import sys; import rewarddance_client; "
        "print([m for m in sys.modules if m.split('.')[0] in "
        "{'rewarddance', 'rewarddance_server', 'rewarddance_trainer', 'rewarddance_exporter', 'PIL', 'numpy'}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "client", capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_public_api() -> None:
    exported = set(rewarddance_client.__all__)
    assert {"RewardClient", "AsyncRewardClient", "ScoreResponse", "CompareResponse", "RankResponse"} <= exported
    assert all(hasattr(rewarddance_client, name) for name in exported)
    methods = ["score", "compare", "rank", "models", "health", "ready", "close"]
    for name in methods:
        assert asyncio.iscoroutinefunction(getattr(AsyncRewardClient, name)), name
        assert not asyncio.iscoroutinefunction(getattr(RewardClient, name)), name
