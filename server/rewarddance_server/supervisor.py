"""Several gateway processes on one port: a pre-fork supervisor (``rewarddance serve --processes N``).

One gateway process does its Python work (JSON and base64, PNG decoding, the numpy scorers, batching) under one
GIL; N processes spread it over N cores. The supervisor reserves the ports and forks N workers; each worker
listens on its own socket of the HTTP and of the gRPC port, both with SO_REUSEPORT (Linux), so the kernel spreads
new connections evenly over the workers (one shared accepting socket was measured to hand every connection of a
16-client load to one worker). Each worker loads its own copy of the models, and listens only once it has: while
a worker loads, the others take the connections. The supervisor imports neither gRPC nor onnxruntime, so forking
it is safe.

- One version per model: the supervisor owns the served versions. The first worker to load reports what it
  loaded and that becomes the gateway's version; every worker reports what it loaded and, before it listens, loads
  the supervisor's version where it differs; a worker started later (a replacement) loads the supervisor's
  versions directly. ``POST /v1/admin/reload`` reaches one worker; it reloads and reports the version it now serves,
  the supervisor records it and tells every other worker to load that same version. ``--watch`` runs in worker 0
  only, and its reloads fan out the same way. Every worker reports what it serves after each load, and the
  supervisor sends the table to all of them, so ``/v1/models`` says which version each worker serves.
- Threads: each inference run gets ``--intra-op-threads`` onnxruntime threads (default 1; ``0`` here means cores / N
  per worker). N workers with all cores each oversubscribe the machine: on 2 cores, 2 workers with 2 threads each
  served 1.10x the images/s of one process, with 1 thread each 1.44x (benchmarks/results/gateway_processes.md).
- Metrics: a fresh ``PROMETHEUS_MULTIPROC_DIR`` makes ``/metrics`` report all workers, whichever one answers.
- A worker that dies is started again, on the supervisor's versions; a worker that dies within
  ``FAST_EXIT_S`` of its start ``MAX_FAST_EXITS`` times in a row stops the gateway (exit 1) instead of looping.
- SIGTERM / SIGINT: forwarded to every worker, each drains as a single gateway does; exit 0 when all exited 0.
  Workers also stop when the supervisor dies (PR_SET_PDEATHSIG on Linux, and a parent check every second).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

from .config import MULTIPROC_ENV, Settings

log = logging.getLogger("rewarddance_server.supervisor")

FAST_EXIT_S = 10.0
MAX_FAST_EXITS = 3
KILL_GRACE_S = 5.0


@dataclass
class _Worker:
    index: int
    pid: int
    control: int  # write end of the worker's command pipe
    started: float


class Supervisor:
    def __init__(self, settings: Settings, reserved: socket.socket, metrics_dir: str) -> None:
        self.settings = settings
        self.reserved = reserved  # holds the HTTP port; never listens
        self.metrics_dir = metrics_dir
        self.workers: dict[int, _Worker] = {}  # by pid
        self.versions: dict[str, int] = {}  # model -> the version every worker serves (the supervisor owns it)
        self.served: dict[int, dict[str, Any]] = {}  # worker index -> {pid, models: {model: version}}, as reported
        self.fast_exits = [0] * settings.processes
        self.failed = False
        self.stop_requested = False
        self.kill_at: float | None = None
        self.exit_codes: list[int] = []
        self.report_r, self.report_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        self._buffer = b""

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        for fd in (self.wake_r, self.wake_w, self.report_r):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
        log.info(
            "supervisor listening",
            extra={
                "processes": self.settings.processes,
                "http_port": self.settings.http_port,
                "grpc_port": self.settings.grpc_port,
            },
        )
        for index in range(self.settings.processes):
            self._spawn(index)
        try:
            while self.workers:
                with contextlib.suppress(InterruptedError):
                    select.select([self.report_r, self.wake_r], [], [], 1.0)
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
                self._read_reports()
                self._reap()
                if self.stop_requested and self.kill_at is not None and time.monotonic() > self.kill_at:
                    for worker in self.workers.values():
                        log.warning("worker did not drain in time: killed", extra={"worker": worker.index})
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGKILL)
                    self.kill_at = None
        finally:
            self.reserved.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        ok = not self.failed and all(code == 0 for code in self.exit_codes)
        log.info("supervisor stopped", extra={"exit_codes": self.exit_codes})
        return 0 if ok else 1

    def _on_stop(self, *_: Any) -> None:
        self.stop(failed=False)

    def stop(self, failed: bool) -> None:
        self.failed = self.failed or failed
        if self.stop_requested:
            return
        self.stop_requested = True
        log.info("stopping workers", extra={"workers": len(self.workers)})
        self.kill_at = time.monotonic() + self.settings.shutdown_timeout_s + KILL_GRACE_S
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)

    # -- workers ------------------------------------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        control_r, control_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(control_w)
                for worker in self.workers.values():
                    os.close(worker.control)
                os.close(self.report_r)
                self.reserved.close()
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent()
                settings = replace(
                    self.settings,
                    worker=index,
                    control_fd=control_r,
                    report_fd=self.report_w,
                    versions=tuple(sorted(self.versions.items())),
                )
                code = _run_worker(settings)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(control_r)
        self.workers[pid] = _Worker(index, pid, control_w, time.monotonic())
        log.info("worker started", extra={"worker": index, "pid": pid, "versions": self.versions})

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.control)
            _mark_dead(pid)
            if self.served.get(worker.index, {}).get("pid") == pid:
                del self.served[worker.index]
                self._broadcast_served()
            code = os.waitstatus_to_exitcode(status)
            if self.stop_requested:
                self.exit_codes.append(code)
                continue
            lived = time.monotonic() - worker.started
            log.error(
                "worker exited", extra={"worker": worker.index, "pid": pid, "code": code, "seconds": round(lived, 1)}
            )
            self.fast_exits[worker.index] = self.fast_exits[worker.index] + 1 if lived < FAST_EXIT_S else 0
            if self.fast_exits[worker.index] >= MAX_FAST_EXITS:
                log.error("a worker keeps failing at start: stopping", extra={"worker": worker.index})
                self.exit_codes.append(code)
                self.stop(failed=True)
                continue
            self._spawn(worker.index)

    # -- versions: agreement at start, reload fan-out, the served table ------------------------------------------
    def _read_reports(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.report_r, 65536):
                self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            report = json.loads(line)
            sender = self.workers.get(report["pid"])  # None: the worker died after it wrote this
            if "loaded" in report:
                self._on_loaded(sender, report)
            else:
                self._on_reloaded(sender, report)
            self._broadcast_served()

    def _on_loaded(self, sender: _Worker | None, report: dict) -> None:
        """A worker loaded its models: the first report of a model sets the gateway's version; answer what to serve."""
        if sender is None:
            return
        loaded = {m: int(v) for m, v in report["loaded"].items()}
        for model, version in loaded.items():
            self.versions.setdefault(model, version)
        self.served[sender.index] = {"pid": sender.pid, "models": loaded}
        self._send(sender, {"serve": {m: self.versions[m] for m in loaded}})

    def _on_reloaded(self, sender: _Worker | None, report: dict) -> None:
        model, version = report["model"], int(report["version"])
        if sender is not None:
            self.served.setdefault(sender.index, {"pid": sender.pid, "models": {}})["models"][model] = version
        if not report.get("announce"):  # a reload the supervisor asked for: only the table changes
            if version != self.versions.get(model):
                log.error(
                    "a worker serves another version than the gateway's",
                    extra={"worker": report["worker"], "model": model, "version": version, "want": self.versions},
                )
            return
        self.versions[model] = version
        log.info("reload fan-out", extra={"model": model, "version": version, "from_worker": report["worker"]})
        for worker in self.workers.values():
            if worker is not sender:
                self._send(worker, {"reload": {"model": model, "version": version}})

    def _broadcast_served(self) -> None:
        table = {str(index): entry for index, entry in sorted(self.served.items())}
        for worker in self.workers.values():
            self._send(worker, {"workers": table})

    def _send(self, worker: _Worker, command: dict) -> None:
        try:
            os.write(worker.control, (json.dumps(command) + "\n").encode())
        except (BrokenPipeError, OSError):
            log.warning("could not reach worker", extra={"worker": worker.index})


