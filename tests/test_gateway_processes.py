"""``rewarddance serve --processes 2``: two worker processes behind one HTTP and one gRPC port (supervisor.py).

One real supervised gateway on a copy of the tiny repository: both workers answer and agree, /metrics counts the
requests of both, an admin reload reaches the worker that did not get it, a killed worker is replaced, and SIGTERM
drains both and exits 0. Every wait is a bounded loop.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from rewarddance_server.proto import rewarddance_v1_pb2 as pb
from rewarddance_server.proto import rewarddance_v1_pb2_grpc as pb_grpc
from test_gateway import ADMIN_KEY, API_KEY, AUTH, MODEL, ServerProcess, b64, wait_ready

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def score_by_worker(url: str, body: dict, want: set[str], timeout: float = 60.0) -> dict[str, dict]:
    """One response per worker, each on a new connection (the kernel spreads connections, not requests)."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while set(seen) != want and time.monotonic() < deadline:
        r = httpx.post(url + "/v1/score", json=body, headers=AUTH, timeout=30.0)
        assert r.status_code == 200, r.text
        seen.setdefault(r.headers["x-worker"], r.json())
    assert set(seen) == want, f"workers seen: {sorted(seen)}"
    return seen


@pytest.fixture(scope="module")
def supervised(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("processes")
    repo = root / "model_repository"
    shutil.copytree(tiny_repository, repo)
    env = {"REWARDDANCE_API_KEYS": API_KEY, "REWARDDANCE_ADMIN_KEY": ADMIN_KEY}
    srv = ServerProcess(
        repo, root / "server.log", "--model", MODEL, "--processes", "2", "--intra-op-threads", "1", env=env
    )
    srv.repo = repo
    try:
        wait_ready(srv.url, srv.proc)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def body(tiny: dict) -> dict:
    import pandas as pd

    data = Path(tiny["data"])
    images = pd.read_parquet(data / "images.parquet")
    return {"prompt": "a red circle", "images": [b64((data / images["path"].iloc[0]).read_bytes())]}


def test_two_workers_answer_alike_and_metrics_add_up(supervised: ServerProcess, body: dict) -> None:
    assert len(children(supervised.proc.pid)) == 2
    seen = score_by_worker(supervised.url, body, {"0", "1"})
    assert seen["0"]["results"] == seen["1"]["results"]  # same model, same answer
    with grpc.insecure_channel(f"127.0.0.1:{supervised.grpc_port}") as channel:
        request = pb.ScoreRequest(prompt=body["prompt"], images=[base64.b64decode(body["images"][0])])
        reply = pb_grpc.RewardServiceStub(channel).Score(request, metadata=[("authorization", AUTH["authorization"])])
    assert reply.results[0].reward == pytest.approx(seen["0"]["results"][0]["reward"], abs=1e-6)

    def scored() -> float:
        text = httpx.get(supervised.url + "/metrics", timeout=10.0).text
        match = re.search(r'rewarddance_requests_total\{protocol="http",route="/v1/score",status="200"\} (\S+)', text)
        return float(match.group(1)) if match else 0.0

    before = scored()
    for _ in range(6):
        assert httpx.post(supervised.url + "/v1/score", json=body, headers=AUTH, timeout=30.0).status_code == 200
    assert scored() == before + 6  # whichever worker answers /metrics counts both


def test_admin_reload_reaches_every_worker(supervised: ServerProcess, body: dict, tiny_reward_run: Path) -> None:
    from rewarddance_exporter.export import ExportOptions, export_run

    export_run(tiny_reward_run, supervised.repo, ExportOptions(flavour="python"), log=lambda _: None)
    r = httpx.post(supervised.url + "/v1/admin/reload", json={"model": MODEL}, headers=ADMIN, timeout=60.0)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {"name": MODEL, "version": 2}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the other worker follows through the supervisor
        seen = score_by_worker(supervised.url, body, {"0", "1"})
        if all(s["model"]["version"] == 2 for s in seen.values()):
            break
        time.sleep(0.2)
    assert {w: s["model"]["version"] for w, s in seen.items()} == {"0": 2, "1": 2}


def test_killed_worker_is_replaced_then_sigterm_drains(supervised: ServerProcess, body: dict) -> None:
    before = children(supervised.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        victim in children(supervised.proc.pid) or len(children(supervised.proc.pid)) < 2
    ):
        time.sleep(0.1)
    after = children(supervised.proc.pid)
    assert len(after) == 2 and victim not in after
    wait_ready(supervised.url, supervised.proc)
    seen = score_by_worker(supervised.url, body, {"0", "1"})
    assert {s["model"]["version"] for s in seen.values()} == {2}  # the replacement got the reload replayed

    supervised.proc.send_signal(signal.SIGTERM)
    assert supervised.proc.wait(timeout=60) == 0
    for pid in after:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    with pytest.raises(httpx.TransportError):
        httpx.get(supervised.url + "/healthz", timeout=2.0)
