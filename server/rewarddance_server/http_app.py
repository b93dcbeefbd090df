"""FastAPI app over the service layer (docs/api.md): JSON with base64 images, or multipart uploads.

Bodies are read with a size limit (413), a deadline (408: the request's own deadline, which starts when the
request arrives, or the body timeout, whichever is sooner) and against the process's in-flight byte budget (429)
before parsing; JSON is parsed by hand so that every malformed input gets the contract's error JSON naming the
field (never FastAPI's default 422 shape, never a 500: nesting beyond the parser's depth is a 400 too). A client
that goes away mid-upload is counted as 499 ``client_disconnected``, not as a server error.

JSON in and out goes through orjson (the hot path, issue 18); a body orjson refuses is parsed again by the standard
library, so what is accepted and every error message stay as they were (NaN literals, lone surrogates and nesting
past orjson's depth limit are accepted or refused by the standard library's rules). One difference: orjson reads
an integer beyond 64 bits as a float, so such a ``version`` is refused as not an integer (422) instead of as an
unknown version (404).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .admission import Budget, Lease
from .auth import Authenticator
from .errors import GatewayError, bad_request, client_disconnected, internal
from .images import decode_base64
from .logs import request_id
from .service import ScoringInput, Service, Timing, parse_common

log = logging.getLogger("rewarddance_server.http")
_OFFLOAD_BYTES = 256 * 1024  # JSON bodies larger than this are parsed in a worker thread
_DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body is read (and dropped) up to this, so the client sees the 413


# -- OpenAPI documentation models (the handlers parse bodies themselves, see the module docstring) -------------
class _Common(BaseModel):
    prompt: str = Field(min_length=1, max_length=1000, description="the text the images were generated for")
    style: str | None = Field(None, description="target style; absent -> recognised in the prompt")
    weights: dict[str, float] | None = Field(None, description="subset of fidelity, style, composition, novelty")
    model: str | None = Field(None, description="absent -> the server default")
    version: int | None = Field(None, ge=0, description="absent or 0 -> the served version")


class ScoreBody(_Common):
    images: list[str] = Field(description="base64 PNG, JPEG or WebP (optional data: URL prefix)")


class CompareBody(_Common):
    image_a: str
    image_b: str


class ReloadBody(BaseModel):
    model: str | None = None
    version: int | None = None


class _ModelRef(BaseModel):
    name: str
    version: int


class _Components(BaseModel):
    fidelity: float
    style: float
    composition: float
    novelty: float


class _Result(BaseModel):
    reward: float
    components: _Components


class ScoreOut(BaseModel):
    model: _ModelRef
    weights: _Components
    results: list[_Result]


class CompareOut(BaseModel):
    model: _ModelRef
    weights: _Components
    preferred: str
    probability: float
    a: _Result
    b: _Result


class RankOut(BaseModel):
    model: _ModelRef
    weights: _Components
    indices: list[int]
    results: list[_Result]


class _ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: _ErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 408, 413, 415, 422, 429, 503, 504)
}


def _body_doc(model: type[BaseModel], multipart: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if multipart:
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string"},
                    "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "image_a": {"type": "string", "format": "binary"},
                    "image_b": {"type": "string", "format": "binary"},
                    "style": {"type": "string"},
                    "weights": {"type": "string", "description": "JSON object"},
                    "model": {"type": "string"},
                    "version": {"type": "integer"},
                },
            }
        }
    return {"requestBody": {"required": True, "content": content}}


# -- body parsing -------------------------------------------------------------------------------------------------
@dataclass
class BodyPolicy:
    """How one request's body may be read: at most ``limit`` bytes, complete by ``deadline`` (loop time, None for
    none), its bytes held in ``lease`` against ``budget`` (None: not counted)."""

    limit: int
    deadline: float | None = None
    lease: Lease | None = None
    budget: Budget | None = None


async def _drain(stream: AsyncIterator[bytes], size: int = 0) -> None:
    """Read and drop the rest of a refused body (bounded), so that the client gets to read the error."""
    async for chunk in stream:
        size += len(chunk)
        if size > _DRAIN_LIMIT:
            break


async def read_body(request: Request, policy: BodyPolicy | int) -> bytes:
    """The whole body, or 413 over the limit, 408 past the deadline, 429 over the in-flight byte budget,
    499 when the client goes away."""
    if isinstance(policy, int):
        policy = BodyPolicy(policy)
    declared = request.headers.get("content-length")
    try:
        declared_bytes = None if declared is None else int(declared)
    except ValueError:
        raise bad_request("invalid_header", "content-length is not a number") from None
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout_at(policy.deadline):
            return await _read_limited(request, policy, declared_bytes)
    except TimeoutError:
        waited = asyncio.get_running_loop().time() - started
        raise GatewayError(408, "body_timeout", f"the request body was not complete after {waited:.3g} s") from None
    except ClientDisconnect:
        raise client_disconnected() from None


async def _read_limited(request: Request, policy: BodyPolicy, declared: int | None) -> bytes:
    too_large = GatewayError(413, "request_too_large", f"the request body is over the {policy.limit}-byte limit")
    held = 0

    def hold(size: int) -> None:
        nonlocal held
        if policy.lease is not None and policy.budget is not None and size > held:
            policy.lease.take(policy.budget, size - held)
            held = size

    stream = request.stream()
    if declared is not None and declared > policy.limit:
        if declared <= _DRAIN_LIMIT:
            await _drain(stream)
        raise too_large
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        try:
            if size > policy.limit:
                raise too_large
            hold(size)  # what has arrived, not what was declared: a slow client cannot hold what it never sends
        except GatewayError:
            chunks.clear()
            if policy.lease is not None:
                policy.lease.release()  # refused: what it held goes back before the (bounded) drain
            await _drain(stream, size)
            raise
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # so request.form() parses what was read
    return body


def request_timeout(request: Request) -> float | None:
    """The caller's deadline from ``x-request-timeout`` (seconds); the server's own limit still applies."""
    value = request.headers.get("x-request-timeout")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise bad_request("invalid_header", f"x-request-timeout must be seconds, got {value!r}") from None
    if not seconds > 0:
        raise bad_request("invalid_header", "x-request-timeout must be > 0")
    return seconds


class FastJSONResponse(JSONResponse):
    """A JSON response rendered by orjson (NaN, never produced on purpose, becomes null instead of a 500)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _loads(data: bytes | str) -> Any:
    """orjson, else ``json.loads`` (see the module docstring), with nesting beyond the standard parser's depth as a
    ValueError (Python raises RecursionError)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise bad_request("invalid_json", "the request body is empty; expected a JSON object")
    try:
        value = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("invalid_json", f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request("invalid_json", f"expected a JSON object, got {type(value).__name__}")
    return value


async def _multipart(request: Request, max_images: int) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    """Form fields (prompt, style, model, version, weights as JSON) and the uploaded files by field name."""
    try:
        form = await request.form(max_files=max_images + 2, max_fields=64)
    except Exception as exc:  # starlette's MultiPartException and parser errors
        raise bad_request("invalid_multipart", f"malformed multipart body: {getattr(exc, 'message', exc)}") from None
    fields: dict[str, Any] = {}
    files: dict[str, list[bytes]] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            else:
                files.setdefault(key, []).append(await value.read())
    finally:
        await form.close()
    version = fields.get("version")
    if version not in (None, ""):
        try:
            fields["version"] = int(version)
        except ValueError:
            raise GatewayError(422, "invalid_type", f"version must be an integer, got {version!r}", "version") from None
    else:
        fields["version"] = None
    weights = fields.get("weights")
    if weights not in (None, ""):
        try:
            fields["weights"] = _loads(weights)
        except ValueError:
            raise GatewayError(422, "invalid_weights", "weights must be a JSON object", "weights") from None
    else:
        fields["weights"] = None
    for key in ("style", "model"):
        if fields.get(key) == "":
            fields[key] = None
    return fields, files


def _kind(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("", "application/json") or ctype.endswith("+json"):
        return "json"
    if ctype == "multipart/form-data":
        return "multipart"
    raise GatewayError(
        415, "unsupported_content_type", f"content-type {ctype!r}; use application/json or multipart/form-data"
    )


async def parse_images_request(request: Request, service: Service, policy: BodyPolicy) -> ScoringInput:
    """``/v1/score`` and ``/v1/rank``."""
    settings = service.settings
    body = await read_body(request, policy)
    if _kind(request) == "multipart":
        fields, files = await _multipart(request, settings.max_images)
        images = files.get("image", []) + files.get("images", [])
        if len(images) > settings.max_images:
            raise bad_request("too_many_images", f"{len(images)} images; the limit is {settings.max_images}", "images")
        common = parse_common(fields)
        return ScoringInput(images=images, fields=[f"images[{i}]" for i in range(len(images))], **common)
    if len(body) > _OFFLOAD_BYTES:  # big JSON: parse and base64-decode off the event loop
        return await asyncio.to_thread(_images_from_json, body, settings.max_images)
    return _images_from_json(body, settings.max_images)


def _images_from_json(body: bytes, max_images: int) -> ScoringInput:
    data = _json_object(body)
    common = parse_common(data)
    raw = data.get("images")
    if raw is None:
        raise bad_request("missing_field", "images is required (a list of base64 strings)", "images")
    if not isinstance(raw, list):
        raise GatewayError(422, "invalid_type", f"images must be a list, got {type(raw).__name__}", "images")
    if len(raw) > max_images:
        raise bad_request("too_many_images", f"{len(raw)} images; the limit is {max_images}", "images")
    names = [f"images[{i}]" for i in range(len(raw))]
    return ScoringInput(images=[decode_base64(x, f) for x, f in zip(raw, names, strict=True)], fields=names, **common)


async def parse_compare_request(request: Request, service: Service, policy: BodyPolicy) -> ScoringInput:
    body = await read_body(request, policy)
    if _kind(request) == "multipart":
        fields, files = await _multipart(request, 2)
        common = parse_common(fields)
        images = []
        for name in ("image_a", "image_b"):
            if len(files.get(name, [])) != 1:
                raise bad_request("missing_field", f"exactly one {name} file is required", name)
            images.append(files[name][0])
        return ScoringInput(images=images, fields=["image_a", "image_b"], **common)
    if len(body) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(_compare_from_json, body)
    return _compare_from_json(body)


def _compare_from_json(body: bytes) -> ScoringInput:
    data = _json_object(body)
    common = parse_common(data)
    images = []
    for name in ("image_a", "image_b"):
        if data.get(name) is None:
            raise bad_request("missing_field", f"{name} is required (a base64 string)", name)
        images.append(decode_base64(data[name], name))
    return ScoringInput(images=images, fields=["image_a", "image_b"], **common)


# -- the app ------------------------------------------------------------------------------------------------------
def error_response(error: GatewayError, rid: str) -> JSONResponse:
    headers = {"x-request-id": rid, **error.headers()}
    if error.status in (408, 499):  # the body was not read to its end: this connection cannot carry another request
        headers["connection"] = "close"
    return FastJSONResponse(error.body(), status_code=error.status, headers=headers)


def create_app(service: Service, auth: Authenticator | None = None) -> FastAPI:
    auth = auth or Authenticator(service.settings.api_keys, service.settings.admin_keys)
    metrics = service.metrics
    worker = None if service.settings.worker is None else str(service.settings.worker)
    app = FastAPI(
        title="rewarddance gateway",
        version="1",
        description="Reward scores (fidelity, style, composition, novelty and composite R) for text-to-image "
        'outputs. Errors: `{"error": {"code", "message", "field"}}` (docs/api.md).',
    )
    app.state.service = service

    def key_of(request: Request) -> str | None:
        return Authenticator.extract(request.headers.get("authorization"), request.headers.get("x-api-key"))

    def body_policy(timing: Timing, lease: Lease, requested: float | None) -> BodyPolicy:
        """The scoring routes' body: the request's deadline (from arrival) or the body timeout, whichever is first."""
        assert timing.arrived is not None
        seconds = min(service.timeout(requested), service.settings.body_timeout_s)
        return BodyPolicy(service.settings.max_body_bytes, timing.arrived + seconds, lease, service.inflight_bytes)

    async def handle(
        request: Request,
        route: str,
        work: Callable[[Timing, Lease], Awaitable[Any]],
        admin: bool = False,
        secured: bool = True,
    ) -> Response:
        rid = request_id(request.headers.get("x-request-id"))
        started = time.perf_counter()
        timing = Timing(arrived=asyncio.get_running_loop().time())
        lease = Lease()
        code = None
        try:
            if admin:
                auth.check_admin(key_of(request))
            elif secured:
                auth.check_scoring(key_of(request))
            payload = await work(timing, lease)
            headers = {"x-request-id": rid}
            if worker is not None:
                headers["x-worker"] = worker
            if timing.inference_time or timing.queue_time:
                headers["x-queue-time"] = f"{timing.queue_time:.6f}"
                headers["x-inference-time"] = f"{timing.inference_time:.6f}"
            response: Response = FastJSONResponse(payload, headers=headers)
        except GatewayError as exc:
            code = exc.code
            response = error_response(exc, rid)
        except ClientDisconnect:  # a body read outside read_body (multipart parsing)
            code = "client_disconnected"
            response = error_response(client_disconnected(), rid)
        except Exception:
            log.exception("unhandled error", extra={"request_id": rid, "route": route})
            code = "internal"
            response = error_response(internal(), rid)
        finally:
            lease.release()
        elapsed = time.perf_counter() - started
        metrics.observe_request("http", route, response.status_code, code, elapsed)
        log.info(
            "request",
            extra={
                "request_id": rid,
                "protocol": "http",
                "route": route,
                "status": response.status_code,
                "error_code": code,
                "latency_s": round(elapsed, 6),
                "queue_s": round(timing.queue_time, 6),
                "inference_s": round(timing.inference_time, 6),
            },
        )
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        error = GatewayError(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
        return error_response(error, request_id(request.headers.get("x-request-id")))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        error = GatewayError(422, "invalid_type", str(exc.errors()[:1]))
        return error_response(error, request_id(request.headers.get("x-request-id")))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(internal(), request_id(request.headers.get("x-request-id")))

    @app.post("/v1/score", response_model=ScoreOut, responses=_ERRORS, openapi_extra=_body_doc(ScoreBody, True))
    async def score(request: Request) -> Response:
        """Score every image for one prompt: the four components and R, in input order."""

        async def work(timing: Timing, lease: Lease) -> dict:
            timeout = request_timeout(request)
            inp = await parse_images_request(request, service, body_policy(timing, lease, timeout))
            return await service.score(inp, timeout, timing)

        return await handle(request, "/v1/score", work)

    @app.post("/v1/compare", response_model=CompareOut, responses=_ERRORS, openapi_extra=_body_doc(CompareBody, True))
    async def compare(request: Request) -> Response:
        """Which of two images better fits the prompt, with the Bradley-Terry probability (>= 0.5)."""

        async def work(timing: Timing, lease: Lease) -> dict:
            timeout = request_timeout(request)
            inp = await parse_compare_request(request, service, body_policy(timing, lease, timeout))
            return await service.compare(inp, timeout, timing)

        return await handle(request, "/v1/compare", work)

    @app.post("/v1/rank", response_model=RankOut, responses=_ERRORS, openapi_extra=_body_doc(ScoreBody, True))
    async def rank(request: Request) -> Response:
        """Best-of-N: input indices best first, and the results in input order."""

        async def work(timing: Timing, lease: Lease) -> dict:
            timeout = request_timeout(request)
            inp = await parse_images_request(request, service, body_policy(timing, lease, timeout))
            return await service.rank(inp, timeout, timing)

        return await handle(request, "/v1/rank", work)

    @app.get("/v1/models", responses=_ERRORS)
    async def models(request: Request) -> Response:
        """Served models, their versions, scales and validation metrics."""

        async def work(timing: Timing, lease: Lease) -> dict:
            if not service.loaded:
                service._check_ready()
            return service.list_models()

        return await handle(request, "/v1/models", work)

    @app.post("/v1/admin/reload", responses=_ERRORS, openapi_extra=_body_doc(ReloadBody, False))
    async def reload(request: Request) -> Response:
        """Load a model version, warm it and swap it in atomically (admin key); in-flight requests finish first."""

        async def work(timing: Timing, lease: Lease) -> dict:
            assert timing.arrived is not None
            body = await read_body(request, BodyPolicy(64 * 1024, timing.arrived + service.settings.body_timeout_s))
            data = _json_object(body) if body.strip() else {}
            return await service.admin_reload(data.get("model"), data.get("version"))

        return await handle(request, "/v1/admin/reload", work, admin=True)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: 200 while the process runs."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        """Readiness: 200 once models are loaded and warmed and the backend is up, else 503; both list the served
        versions and the versions skipped because they failed to load (no paths: this route needs no key)."""
        if service.ready:
            return FastJSONResponse({"status": "ready", **service.readiness()})
        try:
            service._check_ready()
            error = GatewayError(503, "not_ready", "not ready")
        except GatewayError as exc:
            error = exc
        body = {"status": "not_ready", **error.body(), **service.readiness()}
        return FastJSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=metrics.content_type)

    return app
