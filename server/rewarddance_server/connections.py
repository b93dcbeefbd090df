"""HTTP connection guards: uvicorn's httptools protocol with timeouts for slow clients and a cap on connections.

uvicorn closes a keep-alive connection only after a response, so a connection that never finishes its request
line and headers (slowloris), trickles its body, or never sends anything stays open for good; ~1,100 of them
exhausted the file descriptors and no normal client was served. Per connection this protocol adds:

- idle: no byte of a request within ``idle_timeout_s`` of the connection opening (or of the last response)
  -> closed (uvicorn's keep-alive timer, also armed when the connection opens);
- headers: the first byte of a request to the end of its headers within ``header_timeout_s`` -> else 408 and close;
- body: the end of the headers to the last byte of the body within ``body_timeout_s`` -> else closed (the route
  reading the body answers 408 at its own deadline first; this backstop covers bodies nobody reads);
- capacity: a connection opened while ``max_connections`` are open has its request answered 429
  ``too_many_connections`` with Retry-After, then closed;
- half-close: a client that sends a whole request and then shuts down its sending side still gets the response.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .metrics import Metrics

BODY_GRACE_S = 1.0  # the backstop fires after the route's own 408 had its chance


def _raw_response(status: int, reason: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def too_many_connections(scope: dict, receive: Any, send: Any) -> None:
    """The ASGI app a connection over the cap gets: 429 with Retry-After, then the connection closes."""
    body = json.dumps(
        {"error": {"code": "too_many_connections", "message": "too many open connections; retry later", "field": None}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded_protocol(
    metrics: Metrics, max_connections: int, header_timeout_s: float, body_timeout_s: float
) -> type[HttpToolsProtocol]:
    """uvicorn's ``http=`` protocol class with these limits (uvicorn builds one instance per connection)."""

    class GuardedProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            metrics.connections.inc()
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            if len(self.connections) > max_connections:
                self.app = too_many_connections
                metrics.connections_closed.labels("over_capacity").inc()
            idle = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
            self.timeout_keep_alive_task = idle  # cancelled by the first byte, as after a response

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            metrics.connections.dec()
            super().connection_lost(exc)

        def eof_received(self) -> bool | None:
            """Half-close after a complete request: keep the write side open, answer, then close."""
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and not cycle.more_body:
                cycle.keep_alive = False
                return True
            return None

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._cancel_timers()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_expired)

        def on_headers_complete(self) -> None:
            self._cancel_timers()
            self._body_timer = self.loop.call_later(body_timeout_s + BODY_GRACE_S, self._body_expired)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._cancel_timers()
            super().on_message_complete()

        def _cancel_timers(self) -> None:
            for timer in (self._header_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._header_timer = self._body_timer = None

        def timeout_keep_alive_handler(self) -> None:
            if not self.transport.is_closing():
                metrics.connections_closed.labels("idle").inc()
            super().timeout_keep_alive_handler()

        def _headers_expired(self) -> None:
            if self.transport.is_closing():
                return
            metrics.connections_closed.labels("header_timeout").inc()
            message = f"the request headers did not arrive within {header_timeout_s:.3g} s"
            self.transport.write(_raw_response(408, "Request Timeout", "header_timeout", message))
            self.transport.close()

        def _body_expired(self) -> None:
            if self.transport.is_closing():
                return
            metrics.connections_closed.labels("body_timeout").inc()
            if self.cycle is not None and not self.cycle.response_started:
                message = f"the request body did not arrive within {body_timeout_s:.3g} s"
                self.transport.write(_raw_response(408, "Request Timeout", "body_timeout", message))
            self.transport.close()

    return GuardedProtocol