def _run_worker(settings: Settings) -> int:
    from .app import run as run_gateway

    return run_gateway(settings)


def _die_with_parent() -> None:
    """SIGTERM this process when the supervisor dies (Linux); elsewhere the parent check covers it."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the shared metrics folder."""
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _reserve(host: str, port: int) -> socket.socket:
    """A bound, never listening SO_REUSEPORT socket: holds the port (a free one for 0) for the workers' sockets."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_supervised(settings: Settings) -> int:
    """Reserve the ports, fork ``settings.processes`` workers, supervise them until SIGTERM; the exit code."""
    if "grpc" in sys.modules or "onnxruntime" in sys.modules:
        raise RuntimeError("the supervisor must fork before gRPC or onnxruntime are imported")
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("--processes needs SO_REUSEPORT (Linux, BSD, macOS)")
    metrics_dir = tempfile.mkdtemp(prefix="rewarddance-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # read by prometheus_client when a worker imports it
    http = _reserve(settings.host, settings.http_port)
    grpc_port = settings.grpc_port
    if grpc_port == 0:  # gRPC binds with SO_REUSEPORT itself; just pick the number
        with _reserve(settings.host, 0) as probe:
            grpc_port = probe.getsockname()[1]
    threads = settings.intra_op_threads or max(1, (os.cpu_count() or 1) // settings.processes)
    settings = replace(
        settings, http_port=http.getsockname()[1], grpc_port=grpc_port, reuse_port=True, intra_op_threads=threads
    )
    return Supervisor(settings, http, metrics_dir).run()
