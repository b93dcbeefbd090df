"""gRPC transport (grpcio, grpc.aio) for ``rewarddance.v1.RewardService``; the same typed results as over HTTP.

What the server sends besides the status code and details (all optional): trailing metadata ``x-error-code``
and ``x-error-field`` (the HTTP error body's ``code`` and ``field``), ``retry-after`` (seconds) on
RESOURCE_EXHAUSTED, and ``x-request-id`` (initial or trailing). The API key goes out as metadata
``authorization: Bearer <key>``. Liveness and readiness use the standard ``grpc.health.v1.Health/Check``
(service ``""`` and ``rewarddance.v1.RewardService``); its two tiny messages are encoded by hand so that
grpcio-health-checking is not a dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from ._exceptions import APIError, UnavailableError, error_class
from ._proto import rewarddance_v1_pb2 as pb
from ._proto import rewarddance_v1_pb2_grpc as pb_grpc
from ._request import ScoringRequest
from ._retry import parse_retry_after
from .types import (
    CompareResponse,
    Components,
    HealthStatus,
    ModelInfo,
    ModelList,
    ModelRef,
    RankResponse,
    Result,
    ScoreResponse,
    VersionInfo,
    Weights,
)

READINESS_SERVICE = "rewarddance.v1.RewardService"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING_STATUS = {0: "unknown", 1: "serving", 2: "not_serving", 3: "service_unknown"}
# Images make requests large: no client-side cap on sends, 64 MiB on replies (the gRPC default is 4 MiB).
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]

# The HTTP status each gRPC code is reported as, so one exception table serves both transports.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _metadata_value(metadata: Sequence[Any] | None, key: str) -> str | None:
    for item_key, value in metadata or ():
        if item_key == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def error_from_rpc(error: grpc.RpcError) -> APIError:
    """The SDK exception for a failed RPC (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code: grpc.StatusCode = error.code()
    trailing = error.trailing_metadata()
    initial = error.initial_metadata()
    status = _HTTP_STATUS.get(code, 500)
    return error_class(status)(
        error.details() or code.name,
        status=status,
        code=_metadata_value(trailing, "x-error-code") or code.name.lower(),
        field=_metadata_value(trailing, "x-error-field"),
        request_id=_metadata_value(trailing, "x-request-id") or _metadata_value(initial, "x-request-id"),
        retry_after=parse_retry_after(_metadata_value(trailing, "retry-after")),
    )


def score_message(request: ScoringRequest) -> pb.ScoreRequest:
    """The protobuf request; unset options become proto3 defaults (``""``, ``0``, empty map) = server defaults."""
    return pb.ScoreRequest(
        prompt=request.prompt,
        images=request.images,
        style=request.style or "",
        weights=request.weights or {},
        model=request.model or "",
        version=request.version or 0,
    )


def rank_message(request: ScoringRequest) -> pb.RankRequest:
    return pb.RankRequest(
        prompt=request.prompt,
        images=request.images,
        style=request.style or "",
        weights=request.weights or {},
        model=request.model or "",
        version=request.version or 0,
    )


def compare_message(request: ScoringRequest) -> pb.CompareRequest:
    image_a, image_b = request.images
    return pb.CompareRequest(
        prompt=request.prompt,
        image_a=image_a,
        image_b=image_b,
        style=request.style or "",
        weights=request.weights or {},
        model=request.model or "",
        version=request.version or 0,
    )


def _result(message: Any) -> Result:
    c = message.components
    components = Components(fidelity=c.fidelity, style=c.style, composition=c.composition, novelty=c.novelty)
    return Result(reward=message.reward, components=components)


def _common(message: Any) -> dict[str, Any]:
    return {
        "model": ModelRef(name=message.model.name, version=message.model.version),
        "weights": Weights(**dict(message.weights)),
    }


def score_response(message: pb.ScoreResponse) -> ScoreResponse:
    return ScoreResponse(**_common(message), results=[_result(r) for r in message.results])


def rank_response(message: pb.RankResponse) -> RankResponse:
    return RankResponse(
        **_common(message), indices=list(message.indices), results=[_result(r) for r in message.results]
    )


def compare_response(message: pb.CompareResponse) -> CompareResponse:
    return CompareResponse(
        **_common(message),
        preferred=message.preferred,
        probability=message.probability,
        a=_result(message.a),
        b=_result(message.b),
    )


def model_list(message: pb.ListModelsResponse) -> ModelList:
    models = [
        ModelInfo(
            name=m.name,
            scale=m.scale,
            default_version=m.default_version,
            versions=[
                VersionInfo(
                    version=v.version,
                    ready=v.ready,
                    parameters=v.parameters,
                    metrics=dict(v.metrics),
                    default_weights=dict(v.default_weights),
                    components=list(v.components),
                )
                for v in m.versions
            ],
        )
        for m in message.models
    ]
    return ModelList(default_model=message.default_model, models=models)


def health_request(service: str) -> bytes:
    """``grpc.health.v1.HealthCheckRequest{service}``: field 1, length-delimited (names are under 128 bytes)."""
    name = service.encode()
    if len(name) >= 128:
        raise ValueError(f"health service name too long: {service!r}")
    return b"\x0a" + bytes([len(name)]) + name if name else b""


def health_status(reply: bytes) -> str:
    """The ``ServingStatus`` of a ``HealthCheckResponse`` (field 1, varint; absent = UNKNOWN)."""
    value = reply[1] if len(reply) >= 2 and reply[0] == 0x08 else 0
    return _SERVING_STATUS.get(value, "unknown")


def _health(status: str, service: str, request_id: str | None) -> HealthStatus:
    if status != "serving":
        raise UnavailableError(f"health check of {service or 'the server'!r}: {status}", status=503, code=status)
    health = HealthStatus(status="ready" if service else "ok")
    health._request_id = request_id
    return health


def _with_request_id(response: Any, *metadata: Sequence[Any] | None) -> Any:
    response._request_id = next((v for md in metadata if (v := _metadata_value(md, "x-request-id"))), None)
    return response


def make_channel(target: str, secure: bool) -> grpc.Channel:
    if secure:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


class GRPCTransport:
    """Blocking gRPC transport over one channel."""

    def __init__(self, target: str, metadata: list[tuple[str, str]], *, secure: bool = False) -> None:
        self.target = target
        self._metadata = metadata
        self._channel = make_channel(target, secure)
        self._stub = pb_grpc.RewardServiceStub(self._channel)
        self._check = self._channel.unary_unary(_HEALTH_CHECK)

    def _call(self, method: Any, message: Any, timeout: float) -> tuple[Any, Any]:
        try:
            return method.with_call(message, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    def _unary(self, method: Any, message: Any, timeout: float, convert: Any) -> Any:
        reply, call = self._call(method, message, timeout)
        return _with_request_id(convert(reply), call.initial_metadata(), call.trailing_metadata())

    def score(self, request: ScoringRequest, timeout: float) -> ScoreResponse:
        return self._unary(self._stub.Score, score_message(request), timeout, score_response)

    def compare(self, request: ScoringRequest, timeout: float) -> CompareResponse:
        return self._unary(self._stub.Compare, compare_message(request), timeout, compare_response)

    def rank(self, request: ScoringRequest, timeout: float) -> RankResponse:
        return self._unary(self._stub.Rank, rank_message(request), timeout, rank_response)

    def models(self, timeout: float) -> ModelList:
        return self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout, model_list)

    def _health_check(self, service: str, timeout: float) -> HealthStatus:
        reply, call = self._call(self._check, health_request(service), timeout)
        return _health(health_status(reply), service, _metadata_value(call.trailing_metadata(), "x-request-id"))

    def health(self, timeout: float) -> HealthStatus:
        return self._health_check("", timeout)

    def ready(self, timeout: float) -> HealthStatus:
        return self._health_check(READINESS_SERVICE, timeout)

    def close(self) -> None:
        self._channel.close()


class AsyncGRPCTransport:
    """asyncio gRPC transport; the channel is opened on first use, inside the caller's event loop."""

    def __init__(self, target: str, metadata: list[tuple[str, str]], *, secure: bool = False) -> None:
        self.target = target
        self._metadata = metadata
        self._secure = secure
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _open(self) -> tuple[grpc.aio.Channel, Any]:
        if self._channel is None:
            if self._secure:
                credentials = grpc.ssl_channel_credentials()
                self._channel = grpc.aio.secure_channel(self.target, credentials, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            self._stub = pb_grpc.RewardServiceStub(self._channel)
        return self._channel, self._stub

    async def _call(self, method: Any, message: Any, timeout: float) -> tuple[Any, Any, Any]:
        call = method(message, timeout=timeout, metadata=self._metadata)
        try:
            reply = await call
            return reply, await call.initial_metadata(), await call.trailing_metadata()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    async def _unary(self, name: str, message: Any, timeout: float, convert: Any) -> Any:
        _, stub = self._open()
        reply, initial, trailing = await self._call(getattr(stub, name), message, timeout)
        return _with_request_id(convert(reply), initial, trailing)

    async def score(self, request: ScoringRequest, timeout: float) -> ScoreResponse:
        return await self._unary("Score", score_message(request), timeout, score_response)

    async def compare(self, request: ScoringRequest, timeout: float) -> CompareResponse:
        return await self._unary("Compare", compare_message(request), timeout, compare_response)

    async def rank(self, request: ScoringRequest, timeout: float) -> RankResponse:
        return await self._unary("Rank", rank_message(request), timeout, rank_response)

    async def models(self, timeout: float) -> ModelList:
        return await self._unary("ListModels", pb.ListModelsRequest(), timeout, model_list)

    async def _health_check(self, service: str, timeout: float) -> HealthStatus:
        channel, _ = self._open()
        reply, _, trailing = await self._call(channel.unary_unary(_HEALTH_CHECK), health_request(service), timeout)
        return _health(health_status(reply), service, _metadata_value(trailing, "x-request-id"))

    async def health(self, timeout: float) -> HealthStatus:
        return await self._health_check("", timeout)

    async def ready(self, timeout: float) -> HealthStatus:
        return await self._health_check(READINESS_SERVICE, timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
