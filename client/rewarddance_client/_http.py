"""HTTP JSON transport (httpx): request bodies, response parsing and error mapping per docs/api.md."""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

import httpx
import pydantic

from ._exceptions import APIError, APITimeoutError, UnavailableError, error_class
from ._request import ScoringRequest
from ._retry import parse_retry_after
from .types import CompareResponse, HealthStatus, ModelList, RankResponse, ScoreResponse

R = TypeVar("R", bound=pydantic.BaseModel)


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode("ascii")


def _common_fields(request: ScoringRequest) -> dict[str, Any]:
    fields = {"style": request.style, "weights": request.weights, "model": request.model, "version": request.version}
    return {"prompt": request.prompt, **{key: value for key, value in fields.items() if value is not None}}


def images_body(request: ScoringRequest) -> dict[str, Any]:
    """JSON body of ``/v1/score`` and ``/v1/rank``: images as standard base64 strings; unset options left out."""
    return {**_common_fields(request), "images": [_b64(image) for image in request.images]}


def compare_body(request: ScoringRequest) -> dict[str, Any]:
    """JSON body of ``/v1/compare``."""
    image_a, image_b = request.images
    return {**_common_fields(request), "image_a": _b64(image_a), "image_b": _b64(image_b)}


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error response: ``{"error": {"code", "message", "field"}}`` when the server sent it."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or response.reason_phrase)
        code, field = error.get("code"), error.get("field")
    elif isinstance(body, dict) and "detail" in body:  # a framework-level error (unknown route, method)
        message, code, field = str(body["detail"]), None, None
    else:
        message, code, field = response.text.strip() or response.reason_phrase, None, None
    return error_class(response.status_code)(
        message,
        status=response.status_code,
        code=code,
        field=field,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        body=body,
    )


def parse_response(response: httpx.Response, model: type[R]) -> R:
    """The typed body of a 2xx response, or the mapped :class:`APIError`."""
    if response.status_code >= 400:
        raise error_from_response(response)
    request_id = response.headers.get("x-request-id")
    try:
        parsed = model.model_validate(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError, pydantic.ValidationError) as exc:
        raise APIError(
            f"the server's {model.__name__} did not match the API contract: {exc}",
            status=response.status_code,
            code="invalid_response",
            request_id=request_id,
        ) from exc
    parsed._request_id = request_id
    return parsed


def _transport_error(exc: httpx.TransportError, url: str, timeout: float) -> APIError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"no response from {url} within {timeout} s ({type(exc).__name__})", code="timeout")
    return UnavailableError(f"could not reach {url}: {exc or type(exc).__name__}", code="connection_error")


class _HTTPBase:
    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers

    def _url(self, path: str) -> str:
        return self.base_url + path


class HTTPTransport(_HTTPBase):
    """Blocking HTTP transport over an ``httpx.Client`` (one is made unless the caller passes theirs)."""

    def __init__(self, base_url: str, headers: dict[str, str], http_client: httpx.Client | None = None) -> None:
        super().__init__(base_url, headers)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client()

    def _send(self, method: str, path: str, body: dict[str, Any] | None, timeout: float, model: type[R]) -> R:
        url = self._url(path)
        try:
            response = self._client.request(method, url, json=body, headers=self.headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise _transport_error(exc, url, timeout) from exc
        return parse_response(response, model)

    def score(self, request: ScoringRequest, timeout: float) -> ScoreResponse:
        return self._send("POST", "/v1/score", images_body(request), timeout, ScoreResponse)

    def compare(self, request: ScoringRequest, timeout: float) -> CompareResponse:
        return self._send("POST", "/v1/compare", compare_body(request), timeout, CompareResponse)

    def rank(self, request: ScoringRequest, timeout: float) -> RankResponse:
        return self._send("POST", "/v1/rank", images_body(request), timeout, RankResponse)

    def models(self, timeout: float) -> ModelList:
        return self._send("GET", "/v1/models", None, timeout, ModelList)

    def health(self, timeout: float) -> HealthStatus:
        return self._send("GET", "/healthz", None, timeout, HealthStatus)

    def ready(self, timeout: float) -> HealthStatus:
        return self._send("GET", "/readyz", None, timeout, HealthStatus)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


class AsyncHTTPTransport(_HTTPBase):
    """asyncio HTTP transport over an ``httpx.AsyncClient``."""

    def __init__(self, base_url: str, headers: dict[str, str], http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, headers)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient()

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, timeout: float, model: type[R]) -> R:
        url = self._url(path)
        try:
            response = await self._client.request(method, url, json=body, headers=self.headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise _transport_error(exc, url, timeout) from exc
        return parse_response(response, model)

    async def score(self, request: ScoringRequest, timeout: float) -> ScoreResponse:
        return await self._send("POST", "/v1/score", images_body(request), timeout, ScoreResponse)

    async def compare(self, request: ScoringRequest, timeout: float) -> CompareResponse:
        return await self._send("POST", "/v1/compare", compare_body(request), timeout, CompareResponse)

    async def rank(self, request: ScoringRequest, timeout: float) -> RankResponse:
        return await self._send("POST", "/v1/rank", images_body(request), timeout, RankResponse)

    async def models(self, timeout: float) -> ModelList:
        return await self._send("GET", "/v1/models", None, timeout, ModelList)

    async def health(self, timeout: float) -> HealthStatus:
        return await self._send("GET", "/healthz", None, timeout, HealthStatus)

    async def ready(self, timeout: float) -> HealthStatus:
        return await self._send("GET", "/readyz", None, timeout, HealthStatus)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
