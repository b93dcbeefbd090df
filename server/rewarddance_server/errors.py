"""One error type for both protocols: HTTP status, gRPC code and the JSON body of docs/api.md.

``{"error": {"code": "<machine_code>", "message": "...", "field": "<field or null>"}}``; gRPC sends the message as
details and ``x-error-code`` / ``x-error-field`` / ``retry-after`` as trailing metadata.
"""

from __future__ import annotations

from typing import Any

import grpc

GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class GatewayError(Exception):
    """An error with its wire representation; raise it anywhere in the service layer."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return GRPC_CODES.get(
            self.status, grpc.StatusCode.UNKNOWN if self.status >= 500 else grpc.StatusCode.INVALID_ARGUMENT
        )

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}

    def grpc_metadata(self) -> list[tuple[str, str]]:
        md = [("x-error-code", self.code)]
        if self.field:
            md.append(("x-error-field", self.field))
        if self.retry_after is not None:
            md.append(("retry-after", str(max(1, round(self.retry_after)))))
        return md


def bad_request(code: str, message: str, field: str | None = None) -> GatewayError:
    return GatewayError(400, code, message, field)


def invalid_type(field: str, expected: str, value: object) -> GatewayError:
    return GatewayError(422, "invalid_type", f"{field} must be {expected}, got {type(value).__name__}", field)


def not_ready(message: str = "the gateway is not ready (models loading or shutting down)") -> GatewayError:
    return GatewayError(503, "not_ready", message, retry_after=1)


def backend_unavailable(message: str) -> GatewayError:
    return GatewayError(503, "backend_unavailable", message, retry_after=1)


def deadline_exceeded(timeout: float) -> GatewayError:
    return GatewayError(504, "deadline_exceeded", f"no result within the request deadline ({timeout:.3g} s)")


def client_disconnected() -> GatewayError:
    """The client went away mid-request (nginx's 499): counted as its own status, never as a server error."""
    return GatewayError(499, "client_disconnected", "the client closed the connection before the request was read")


def internal(message: str = "internal error") -> GatewayError:
    return GatewayError(500, "internal", message)
