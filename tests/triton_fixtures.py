"""Pytest plugin: a real Triton Inference Server (``nvidia-pytriton`` wheel) for tests and benchmarks.

Registered from tests/conftest.py with ``pytest_plugins = ["triton_fixtures"]``.

- ``triton_install`` (session): ``triton_harness.provision()``; about a minute the first time (pip), instant
  afterwards. Provisioning needs the package registry once; without it the fixture FAILS (never skips).
- ``triton_server`` (function): a factory ``triton_server(repository, **kw) -> TritonServer`` that starts a server
  (kwargs as ``TritonServer``, plus ``ready_timeout`` and ``wait=False`` to skip waiting) and stops every server it
  started, by pid, at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from triton_harness import ProvisionError, TritonInstall, TritonServer, provision


@pytest.fixture(scope="session")
def triton_install() -> TritonInstall:
    try:
        return provision(log=lambda msg: print(f"[triton provision] {msg}", file=sys.stderr))
    except ProvisionError as exc:
        pytest.fail(
            "Could not provision the Triton venv (nvidia-pytriton + numpy<2 + onnxruntime). The first run needs "
            f"pip to reach the package registry; later runs reuse the venv.\n{exc}",
            pytrace=False,
        )


@pytest.fixture
def triton_server(triton_install: TritonInstall, tmp_path: Path) -> Iterator[Callable[..., TritonServer]]:
    servers: list[TritonServer] = []

    def start(repository, *, ready_timeout: float = 90.0, wait: bool = True, **kw) -> TritonServer:
        kw.setdefault("install", triton_install)
        kw.setdefault("log_file", tmp_path / f"tritonserver-{len(servers)}.log")
        server = TritonServer(repository, **kw)
        servers.append(server)
        if wait:
            server.start_and_wait(ready_timeout)
        else:
            server.start()
        return server

    yield start
    for server in reversed(servers):
        server.stop()
