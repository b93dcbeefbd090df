"""``RewardClient`` and ``AsyncRewardClient``: the same methods over HTTP (httpx) or gRPC, picked by URL scheme."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

import httpx

from ._exceptions import UnavailableError
from ._grpc import AsyncGRPCTransport, GRPCTransport
from ._http import AsyncHTTPTransport, HTTPTransport
from ._images import ImageInput, encode_image, encode_images
from ._request import Weights, scoring_request
from ._retry import async_call_with_retries, call_with_retries
from ._version import __version__
from .types import CompareResponse, HealthStatus, ModelList, RankResponse, ScoreResponse

T = TypeVar("T")
Transport = Literal["http", "grpc"]

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
API_KEY_ENV = "REWARDDANCE_API_KEY"
BASE_URL_ENV = "REWARDDANCE_BASE_URL"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: an HTTP base URL, or a gRPC ``host:port`` target."""

    transport: Transport
    address: str
    secure: bool


def resolve_endpoint(base_url: str | None, transport: Transport | None) -> Endpoint:
    """The endpoint of ``base_url`` (``http(s)://`` -> HTTP, ``grpc(s)://host:port`` -> gRPC).

    ``transport="grpc"`` also accepts a bare ``host:port``; a scheme contradicting ``transport`` is an error.
    """
    if transport not in (None, "http", "grpc"):
        raise ValueError(f"transport: expected 'http', 'grpc' or None, got {transport!r}")
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    scheme, has_scheme, rest = url.partition("://")
    scheme = scheme.lower() if has_scheme else ""
    if scheme in ("http", "https") and transport in (None, "http"):
        return Endpoint("http", url.rstrip("/"), scheme == "https")
    if scheme in ("grpc", "grpcs") and transport in (None, "grpc"):
        return Endpoint("grpc", rest.rstrip("/"), scheme == "grpcs")
    if not scheme and transport == "grpc":
        return Endpoint("grpc", url, False)
    if scheme in ("http", "https", "grpc", "grpcs"):
        raise ValueError(f"base_url {url!r} is a {scheme}:// URL but transport={transport!r}")
    raise ValueError(
        f"base_url {url!r}: expected http://host:port, https://host, grpc://host:port or grpcs://host:port"
    )


