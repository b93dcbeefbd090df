"""The worker's side of ``rewarddance serve --processes N`` (the supervisor's side is :mod:`.supervisor`).

A worker reports the versions it loaded over its report pipe, loads what the supervisor says to over its control
pipe, announces its own reloads so the others follow, keeps the table of what every worker serves, and stops when
the supervisor is gone. The gateway (:mod:`.app`) attaches one when it runs as a worker; the supervisor never
imports this module (it only forks and talks over the pipes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from .config import Settings

log = logging.getLogger("rewarddance_server.supervisor")


class WorkerLink:
    """The worker's side: agree on versions before listening, report reloads, apply the supervisor's, keep the
    table of what every worker serves, stop when the supervisor is gone."""

    AGREE_TIMEOUT_S = 30.0

    def __init__(self, gateway: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.gateway = gateway
        self.loop = loop
        self.settings: Settings = gateway.settings
        self.parent = os.getppid()
        self._buffer = b""
        self._tasks: set[asyncio.Task] = set()
        self._serve: asyncio.Future | None = None

    def attach(self) -> None:
        self.gateway.service.on_reload = self.announce
        os.set_blocking(self.settings.control_fd, False)
        self.loop.add_reader(self.settings.control_fd, self._on_control)
        self._keep(self.loop.create_task(self._watch_parent(), name="watch-supervisor"))

    async def agree_versions(self) -> None:
        """Report the loaded versions, then load the supervisor's where they differ (before this worker listens)."""
        service = self.gateway.service
        self._serve = self.loop.create_future()
        loaded = {name: s.pipeline.version for name, s in service.served().items()}
        self._write({"loaded": loaded})
        try:
            wanted = await asyncio.wait_for(self._serve, self.AGREE_TIMEOUT_S)
        except TimeoutError:
            log.error("the supervisor did not say which versions to serve: serving what loaded")
            return
        for model, version in wanted.items():
            if loaded.get(model) != version:
                await self._apply(model, version)

    def announce(self, model: str, version: int) -> None:
        """This worker reloaded on an admin request or --watch: the others are to follow."""
        self._write({"model": model, "version": version, "announce": True})

    def _write(self, report: dict) -> None:
        line = json.dumps({"worker": self.settings.worker, "pid": os.getpid(), **report}) + "\n"
        os.write(self.settings.report_fd, line.encode())  # under PIPE_BUF: atomic among workers

    def _on_control(self) -> None:
        try:
            chunk = os.read(self.settings.control_fd, 65536)
        except BlockingIOError:
            return
        if not chunk:  # the supervisor is gone
            self.loop.remove_reader(self.settings.control_fd)
            self.gateway.request_stop()
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            command = json.loads(line)
            if "reload" in command:
                reload = command["reload"]
                self._keep(self.loop.create_task(self._apply(reload["model"], reload["version"])))
            elif "serve" in command:
                if self._serve is not None and not self._serve.done():
                    self._serve.set_result(command["serve"])
            elif "workers" in command:
                self.gateway.service.workers = command["workers"]

    async def _apply(self, model: str, version: int) -> None:
        service = self.gateway.service
        deadline = time.monotonic() + 600
        while not service.loaded and time.monotonic() < deadline:  # a restarted worker is still loading
            await asyncio.sleep(0.1)
        try:
            result = await service.reload(model, version)
            log.info("reloaded as told by the supervisor", extra={"result": result})
        except Exception:
            log.exception("reload from the supervisor failed", extra={"model": model, "version": version})
        served = service.served().get(model)
        if served is not None:
            self._write({"model": model, "version": served.pipeline.version, "announce": False})

    async def _watch_parent(self) -> None:
        while os.getppid() == self.parent:
            await asyncio.sleep(1.0)
        log.warning("the supervisor is gone: stopping")
        self.gateway.request_stop()

    def _keep(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
