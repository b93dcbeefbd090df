"""One process, both protocols: uvicorn (HTTP) and grpc.aio on one event loop, over one :class:`Service`.

SIGTERM / SIGINT: readiness goes to 503 / NOT_SERVING, both servers stop accepting (listening sockets closed,
new connections refused), in-flight requests finish within ``shutdown_timeout_s``, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import time
from typing import Any

import uvicorn

from .config import Settings
from .connections import guarded_protocol
from .grpc_server import GrpcGateway
from .http_app import create_app
from .service import Service
from .worker_link import WorkerLink

log = logging.getLogger("rewarddance_server.app")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (the gateway coordinates shutdown of both servers)."""

    def capture_signals(self) -> contextlib.AbstractContextManager:  # type: ignore[override]
        return contextlib.nullcontext()


class Gateway:
    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.settings = settings
        self.service = service or Service(settings)
        self.app = create_app(self.service)
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout_s)),
            timeout_keep_alive=settings.idle_timeout_s,  # type: ignore[arg-type]  # a float works (call_later)
            http=guarded_protocol(
                self.service.metrics, settings.max_connections, settings.header_timeout_s, settings.body_timeout_s
            ),
        )
        _ensure_file_descriptors(settings.max_connections)
        self.http = _Uvicorn(config)
        self.grpc: GrpcGateway | None = None
        self.link: WorkerLink | None = None  # when this process is one of several workers
        self.stopping: asyncio.Event | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    async def start(self) -> None:
        self.stopping = asyncio.Event()
        await self.service.start()
        if self.settings.worker is not None:
            # One of several workers on the same ports listens only once it can serve: while it
            # loads (at start, or replacing a dead worker) the others answer, and a request never meets a 503.
            while not self.service.loaded and not self.stopping.is_set():
                await asyncio.sleep(0.05)
            if self.link is not None and self.service.loaded:
                await self.link.agree_versions()  # serve the supervisor's versions from the first request on
        if self.settings.grpc_port >= 0:
            self.grpc = GrpcGateway(self.service, self.settings.host, self.settings.grpc_port)
            await self.grpc.start()
            self.grpc_port = self.grpc.port
        sockets = None
        if self.settings.reuse_port:  # one of several workers: each listens on its own socket of the same port
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((self.settings.host, self.settings.http_port))
            listener.listen(2048)
            sockets = [listener]
        self._http_task = asyncio.create_task(self.http.serve(sockets=sockets), name="uvicorn")
        for _ in range(500):  # bounded: uvicorn binds within milliseconds
            if self.http.started or self._http_task.done():
                break
            await asyncio.sleep(0.01)
        if self._http_task.done():
            self._http_task.result()
            raise RuntimeError("the HTTP server stopped at startup")
        self.http_port = self.http.servers[0].sockets[0].getsockname()[1]
        log.info(
            "listening",
            extra={"host": self.settings.host, "http_port": self.http_port, "grpc_port": self.grpc_port},
        )

    def request_stop(self) -> None:
        if self.stopping is not None and not self.stopping.is_set():
            log.info("shutdown requested: draining")
            self.service.draining = True
            self.stopping.set()

    async def wait_and_stop(self) -> None:
        assert self.stopping is not None
        await self.stopping.wait()
        started = time.perf_counter()
        timeout = self.settings.shutdown_timeout_s
        self.http.should_exit = True  # uvicorn closes its listener, then waits for in-flight requests
        stops: list[Any] = [self._http_task]
        if self.grpc is not None:
            stops.append(asyncio.create_task(self.grpc.stop(grace=timeout)))
        try:
            await asyncio.wait_for(asyncio.gather(*stops, return_exceptions=True), timeout=timeout + 2)
        except TimeoutError:
            log.warning("drain timed out")
        await self.service.stop()
        log.info("stopped", extra={"seconds": round(time.perf_counter() - started, 3)})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.worker is not None:
            self.link = WorkerLink(self, loop)
            self.link.attach()
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)
        await self.wait_and_stop()


FD_RESERVE = 256  # descriptors beyond the connections: model files, gRPC, pipes, logs


def _ensure_file_descriptors(max_connections: int) -> None:
    """Raise the soft descriptor limit towards the hard one so ``max_connections`` fit with room to spare."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        if soft < want:
            log.warning(
                "the file-descriptor limit is below --max-connections plus a reserve",
                extra={"limit": soft, "max_connections": max_connections, "reserve": FD_RESERVE},
            )


def run(settings: Settings, service: Service | None = None) -> int:
    """Serve until stopped, on uvloop where it is installed (uvicorn[standard] brings it): its event loop and its
    thread-to-loop wake-ups cost less CPU per request than asyncio's own loop (docs/serving_profile.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(Gateway(settings, service).run())
    else:
        uvloop.run(Gateway(settings, service).run())
    return 0