class _BaseClient:
    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str | None,
        transport: Transport | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries: expected >= 0, got {max_retries!r}")
        self.endpoint = resolve_endpoint(base_url, transport)
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout = timeout
        self.max_retries = max_retries

    @property
    def transport(self) -> Transport:
        """``"http"`` or ``"grpc"``."""
        return self.endpoint.transport

    @property
    def base_url(self) -> str:
        """The HTTP base URL, or the gRPC ``host:port`` target."""
        return self.endpoint.address

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport}: {self.base_url})"

    def _http_headers(self) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": f"rewarddance-client/{__version__}"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def _grpc_metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.api_key}")] if self.api_key else []

    def _check_http_client(self, http_client: object) -> None:
        if http_client is not None and self.transport != "http":
            raise ValueError("http_client: only used by the HTTP transport, but the endpoint is gRPC")

    def _seconds(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout


class RewardClient(_BaseClient):
    """Blocking client of the rewarddance gateway.

    Args:
        base_url: ``http://host:port`` / ``https://host`` for HTTP JSON, ``grpc://host:port`` /
            ``grpcs://host:port`` for gRPC; defaults to ``$REWARDDANCE_BASE_URL`` or ``http://localhost:8000``.
        api_key: sent as ``Authorization: Bearer <key>`` (gRPC metadata ``authorization``); defaults to
            ``$REWARDDANCE_API_KEY``.
        transport: ``"http"`` or ``"grpc"`` to force one (a bare ``host:port`` then means gRPC); by default
            the URL scheme decides.
        timeout: seconds per attempt, unless a call passes its own ``timeout``.
        max_retries: extra attempts after connection errors, timeouts, 429 and 5xx (UNAVAILABLE,
            RESOURCE_EXHAUSTED), waiting ``Retry-After`` or an exponential backoff with jitter in between.
        http_client: an ``httpx.Client`` to send with (proxies, TLS, mocks); it is not closed by :meth:`close`.

    Use as a context manager, or call :meth:`close`::

        with RewardClient("http://localhost:8000") as client:
            best = client.rank("a red circle", ["a.png", "b.png"]).indices[0]
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        transport: Transport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, transport=transport, timeout=timeout, max_retries=max_retries)
        self._check_http_client(http_client)
        self._transport: HTTPTransport | GRPCTransport
        if self.transport == "http":
            self._transport = HTTPTransport(self.base_url, self._http_headers(), http_client)
        else:
            self._transport = GRPCTransport(self.base_url, self._grpc_metadata(), secure=self.endpoint.secure)

    def _retrying(self, send: Callable[[float], T], timeout: float | None) -> T:
        seconds = self._seconds(timeout)
        return call_with_retries(lambda: send(seconds), self.max_retries)

    def score(
        self,
        prompt: str,
        images: Sequence[ImageInput],
        *,
        style: str | None = None,
        weights: Weights | None = None,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> ScoreResponse:
        """The composite reward and its four components for every image, in input order.

        Args:
            prompt: the text the images were generated for.
            images: encoded image bytes, file paths, binary files, PIL images or numpy uint8 (H, W, 3) arrays.
            style: the target style (e.g. ``"watercolor"``); by default the server recognises it in the prompt.
            weights: any subset of ``fidelity, style, composition, novelty`` -> weight >= 0; the rest keep
                the model's defaults.
            model: e.g. ``"reward_small"``; by default the server's default model.
            version: a model version; by default the newest loaded one.
            timeout: seconds per attempt for this call (default: the client's).

        Raises:
            BadRequestError: the server rejected an image, the prompt or the weights (``field`` says which).
            APIError: any other failure left after retries; see the exception tree.
        """
        request = scoring_request(prompt, encode_images(images), style, weights, model, version)
        return self._retrying(lambda seconds: self._transport.score(request, seconds), timeout)

    def compare(
        self,
        prompt: str,
        image_a: ImageInput,
        image_b: ImageInput,
        *,
        style: str | None = None,
        weights: Weights | None = None,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> CompareResponse:
        """Which of two images fits the prompt better, and the probability that it does (>= 0.5).

        Arguments as for :meth:`score`.
        """
        images = [encode_image(image_a, "image_a"), encode_image(image_b, "image_b")]
        request = scoring_request(prompt, images, style, weights, model, version)
        return self._retrying(lambda seconds: self._transport.compare(request, seconds), timeout)

    def rank(
        self,
        prompt: str,
        images: Sequence[ImageInput],
        *,
        style: str | None = None,
        weights: Weights | None = None,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> RankResponse:
        """Best-of-N: ``indices`` orders the input images best first; ``results`` stay in input order.

        Arguments as for :meth:`score`.
        """
        request = scoring_request(prompt, encode_images(images), style, weights, model, version)
        return self._retrying(lambda seconds: self._transport.rank(request, seconds), timeout)

    def models(self, *, timeout: float | None = None) -> ModelList:
        """The loaded models, their versions, validation metrics and default weights."""
        return self._retrying(self._transport.models, timeout)

    def health(self, *, timeout: float | None = None) -> HealthStatus:
        """Liveness: ``status == "ok"`` while the server process is up; raises if it cannot be reached."""
        return self._retrying(self._transport.health, timeout)

    def ready(self, *, timeout: float | None = None) -> bool:
        """Readiness, checked once without retries: ``True`` once models are loaded and warmed.

        ``False`` while the server answers 503 / NOT_SERVING or cannot be reached; other errors raise.
        """
        try:
            self._transport.ready(self._seconds(timeout))
        except UnavailableError:
            return False
        return True

    def close(self) -> None:
        """Closes the connection pool or channel (not an ``http_client`` the caller passed in)."""
        self._transport.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncRewardClient(_BaseClient):
    """asyncio client of the rewarddance gateway: :class:`RewardClient`'s methods, awaited.

    Arguments as for :class:`RewardClient`; ``http_client`` is an ``httpx.AsyncClient``. A gRPC client's
    channel belongs to the event loop it is first used in, so use one client per loop::

        async with AsyncRewardClient("grpc://localhost:50051") as client:
            result = await client.score("a red circle", [png_bytes])
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        transport: Transport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, transport=transport, timeout=timeout, max_retries=max_retries)
        self._check_http_client(http_client)
        self._transport: AsyncHTTPTransport | AsyncGRPCTransport
        if self.transport == "http":
            self._transport = AsyncHTTPTransport(self.base_url, self._http_headers(), http_client)
        else:
            self._transport = AsyncGRPCTransport(self.base_url, self._grpc_metadata(), secure=self.endpoint.secure)

    async def _retrying(self, send: Callable[[float], Awaitable[T]], timeout: float | None) -> T:
        seconds = self._seconds(timeout)
        return await async_call_with_retries(lambda: send(seconds), self.max_retries)

    async def score(
        self,
        prompt: str,
        images: Sequence[ImageInput],
        *,
        style: str | None = None,
        weights: Weights | None = None,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> ScoreResponse:
        """See :meth:`RewardClient.score`."""
        request = scoring_request(prompt, encode_images(images), style, weights, model, version)
        return await self._retrying(lambda seconds: self._transport.score(request, seconds), timeout)

    async def compare(
        self,
        prompt: str,
        image_a: ImageInput,
        image_b: ImageInput,
        *,
        style: str | None = None,
        weights: Weights | None = None,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> CompareResponse:
        """See :meth:`RewardClient.compare`."""
        images = [encode_image(image_a, "image_a"), encode_image(image_b, "image_b")]
        request = scoring_request(prompt, images, style, weights, model, version)
        return await self._retrying(lambda seconds: self._transport.compare(request, seconds), timeout)

    async def rank(
        self,
        prompt: str,
        images: Sequence[ImageInput],
        *,
        style: str | None = None,
        weights: Weights | None = None,
        model: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> RankResponse:
        """See :meth:`RewardClient.rank`."""
        request = scoring_request(prompt, encode_images(images), style, weights, model, version)
        return await self._retrying(lambda seconds: self._transport.rank(request, seconds), timeout)

    async def models(self, *, timeout: float | None = None) -> ModelList:
        """See :meth:`RewardClient.models`."""
        return await self._retrying(self._transport.models, timeout)

    async def health(self, *, timeout: float | None = None) -> HealthStatus:
        """See :meth:`RewardClient.health`."""
        return await self._retrying(self._transport.health, timeout)

    async def ready(self, *, timeout: float | None = None) -> bool:
        """See :meth:`RewardClient.ready`."""
        try:
            await self._transport.ready(self._seconds(timeout))
        except UnavailableError:
            return False
        return True

    async def close(self) -> None:
        """See :meth:`RewardClient.close`."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
