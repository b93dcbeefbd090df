"""The SDK's exception tree: one class per failure a caller handles differently, the same for HTTP and gRPC.

RewardError
└── APIError                  status, code, message, field, request_id, retry_after
    ├── BadRequestError       400, 413, 415, 422 / INVALID_ARGUMENT
    ├── AuthenticationError   401 / UNAUTHENTICATED
    ├── PermissionDeniedError 403 / PERMISSION_DENIED
    ├── NotFoundError         404 / NOT_FOUND
    ├── RateLimitError        429 / RESOURCE_EXHAUSTED
    ├── InternalServerError   500 and other 5xx / INTERNAL, UNKNOWN, DATA_LOSS
    ├── UnavailableError      503 / UNAVAILABLE, and connection failures (status None)
    └── APITimeoutError       504, 408 / DEADLINE_EXCEEDED, and client-side timeouts (status None)
"""

from __future__ import annotations

from typing import Any


class RewardError(Exception):
    """Base class of every error the rewarddance client raises on purpose."""


class APIError(RewardError):
    """The gateway answered with an error, or could not be reached.

    Attributes:
        message: the human-readable reason (the server's ``error.message`` when it sent one).
        status: the HTTP status (gRPC codes are mapped to their HTTP equivalent); ``None`` when no response came.
        code: the server's machine code (e.g. ``"invalid_weights"``), or a client one (``"timeout"``,
            ``"connection_error"``).
        field: the request field the error is about, when the server named one.
        request_id: the server's ``x-request-id``, to quote in a bug report.
        retry_after: seconds the server asked the caller to wait (``Retry-After``), if it did.
        body: the decoded error body, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        text = f"{head}: {self.message}" if head else self.message
        if self.field:
            text += f" (field: {self.field})"
        if self.request_id:
            text += f" [request_id: {self.request_id}]"
        return text


class BadRequestError(APIError):
    """The request was rejected as malformed: bad image, prompt, weights, size or format (400/413/415/422)."""


class AuthenticationError(APIError):
    """Missing or wrong API key (401)."""


class PermissionDeniedError(APIError):
    """The key is valid but not allowed on this route (403)."""


class NotFoundError(APIError):
    """Unknown model or version (404)."""


class RateLimitError(APIError):
    """The server's inference queue is full (429); ``retry_after`` says how long it asked to wait."""


class InternalServerError(APIError):
    """The server failed while handling the request (500 and 5xx other than 503/504)."""


class UnavailableError(APIError):
    """The server is not ready or its backend is down (503), or it could not be reached at all."""


class APITimeoutError(APIError, TimeoutError):
    """The deadline passed: the server's (504) or the client's own timeout (status ``None``)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: APITimeoutError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
    503: UnavailableError,
    504: APITimeoutError,
}

# Errors worth another attempt: the same request may succeed once the server has drained or recovered.
RETRYABLE: tuple[type[APIError], ...] = (RateLimitError, UnavailableError, APITimeoutError, InternalServerError)


def error_class(status: int) -> type[APIError]:
    """The exception class for an HTTP status (or the HTTP equivalent of a gRPC code)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    # 501 Not Implemented is a permanent answer, not a server failure worth retrying.
    if status >= 500 and status != 501:
        return InternalServerError
    return APIError
