"""Start, probe and stop a real ``tritonserver`` process (from :func:`triton_harness.provision.provision`).

Stdlib only (subprocess + urllib). Everything binds to 127.0.0.1; free ports are picked there by default.

    with TritonServer(repo, model_control_mode="explicit", load_models=["reward_small"]) as server:
        print(server.http_url, server.startup_seconds)
        server.load("reward_small")       # (re)load after writing a new version directory
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .provision import TritonInstall, provision

HOST = "127.0.0.1"
_BIND_ERRORS = ("address already in use", "failed to start", "socket bind", "failed to listen")


class TritonServerError(RuntimeError):
    """The server died, did not get ready in time, or a repository call failed."""


def free_port(exclude: Iterable[int] = ()) -> int:
    """A port that is free on 127.0.0.1 right now (the kernel picks it)."""
    exclude = set(exclude)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise TritonServerError("could not find a free port on 127.0.0.1")


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


class TritonServer:
    """One ``tritonserver`` process. Configure in the constructor, then ``start()`` + ``wait_ready()``
    (or use it as a context manager, which does both and ``stop()`` at exit)."""

    def __init__(
        self,
        repository: str | os.PathLike,
        *,
        install: TritonInstall | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        model_control_mode: Literal["none", "explicit"] = "none",
        load_models: Sequence[str] = (),
        log_file: str | os.PathLike | None = None,
        log_verbose: int = 0,
        exit_timeout_s: int = 5,
        strict_model_config: bool = True,
        backend_config: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if model_control_mode not in ("none", "explicit"):
            raise ValueError(f"model_control_mode must be 'none' or 'explicit', not {model_control_mode!r}")
        if load_models and model_control_mode != "explicit":
            raise ValueError("load_models needs model_control_mode='explicit' (mode 'none' loads everything)")
        self.repository = Path(repository).absolute()
        self.install = install
        self._auto_ports = http_port is None and grpc_port is None and metrics_port is None
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.model_control_mode = model_control_mode
        self.load_models = list(load_models)
        self.log_file = Path(log_file).absolute() if log_file is not None else None
        self.log_verbose = log_verbose
        self.exit_timeout_s = exit_timeout_s
        self.strict_model_config = strict_model_config
        self.backend_config = dict(backend_config or {})
        self.extra_args = list(extra_args)
        self.shm_prefix = f"rdtriton{os.getpid()}-{secrets.token_hex(4)}"
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self.returncode: int | None = None
        self._t_start: float | None = None
        self._log_fh = None

    # ------------------------------------------------------------------ addresses
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def http_url(self) -> str:
        """``127.0.0.1:PORT``, the form ``tritonclient.http.InferenceServerClient(url=...)`` takes."""
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    # ------------------------------------------------------------------ lifecycle
    def command(self) -> list[str]:
        inst = self.install
        assert inst is not None
        args = [
            str(inst.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={inst.backend_dir}",
            f"--cache-directory={inst.cache_dir}",
            f"--http-address={HOST}",
            f"--grpc-address={HOST}",
            f"--metrics-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control_mode}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--strict-model-config={'true' if self.strict_model_config else 'false'}",
            f"--log-verbose={self.log_verbose}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
        ]
        args += [f"--backend-config=python,{k}={v}" for k, v in self.backend_config.items()]
        args += [f"--load-model={m}" for m in self.load_models]
        return args + self.extra_args

    def start(self) -> TritonServer:
        """Spawn the process (its own session, so its python-backend stubs share its process group)."""
        if self.process is not None and self.process.poll() is None:
            raise TritonServerError(f"server already running (pid {self.process.pid})")
        if not self.repository.is_dir():
            raise TritonServerError(f"model repository {self.repository} is not a directory")
        if self.install is None:
            self.install = provision()
        if self.http_port is None or self.grpc_port is None or self.metrics_port is None:
            used: list[int] = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p]
            for attr in ("http_port", "grpc_port", "metrics_port"):
                if getattr(self, attr) is None:
                    setattr(self, attr, free_port(used))
                    used.append(getattr(self, attr))
        if self.log_file is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_file = Path(name)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.startup_seconds = None
        self.returncode = None
        self._t_start = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=self.install.environ(),
            cwd=str(self.repository),
            start_new_session=True,
        )
        return self

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace") if self.log_file else ""
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60.0, poll_s: float = 0.05) -> float:
        """Poll ``/v2/health/ready`` until 200; return (and record) seconds since ``start()``.

        Raises ``TritonServerError`` with the log tail when the process exits first or ``timeout`` passes."""
        if self.process is None or self._t_start is None:
            raise TritonServerError("wait_ready() before start()")
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while True:
            code = self.process.poll()
            if code is not None:
                self.returncode = code
                raise TritonServerError(
                    f"tritonserver exited with code {code} before it was ready (log {self.log_file}):\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        self.startup_seconds = time.monotonic() - self._t_start
                        return self.startup_seconds
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise TritonServerError(
                    f"tritonserver (pid {self.process.pid}) not ready after {timeout:.1f} s (log {self.log_file}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(poll_s)

    def start_and_wait(self, timeout: float = 60.0, retries: int = 2) -> TritonServer:
        """``start()`` + ``wait_ready()``; with auto-picked ports, retry on a port clash (another process won the
        race for a port between our probe and the server's bind)."""
        for attempt in range(retries + 1):
            self.start()
            try:
                self.wait_ready(timeout)
                return self
            except TritonServerError:
                tail = self.log_tail().lower()
                self.stop()
                if not (self._auto_ports and attempt < retries and any(s in tail for s in _BIND_ERRORS)):
                    raise
                self.http_port = self.grpc_port = self.metrics_port = None
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the server, SIGKILL it (and anything left in its process group) after ``timeout``; reap it.

        Returns the exit code (None if it was never started)."""
        proc = self.process
        if proc is None:
            return None
        pid = proc.pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                proc.wait(10)
        self.returncode = proc.returncode
        # python-backend stubs leave on their own when the server exits; give them a moment, then make sure
        deadline = time.monotonic() + 5.0
        while group_pids(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_pids(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while group_pids(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._cleanup_shm()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return self.returncode

    def _cleanup_shm(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for leftover in shm.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def __enter__(self) -> TritonServer:
        try:
            return self.start_and_wait()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP API (stdlib)
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        except (urllib.error.URLError, OSError) as err:
            raise TritonServerError(f"{method} {path}: {err}") from err
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, payload

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        status, payload = self._request(method, path, body, timeout)
        if status != 200:
            msg = payload.get("error") if isinstance(payload, dict) else payload
            raise TritonServerError(f"{method} {path} -> HTTP {status}: {msg}")
        return payload

    def metadata(self) -> dict:
        """Server metadata: name, version (e.g. "2.51.0"), extensions."""
        return self._call("GET", "/v2")

    def is_ready(self) -> bool:
        """``/v2/health/ready``. Triton's strict readiness makes this False while any model it was asked to load
        (--load-model, or a failed load() in explicit mode) is not ready; use ``is_live()`` for "still running"."""
        with contextlib.suppress(TritonServerError):
            return self._request("GET", "/v2/health/ready", timeout=2.0)[0] == 200
        return False

    def is_live(self) -> bool:
        with contextlib.suppress(TritonServerError):
            return self._request("GET", "/v2/health/live", timeout=2.0)[0] == 200
        return False

    def model_ready(self, model: str, version: str | int | None = None) -> bool:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/ready"
        with contextlib.suppress(TritonServerError):
            return self._request("GET", path, timeout=5.0)[0] == 200
        return False

    def model_config(self, model: str, version: str | int | None = None) -> dict:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/config"
        return self._call("GET", path)

    def repository_index(self, ready_only: bool = False) -> list[dict]:
        return self._call("POST", "/v2/repository/index", {"ready": ready_only})

    def load(self, model: str, timeout: float = 120.0, config: Mapping | str | None = None) -> None:
        """Load (or reload, picking up new version directories) ``model``; blocks until done.

        Raises ``TritonServerError`` with Triton's message when the load fails. ``config``: optional override
        of config.pbtxt (a JSON model config, as Triton's repository API takes it).

        While a loaded version keeps serving during a reload, note that Triton runs this HTTP call synchronously on
        one of its HTTP worker threads: HTTP inference connections that share that thread stall until the load ends
        (gRPC inference is unaffected; or pass ``extra_args=["--http-thread-count=N"]``)."""
        body = None
        if config is not None:
            body = {"parameters": {"config": config if isinstance(config, str) else json.dumps(config)}}
        self._call("POST", f"/v2/repository/models/{model}/load", body, timeout=timeout)

    def unload(self, model: str, unload_dependents: bool = False, timeout: float = 60.0) -> None:
        body = {"parameters": {"unload_dependents": unload_dependents}}
        self._call("POST", f"/v2/repository/models/{model}/unload", body, timeout=timeout)

    def wait_model_unloaded(self, model: str, timeout: float = 30.0) -> None:
        """Unload is asynchronous in Triton: wait until the model has no READY version."""
        deadline = time.monotonic() + timeout
        while self.model_ready(model):
            if time.monotonic() > deadline:
                raise TritonServerError(f"model {model} still ready {timeout:.0f} s after unload")
            time.sleep(0.05)

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"TritonServer({self.repository}, http={self.http_url}, grpc={self.grpc_url}, pid={self.pid}, {state})"
