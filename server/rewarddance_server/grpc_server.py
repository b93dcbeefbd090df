"""grpc.aio ``rewarddance.v1.RewardService`` over the service layer, plus grpc.health.v1 and reflection.

Errors: the status code of docs/api.md's table, the message as details, and trailing metadata ``x-error-code``,
``x-error-field``, ``retry-after`` and ``x-request-id``. Successful calls send ``x-request-id`` as initial
metadata and ``x-queue-time`` / ``x-inference-time`` as trailing metadata. Health: ``""`` is liveness (SERVING
while the process runs), ``rewarddance.v1.RewardService`` is readiness (SERVING once models are warmed).

Requests are parsed by the handlers, not by grpc (whose failed parse answers UNKNOWN): a malformed message is
INVALID_ARGUMENT ``invalid_message``. A message's bytes are held against the process's in-flight byte budget
(429 -> RESOURCE_EXHAUSTED) until it is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .admission import Lease
from .auth import Authenticator
from .errors import GatewayError, internal
from .logs import request_id
from .proto import rewarddance_v1_pb2 as pb
from .proto import rewarddance_v1_pb2_grpc as pb_grpc
from .service import ScoringInput, Service, Timing

log = logging.getLogger("rewarddance_server.grpc")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RewardService"].full_name  # rewarddance.v1.RewardService


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return item.value if isinstance(item.value, str) else item.value.decode()
    return None


def _result(message_cls: Any, result: dict) -> Any:
    return pb.Result(reward=result["reward"], components=pb.Components(**result["components"]))


@dataclass
class Received:
    """A request as it came off the wire: the parsed message, or why it would not parse."""

    message: Any
    size: int
    error: str | None = None


def lenient_parser(message_cls: Any) -> Callable[[bytes], Received]:
    def parse(raw: bytes) -> Received:
        try:
            return Received(message_cls.FromString(raw), len(raw))
        except Exception as exc:  # DecodeError and friends: the handler answers INVALID_ARGUMENT
            return Received(None, len(raw), type(exc).__name__)

    return parse


def _common(request: Any) -> dict[str, Any]:
    return {
        "prompt": request.prompt,
        "style": request.style or None,
        "weights": dict(request.weights) or None,
        "model": request.model or None,
        "version": request.version or None,
    }


class RewardServicer(pb_grpc.RewardServiceServicer):
    def __init__(self, service: Service, auth: Authenticator) -> None:
        self.service = service
        self.auth = auth

    async def _call(
        self,
        name: str,
        received: Received,
        context: grpc.aio.ServicerContext,
        work: Callable[[Any, Timing, float | None], Awaitable[Any]],
    ) -> Any:
        rid = request_id(_metadata(context, "x-request-id"))
        started = time.perf_counter()
        timing = Timing(arrived=asyncio.get_running_loop().time())
        lease = Lease()
        route = f"/{SERVICE_NAME}/{name}"
        code, status = None, 200
        try:
            try:
                key = Authenticator.extract(_metadata(context, "authorization"), _metadata(context, "x-api-key"))
                self.auth.check_scoring(key)
                if received.error is not None:
                    raise GatewayError(400, "invalid_message", f"the request is not a valid {name}Request message")
                lease.take(self.service.inflight_bytes, received.size)
                reply = await work(received.message, timing, context.time_remaining())
            except GatewayError:
                raise
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unhandled error", extra={"request_id": rid, "route": route})
                raise internal() from None
            await context.send_initial_metadata((("x-request-id", rid),))
            trailing = [("x-request-id", rid)]
            if timing.inference_time or timing.queue_time:
                trailing += [
                    ("x-queue-time", f"{timing.queue_time:.6f}"),
                    ("x-inference-time", f"{timing.inference_time:.6f}"),
                ]
            context.set_trailing_metadata(tuple(trailing))
            return reply
        except GatewayError as exc:
            code, status = exc.code, exc.status
            await context.abort(exc.grpc_code, exc.message, tuple([*exc.grpc_metadata(), ("x-request-id", rid)]))
        finally:
            lease.release()
            elapsed = time.perf_counter() - started
            self.service.metrics.observe_request("grpc", route, status, code, elapsed)
            log.info(
                "request",
                extra={
                    "request_id": rid,
                    "protocol": "grpc",
                    "route": route,
                    "status": status,
                    "error_code": code,
                    "latency_s": round(elapsed, 6),
                    "queue_s": round(timing.queue_time, 6),
                    "inference_s": round(timing.inference_time, 6),
                },
            )

    async def Score(self, received: Received, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        async def work(request: pb.ScoreRequest, timing: Timing, timeout: float | None) -> pb.ScoreResponse:
            images = list(request.images)
            inp = ScoringInput(images=images, fields=[f"images[{i}]" for i in range(len(images))], **_common(request))
            out = await self.service.score(inp, timeout, timing)
            return pb.ScoreResponse(
                model=pb.ModelRef(**out["model"]),
                weights=out["weights"],
                results=[_result(pb.Result, r) for r in out["results"]],
            )

        return await self._call("Score", received, context, work)

    async def Rank(self, received: Received, context: grpc.aio.ServicerContext) -> pb.RankResponse:
        async def work(request: pb.RankRequest, timing: Timing, timeout: float | None) -> pb.RankResponse:
            images = list(request.images)
            inp = ScoringInput(images=images, fields=[f"images[{i}]" for i in range(len(images))], **_common(request))
            out = await self.service.rank(inp, timeout, timing)
            return pb.RankResponse(
                model=pb.ModelRef(**out["model"]),
                weights=out["weights"],
                indices=out["indices"],
                results=[_result(pb.Result, r) for r in out["results"]],
            )

        return await self._call("Rank", received, context, work)

    async def Compare(self, received: Received, context: grpc.aio.ServicerContext) -> pb.CompareResponse:
        async def work(request: pb.CompareRequest, timing: Timing, timeout: float | None) -> pb.CompareResponse:
            images, fields = [], []
            for name in ("image_a", "image_b"):
                data = getattr(request, name)
                if not data:
                    raise GatewayError(400, "missing_field", f"{name} is required", name)
                images.append(data)
                fields.append(name)
            out = await self.service.compare(
                ScoringInput(images=images, fields=fields, **_common(request)), timeout, timing
            )
            return pb.CompareResponse(
                model=pb.ModelRef(**out["model"]),
                weights=out["weights"],
                preferred=out["preferred"],
                probability=out["probability"],
                a=_result(pb.Result, out["a"]),
                b=_result(pb.Result, out["b"]),
            )

        return await self._call("Compare", received, context, work)

    async def ListModels(self, received: Received, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        async def work(request: pb.ListModelsRequest, timing: Timing, timeout: float | None) -> pb.ListModelsResponse:
            if not self.service.loaded:
                self.service._check_ready()
            out = self.service.list_models()
            return pb.ListModelsResponse(
                default_model=out["default_model"],
                models=[
                    pb.ModelInfo(
                        name=m["name"],
                        scale=m["scale"],
                        default_version=m["default_version"],
                        versions=[pb.VersionInfo(**v) for v in m["versions"]],
                    )
                    for m in out["models"]
                ],
            )

        return await self._call("ListModels", received, context, work)


def reward_handlers(servicer: RewardServicer) -> grpc.GenericRpcHandler:
    """The RewardService methods with requests parsed by ``lenient_parser`` (the generated registration would let
    grpc parse them and answer a malformed one with UNKNOWN)."""
    methods = pb.DESCRIPTOR.services_by_name["RewardService"].methods
    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            m.name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, m.name),
                request_deserializer=lenient_parser(getattr(pb, m.input_type.name)),
                response_serializer=getattr(pb, m.output_type.name).SerializeToString,
            )
            for m in methods
        },
    )


class GrpcGateway:
    """The grpc.aio server, its health service kept in step with the service's readiness."""

    def __init__(self, service: Service, host: str, port: int, auth: Authenticator | None = None) -> None:
        self.service = service
        auth = auth or Authenticator(service.settings.api_keys, service.settings.admin_keys)
        # Room above the body limit, so that the service's own check answers INVALID_ARGUMENT request_too_large
        # (grpc core would answer RESOURCE_EXHAUSTED, which clients retry as if it were a full queue).
        limit = 2 * service.settings.max_body_bytes + 1024 * 1024
        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.server.add_generic_rpc_handlers((reward_handlers(RewardServicer(service, auth)),))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        self._sync_task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        self._sync_task = asyncio.create_task(self._sync_health(), name="grpc-health")

    async def _sync_health(self) -> None:
        last = None
        while True:
            ready = self.service.ready
            if ready != last:
                status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
                await self.health.set(SERVICE_NAME, status)
                last = ready
            await asyncio.sleep(0.1)

    async def stop(self, grace: float) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
