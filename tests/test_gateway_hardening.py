"""Gateway hardening (issue 17): the work a request can cause is bounded, slow clients are timed out, bad versions are
skipped, and hostile input gets a 4xx, never a 5xx.

- cost: a thin image is refused from its header before the resize that would amplify it, a normal client next to a
  stream of thin-image requests keeps being served, and work in flight (images, body bytes) is capped with 429;
- codes: deeply nested JSON is 400, an aborted upload is 499 (not 5xx), a malformed gRPC message is
  INVALID_ARGUMENT, /readyz shows no filesystem path;
- connections: slowloris headers, trickled bodies and idle connections are closed while a normal client is served;
  connections over the cap get 429; a half-closed client still gets its answer;
- fail safe: a corrupt newest version at start and at reload is skipped and the newest good one serves; rollback
  works with a corrupt newest manifest;
- one version: with two worker processes, a worker replacing a dead one serves the version reloaded to.

In-process gateways (one supervised subprocess) on free 127.0.0.1 ports, test_gateway's harness; every wait is a
bounded loop.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rewarddance_server.admission import Budget, Lease
from rewarddance_server.errors import GatewayError
from rewarddance_server.images import DecodeCancelled, ImageLimits, decode_images, open_checked
from test_gateway import MODEL, ControlledBackend, InProcessGateway, b64, wait_ready

THIN = (1, 100_000)  # width, height: ~6 KB as a PNG; 224 x 22,400,000 pixels after the resize at size 224


def thin_png(width: int = THIN[0], height: int = THIN[1]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, format="PNG")
    return out.getvalue()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample (labels in any order), 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def statuses_5xx(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("rewarddance_requests_total{") and re.search(r'status="5\d\d"', line)
    )


def raw_connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout`` passes: then what came)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hardening") / "model_repository"
    shutil.copytree(tiny_repository, out)
    return out


@pytest.fixture(scope="module")
def body(tiny: dict) -> dict:
    data = Path(tiny["data"])
    images = pd.read_parquet(data / "images.parquet")
    return {"prompt": "a red circle", "images": [b64((data / images["path"].iloc[0]).read_bytes())]}


@pytest.fixture(scope="module")
def gateway(repo: Path) -> Iterator[InProcessGateway]:
    """Tight limits so that every guard can be reached in a second or two."""
    gw = InProcessGateway(
        repo,
        ControlledBackend(),
        max_body_bytes=1024 * 1024,
        max_inflight_bytes=300_000,
        max_connections=24,
        header_timeout_s=1.0,
        body_timeout_s=1.5,
        idle_timeout_s=1.0,
        request_timeout_s=10,
    )
    try:
        wait_ready(gw.url)
        yield gw
    finally:
        gw.close()


# -- admission by cost ------------------------------------------------------------------------------------------
def test_thin_image_is_refused_from_its_header() -> None:
    limits = ImageLimits(size=224, max_pixels=4096 * 4096, max_resized_pixels=4 * 1024 * 1024)
    data = thin_png()
    assert len(data) < 20_000  # a few KB on the wire ...
    started = time.perf_counter()
    with pytest.raises(GatewayError) as info:
        open_checked(data, "images[0]", limits)  # ... refused before a pixel is decoded or resized
    assert time.perf_counter() - started < 0.5
    error = info.value
    assert (error.status, error.code, error.field) == (413, "image_too_large", "images[0]")
    assert "224x22400000" in error.message and "4194304" in error.message
    assert open_checked(thin_png(300, 200), "images[0]", limits).size == (300, 200)  # ordinary shapes pass
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(DecodeCancelled):  # a request that gave up decodes nothing more
        decode_images([thin_png(64, 64)], ["images[0]"], limits, cancelled)


def test_budget_refuses_beyond_its_limit_but_never_a_request_alone() -> None:
    budget = Budget("bytes", 100)
    first, second = Lease(), Lease()
    first.take(budget, 60)
    with pytest.raises(GatewayError) as info:
        second.take(budget, 50)  # 110 > 100 while another request holds bytes
    assert (info.value.status, info.value.code, info.value.retry_after) == (429, "overloaded", 1.0)
    second.take(budget, 40)
    first.release()
    second.take(budget, 500)  # alone: a request bigger than the budget still gets through
    assert budget.in_use == 540
    second.release()
    second.release()  # idempotent
    assert budget.in_use == 0


def test_normal_client_is_served_next_to_thin_images(gateway: InProcessGateway, body: dict) -> None:
    thin = {"prompt": "a red line", "images": [b64(thin_png())] * 16}
    stop = threading.Event()
    thin_statuses: list[int] = []

    def flood() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                thin_statuses.append(client.post(f"{gateway.url}/v1/score", json=thin).status_code)

    floods = [threading.Thread(target=flood, daemon=True) for _ in range(2)]  # within the in-flight byte budget
    for t in floods:
        t.start()
    latencies, statuses = [], []
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(15):
                started = time.perf_counter()
                statuses.append(client.post(f"{gateway.url}/v1/score", json=body).status_code)
                latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        for t in floods:
            t.join(timeout=60)
    assert statuses == [200] * 15
    assert thin_statuses and set(thin_statuses) == {413}
    assert float(np.percentile(latencies, 99)) < 3.0, latencies


def test_images_in_flight_are_capped_with_429(repo: Path, body: dict) -> None:
    backend = ControlledBackend()
    gw = InProcessGateway(repo, backend, max_inflight_images=4, max_batch=4, max_wait_ms=0, request_timeout_s=10)
    try:
        wait_ready(gw.url)
        two = {**body, "images": body["images"] * 2}
        backend.delay = 0.6
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: httpx.post(f"{gw.url}/v1/score", json=two, timeout=30), range(4)))
        backend.delay = 0.0
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1
        assert "images" in refused.json()["error"]["message"]
        assert httpx.post(f"{gw.url}/v1/score", json=two, timeout=30).status_code == 200  # all given back
    finally:
        gw.close()


def test_body_bytes_in_flight_are_capped_and_an_aborted_upload_is_499(repo: Path, body: dict) -> None:
    gateway = InProcessGateway(repo, ControlledBackend(), max_inflight_bytes=300_000, body_timeout_s=30)
    wait_ready(gateway.url)
    before = httpx.get(f"{gateway.url}/metrics").text
    slow = raw_connect(gateway.url)  # 250 kB of its 400 kB sent: it holds 250 kB of the 300 kB budget
    slow.sendall(
        b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 400000\r\n\r\n"
        + b"{"
        + b" " * 249_999
    )
    try:
        time.sleep(0.3)
        padded = {**body, "pad": "x" * 100_000}
        refused = httpx.post(f"{gateway.url}/v1/score", json=padded, timeout=30)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "overloaded" and "bytes" in refused.json()["error"]["message"]
    finally:
        slow.close()  # the client goes away mid-upload
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = httpx.get(f"{gateway.url}/metrics").text
            if metric(after, "rewarddance_requests_total", status="499"):
                break
            time.sleep(0.1)
        assert metric(after, "rewarddance_errors_total", code="client_disconnected") == 1
        assert statuses_5xx(after) == statuses_5xx(before) == 0
        assert metric(after, "rewarddance_inflight", resource="bytes") == 0
        padded = {**body, "pad": "x" * 100_000}
        assert httpx.post(f"{gateway.url}/v1/score", json=padded, timeout=30).status_code == 200
    finally:
        gateway.close()


# -- correct codes ------------------------------------------------------------------------------------------------
def test_deeply_nested_json_is_400_not_500(gateway: InProcessGateway, body: dict) -> None:
    nested = b"[" * 20_000 + b"]" * 20_000  # 40 kB: under every route's body limit
    deep_field = ('{"prompt": "p", "images": ' + "[" * 5000 + "]" * 5000 + "}").encode()
    headers = {"content-type": "application/json"}
    for route in ("/v1/score", "/v1/compare", "/v1/rank", "/v1/admin/reload"):
        for content in (nested, deep_field):
            r = httpx.post(f"{gateway.url}{route}", content=content, headers=headers, timeout=30)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json"), (route, r.text[:200])
            assert "nested too deeply" in r.json()["error"]["message"]
    files = [("image", ("a.png", thin_png(32, 32), "image/png"))]
    r = httpx.post(
        f"{gateway.url}/v1/score", files=files, data={"prompt": "p", "weights": "[" * 5000 + "]" * 5000}, timeout=30
    )
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_weights")
    assert statuses_5xx(httpx.get(f"{gateway.url}/metrics").text) == 0


def test_malformed_grpc_message_is_invalid_argument(gateway: InProcessGateway) -> None:
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        for method in ("Score", "Rank", "Compare", "ListModels"):
            call = channel.unary_unary(f"/rewarddance.v1.RewardService/{method}")  # raw bytes in
            with pytest.raises(grpc.RpcError) as info:
                call(b"\xff\xff\xff\xff\x0f", timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert dict(info.value.trailing_metadata())["x-error-code"] == "invalid_message"


def test_readyz_shows_no_paths(tmp_path: Path, repo: Path) -> None:
    broken = tmp_path / "broken_repository"
    shutil.copytree(repo, broken)
    for graph in (broken / MODEL / "1").glob("model*.onnx"):
        graph.unlink()  # onnxruntime's error names the file it could not find
    gw = InProcessGateway(broken, ControlledBackend())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = httpx.get(f"{gw.url}/readyz", timeout=5)
            if "failed" in ready.text:
                break
            time.sleep(0.2)
        assert ready.status_code == 503 and "failed to load" in ready.json()["error"]["message"]
        assert str(tmp_path) not in ready.text and "/" not in ready.json()["error"]["message"]
    finally:
        gw.close()


# -- connections ----------------------------------------------------------------------------------------------------
def test_slow_clients_are_closed_while_a_normal_client_is_served(gateway: InProcessGateway, body: dict) -> None:
    before = httpx.get(f"{gateway.url}/metrics").text
    slowloris = [raw_connect(gateway.url) for _ in range(8)]
    for sock in slowloris:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\n")  # headers never finish
    trickle = [raw_connect(gateway.url) for _ in range(4)]
    for sock in trickle:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n{")  # body never finishes
    idle = [raw_connect(gateway.url) for _ in range(4)]  # never send a byte
    latencies = []
    with httpx.Client(timeout=30) as client:
        for _ in range(10):
            started = time.perf_counter()
            assert client.post(f"{gateway.url}/v1/score", json=body).status_code == 200
            latencies.append(time.perf_counter() - started)
    assert float(np.percentile(latencies, 99)) < 2.0, latencies
    for sock in slowloris:
        answer = read_until_closed(sock, 5.0)
        assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer, answer[:200]
    for sock in trickle:
        answer = read_until_closed(sock, 5.0)
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer, answer[:200]
    for sock in idle:
        assert read_until_closed(sock, 5.0) == b""  # closed, not left open
    for sock in slowloris + trickle + idle:
        sock.close()
    after = httpx.get(f"{gateway.url}/metrics").text
    closed = "rewarddance_http_connections_closed_total"
    assert metric(after, closed, reason="header_timeout") - metric(before, closed, reason="header_timeout") >= 8
    assert metric(after, closed, reason="idle") - metric(before, closed, reason="idle") >= 4
    assert statuses_5xx(after) == 0


def test_connections_over_the_cap_get_429_then_room_returns(repo: Path, body: dict) -> None:
    gw = InProcessGateway(repo, ControlledBackend(), max_connections=8, header_timeout_s=4.0)
    held: list[socket.socket] = []
    try:
        wait_ready(gw.url)
        held += [raw_connect(gw.url) for _ in range(8)]  # the cap
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")  # unfinished: each holds its connection
        deadline = time.monotonic() + 3  # once the gateway has accepted them all, the next connection is refused
        while time.monotonic() < deadline:
            refused = httpx.get(f"{gw.url}/healthz", timeout=10)
            if refused.status_code == 429:
                break
            time.sleep(0.05)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_connections"
        assert int(refused.headers["retry-after"]) >= 1
        deadline = time.monotonic() + 15  # the header timeout frees them
        while time.monotonic() < deadline and httpx.get(f"{gw.url}/healthz", timeout=10).status_code != 200:
            time.sleep(0.2)
        assert httpx.post(f"{gw.url}/v1/score", json=body, timeout=30).status_code == 200
    finally:
        for sock in held:
            sock.close()
        gw.close()


def test_half_closed_client_gets_its_response(gateway: InProcessGateway, body: dict) -> None:
    payload = json.dumps(body).encode()
    sock = raw_connect(gateway.url)
    try:
        head = f"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + payload)
        sock.shutdown(socket.SHUT_WR)  # done sending; still reading
        answer = read_until_closed(sock, 10.0)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["model"]["name"] == MODEL


# -- fail safe --------------------------------------------------------------------------------------------------------
def _add_version(repo: Path, version: int, break_with: str | None = None) -> None:
    """A copy of version 1 as ``version``; ``manifest``: not JSON; ``graph``: model.onnx is garbage."""
    target = repo / MODEL / str(version)
    shutil.copytree(repo / MODEL / "1", target)
    if break_with == "manifest":
        (target / "manifest.json").write_text('{"format": 1, "kind": "rew')
    elif break_with == "graph":
        for graph in target.glob("model*.onnx"):
            graph.write_bytes(b"not an onnx graph")


def test_corrupt_newest_versions_are_skipped_at_start_and_on_reload(tmp_path: Path, repo: Path, body: dict) -> None:
    root = tmp_path / "model_repository"
    shutil.copytree(repo, root)
    _add_version(root, 2, "graph")
    _add_version(root, 3, "manifest")
    gw = InProcessGateway(root, ControlledBackend())
    try:
        wait_ready(gw.url, timeout=30)  # the newest good version serves
        ready = httpx.get(f"{gw.url}/readyz").json()
        assert ready["models"] == {MODEL: 1}
        assert ready["skipped"] == [
            {"model": MODEL, "version": 3, "error": "ManifestError"},  # not valid JSON, named as such
            {"model": MODEL, "version": 2, "error": ready["skipped"][1]["error"]},
        ]
        assert str(root) not in json.dumps(ready)
        metrics = httpx.get(f"{gw.url}/metrics").text
        for v in ("2", "3"):
            assert metric(metrics, "rewarddance_version_load_failures_total", model=MODEL, version=v) == 1
        assert httpx.post(f"{gw.url}/v1/score", json=body, timeout=30).json()["model"]["version"] == 1
        assert httpx.get(f"{gw.url}/v1/models").status_code == 200  # listing survives the corrupt manifest

        _add_version(root, 4)  # a good version arrives, then a corrupt one above it
        _add_version(root, 5, "manifest")
        newest = httpx.post(f"{gw.url}/v1/admin/reload", json={}, timeout=60)
        assert newest.status_code == 200, newest.text
        assert newest.json()["model"]["version"] == 4 and [s["version"] for s in newest.json()["skipped"]] == [5]
        rollback = httpx.post(f"{gw.url}/v1/admin/reload", json={"version": 1}, timeout=60)
        assert rollback.status_code == 200 and rollback.json()["model"]["version"] == 1, rollback.text
        bad = httpx.post(f"{gw.url}/v1/admin/reload", json={"version": 3}, timeout=60)
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "version_load_failed")
        assert httpx.post(f"{gw.url}/v1/score", json=body, timeout=30).json()["model"]["version"] == 1
        assert statuses_5xx(httpx.get(f"{gw.url}/metrics").text) == 0
    finally:
        gw.close()


def test_replaced_worker_serves_the_version_reloaded_to(tmp_path: Path, repo: Path, body: dict) -> None:
    """Two workers on v2 (the newest), rolled back to v1; a killed worker's replacement serves v1 from its first
    request (it used to load the newest on disk and be told to reload only after it listened)."""
    from test_gateway import ServerProcess
    from test_gateway_processes import children

    root = tmp_path / "model_repository"
    shutil.copytree(repo, root)
    _add_version(root, 2)
    srv = ServerProcess(root, tmp_path / "server.log", "--model", MODEL, "--processes", "2", "--intra-op-threads", "1")
    try:
        wait_ready(srv.url, srv.proc)

        def workers() -> dict[int, tuple[int, int]]:
            table = httpx.get(f"{srv.url}/v1/models", timeout=30).json()["workers"]
            return {w["worker"]: (w["pid"], w["models"].get(MODEL)) for w in table}

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers()) < 2:
            time.sleep(0.2)
        assert {v for _, v in workers().values()} == {2}
        rollback = httpx.post(f"{srv.url}/v1/admin/reload", json={"version": 1}, timeout=60)
        assert rollback.status_code == 200 and rollback.json()["model"]["version"] == 1, rollback.text
        while time.monotonic() < deadline and {v for _, v in workers().values()} != {1}:
            time.sleep(0.2)
        before = workers()
        assert {v for _, v in before.values()} == {1}, before

        victim = min(children(srv.proc.pid))
        index = next(i for i, (pid, _) in before.items() if pid == victim)
        os.kill(victim, signal.SIGKILL)
        seen: list[tuple[str, int]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(w == str(index) for w, _ in seen) < 5:
            r = httpx.post(f"{srv.url}/v1/score", json=body, timeout=30)  # a new connection each time
            assert r.status_code == 200, r.text
            seen.append((r.headers["x-worker"], r.json()["model"]["version"]))
        assert sum(w == str(index) for w, _ in seen) >= 5, "the replacement never answered"
        assert {v for _, v in seen} == {1}, seen
        after = workers()
        assert after[index][0] != victim and {v for _, v in after.values()} == {1}, after
    finally:
        srv.stop()
