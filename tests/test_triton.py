"""A real Triton server (nvidia-pytriton wheel, python backend) serving ONNX models through our generic model.py."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import triton_harness
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from triton_harness import ProvisionError, TritonServerError, provision, write_version
from triton_harness.server import _pid_alive, group_pids
from tritonclient.utils import InferenceServerException

from rewarddance.repository.pbtxt import (
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    TensorSpec,
    VersionPolicy,
    Warmup,
    render_config,
    write_config,
)
from rewarddance.repository.triton import PYTHON_MODEL_FILE

# ---------------------------------------------------------------------------------------------------- the model
# y = x * a + 1 (FP32, [N, 4]); y_masked = where(mask, y, 0); not_mask = !mask (BOOL);
# ids_next = ids + 1 (INT64, [N, L] with L variable); h2 = 2h (FP16); k2 = 2k (INT32)
INPUTS = [
    TensorSpec("x", "TYPE_FP32", [4]),
    TensorSpec("mask", "TYPE_BOOL", [4]),
    TensorSpec("ids", "TYPE_INT64", [-1]),
    TensorSpec("h", "TYPE_FP16", [2]),
    TensorSpec("k", "TYPE_INT32", [2]),
]
OUTPUTS = [
    TensorSpec("y", "TYPE_FP32", [4]),
    TensorSpec("y_masked", "TYPE_FP32", [4]),
    TensorSpec("not_mask", "TYPE_BOOL", [4]),
    TensorSpec("ids_next", "TYPE_INT64", [-1]),
    TensorSpec("h2", "TYPE_FP16", [2]),
    TensorSpec("k2", "TYPE_INT32", [2]),
]
NP = {"x": np.float32, "mask": np.bool_, "ids": np.int64, "h": np.float16, "k": np.int32}
TRITON = {np.float32: "FP32", np.bool_: "BOOL", np.int64: "INT64", np.float16: "FP16", np.int32: "INT32"}


def affine_onnx(a: float) -> bytes:
    t = TensorProto
    vi = helper.make_tensor_value_info
    inputs = [
        vi("x", t.FLOAT, ["N", 4]),
        vi("mask", t.BOOL, ["N", 4]),
        vi("ids", t.INT64, ["N", "L"]),
        vi("h", t.FLOAT16, ["N", 2]),
        vi("k", t.INT32, ["N", 2]),
    ]
    outputs = [
        vi("y", t.FLOAT, ["N", 4]),
        vi("y_masked", t.FLOAT, ["N", 4]),
        vi("not_mask", t.BOOL, ["N", 4]),
        vi("ids_next", t.INT64, ["N", "L"]),
        vi("h2", t.FLOAT16, ["N", 2]),
        vi("k2", t.INT32, ["N", 2]),
    ]
    inits = [
        helper.make_tensor("a", t.FLOAT, [], [a]),
        helper.make_tensor("one", t.FLOAT, [], [1.0]),
        helper.make_tensor("zero", t.FLOAT, [], [0.0]),
        helper.make_tensor("one_i64", t.INT64, [], [1]),
        helper.make_tensor("two_f16", t.FLOAT16, [], [2.0]),
        helper.make_tensor("two_i32", t.INT32, [], [2]),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "a"], ["xa"]),
        helper.make_node("Add", ["xa", "one"], ["y"]),
        helper.make_node("Where", ["mask", "y", "zero"], ["y_masked"]),
        helper.make_node("Not", ["mask"], ["not_mask"]),
        helper.make_node("Add", ["ids", "one_i64"], ["ids_next"]),
        helper.make_node("Mul", ["h", "two_f16"], ["h2"]),
        helper.make_node("Mul", ["k", "two_i32"], ["k2"]),
    ]
    graph = helper.make_graph(nodes, f"affine_{a}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def sample(batch: int, seq: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(batch, 4)).astype(np.float32),
        "mask": rng.random((batch, 4)) > 0.5,
        "ids": rng.integers(-1000, 1000, size=(batch, seq), dtype=np.int64),
        "h": rng.normal(size=(batch, 2)).astype(np.float16),
        "k": rng.integers(-1000, 1000, size=(batch, 2), dtype=np.int32),
    }


def reference(onnx_bytes: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same model in this process's onnxruntime."""
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in OUTPUTS]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def affine_config(name: str = "affine", **kw) -> ModelConfig:
    base = dict(
        name=name,
        backend="python",
        max_batch_size=16,
        inputs=INPUTS,
        outputs=OUTPUTS,
        dynamic_batching=DynamicBatching(
            preferred_batch_size=[4, 8], max_queue_delay_microseconds=2000, max_queue_size=64
        ),
        instance_groups=[InstanceGroup(count=1, kind="KIND_CPU")],
        version_policy=VersionPolicy.latest(1),
        warmup=[Warmup("zeros_b2", batch_size=2, data="zero"), Warmup("random_b1", batch_size=1, data="random")],
        parameters={"intra_op_thread_count": "1", "inter_op_thread_count": "1"},
    )
    base.update(kw)
    return ModelConfig(**base)


def make_repo(root: Path, versions: dict[int, bytes], cfg: ModelConfig | None = None) -> Path:
    cfg = cfg or affine_config()
    write_config(cfg, root / cfg.name)
    for version, model in versions.items():
        write_version(root / cfg.name, version, model)
    return root


def http_infer(client, feeds, model="affine", version=""):
    inputs = []
    for name, arr in feeds.items():
        inp = httpclient.InferInput(name, list(arr.shape), TRITON[arr.dtype.type])
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    res = client.infer(model, inputs, model_version=version)
    return res.get_response()["model_version"], {o.name: res.as_numpy(o.name) for o in OUTPUTS}


def grpc_infer(client, feeds, model="affine", version=""):
    inputs = []
    for name, arr in feeds.items():
        inp = grpcclient.InferInput(name, list(arr.shape), TRITON[arr.dtype.type])
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    res = client.infer(model, inputs, model_version=version, client_timeout=30)
    return res.get_response().model_version, {o.name: res.as_numpy(o.name) for o in OUTPUTS}


def listening_addresses(ports: set[int]) -> set[str]:
    """Local addresses of the TCP sockets listening on ``ports`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, port = local.split(":")
                if state == "0A" and int(port, 16) in ports:  # 0A = LISTEN
                    if len(addr) == 32 and addr.startswith("0000000000000000FFFF0000"):  # ::ffff:a.b.c.d
                        addr = addr[24:]
                    if len(addr) == 8:  # little-endian IPv4
                        found.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                    else:
                        found.add(addr)
    return found


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for name, ref in want.items():
        assert got[name].dtype == ref.dtype, (name, got[name].dtype, ref.dtype)
        np.testing.assert_array_equal(got[name], ref, err_msg=name)


def pair_onnx() -> bytes:
    """s = a + b over [N, L]: a request whose a and b lengths differ passes Triton's checks and fails in onnxruntime."""
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"])],
        "pair",
        [vi("a", TensorProto.FLOAT, ["N", "L"]), vi("b", TensorProto.FLOAT, ["N", "L"])],
        [vi("s", TensorProto.FLOAT, ["N", "L"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


# b is UINT8 on the wire and FLOAT in the graph: model.py casts to what the graph wants
PAIR_CONFIG = ModelConfig(
    name="pair",
    backend="python",
    max_batch_size=8,
    inputs=[TensorSpec("a", "FP32", [-1]), TensorSpec("b", "UINT8", [-1])],
    outputs=[TensorSpec("s", "FP32", [-1])],
    parameters={"intra_op_thread_count": "1"},
)


@pytest.fixture(autouse=True)
def _collect_clients_here() -> Iterator[None]:
    """tritonclient.http clients (gevent) must be finalized on the thread that made them; collect them now, on the
    main thread, rather than letting a later cyclic gc run their __del__ on some other test's worker thread."""
    yield
    gc.collect()


WARMUP_COUNT = 400
V1 = affine_onnx(2.0)
V2 = affine_onnx(3.0)


# ---------------------------------------------------------------------------------------------------- pbtxt
def test_pbtxt_render_and_from_dict() -> None:
    text = render_config(affine_config())
    assert 'name: "affine"' in text and 'backend: "python"' in text and "max_batch_size: 16" in text
    assert "version_policy: { latest: { num_versions: 1 } }" in text
    assert "preferred_batch_size: [ 4, 8 ]" in text and "max_queue_delay_microseconds: 2000" in text
    assert "default_queue_policy {\n    max_queue_size: 64\n  }" in text
    assert "instance_group [\n  { count: 1 kind: KIND_CPU }\n]" in text
    assert 'inputs { key: "ids" value: { data_type: TYPE_INT64 dims: [ 1 ] zero_data: true } }' in text
    assert 'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }' in text
    assert VersionPolicy.all().render() == "version_policy: { all: {} }"
    assert VersionPolicy.specific([1, 3]).render() == "version_policy: { specific: { versions: [ 1, 3 ] } }"

    desc = {
        "name": "affine",
        "backend": "python",
        "max_batch_size": 16,
        "inputs": [{"name": t.name, "data_type": t.data_type[5:], "dims": list(t.dims)} for t in INPUTS],
        "outputs": [{"name": t.name, "data_type": t.data_type, "dims": list(t.dims)} for t in OUTPUTS],
        "dynamic_batching": {
            "preferred_batch_size": [4, 8],
            "max_queue_delay_microseconds": 2000,
            "max_queue_size": 64,
        },
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "version_policy": {"latest": 1},
        "model_warmup": [
            {"name": "zeros_b2", "batch_size": 2, "data": "zero"},
            {"name": "random_b1", "batch_size": 1, "data": "random"},
        ],
        "parameters": {"intra_op_thread_count": 1, "inter_op_thread_count": 1},
    }
    assert render_config(desc) == text
    assert 'name: "a\\"b"' in ModelConfig('a"b', "onnxruntime", 0, [], []).render()

    with pytest.raises(ValueError, match="data type"):
        TensorSpec("x", "TYPE_FLOAT", [4])
    with pytest.raises(ValueError, match="dims"):
        TensorSpec("x", "FP32", [0])
    with pytest.raises(ValueError, match="backend"):
        affine_config(backend="tensorflow")
    with pytest.raises(ValueError, match="batch_size"):
        affine_config(warmup=[Warmup("big", batch_size=32)])
    with pytest.raises(ValueError, match="max_batch_size"):
        affine_config(max_batch_size=0)  # dynamic batching without batching


# ---------------------------------------------------------------------------------------------------- provision
def test_provision_is_idempotent(triton_install) -> None:
    t0 = time.perf_counter()
    again = provision(triton_install.venv)
    assert time.perf_counter() - t0 < 1.0
    assert again.tritonserver == triton_install.tritonserver and again.tritonserver.is_file()
    stub = again.backend_dir / "python" / "triton_python_backend_stub"
    assert stub.is_file() and stub.stat().st_mode & 0o111
    assert (again.backend_dir / "python" / "libtriton_python.so").is_file()
    assert int(again.versions["numpy"].split(".")[0]) < 2
    assert "onnxruntime" in again.versions and again.versions["nvidia-pytriton"].startswith("0.7")
    assert again.env["PATH"].split(":")[0] == str(again.venv / "bin")
    ld = again.env["LD_LIBRARY_PATH"].split(":")
    assert str(again.libdir) in ld and str(again.site_packages / "nvidia_pytriton.libs") in ld

    # stdlib only: the Triton venv's own interpreter (numpy<2, no rewarddance installed) can use these modules
    tests = Path(triton_harness.__file__).parents[1]
    code = (
        f"import sys; sys.path.insert(0, {str(tests)!r}); import triton_harness as t; "
        f"print(t.provision({str(again.venv)!r}).tritonserver); "
        "assert not {'numpy', 'onnxruntime', 'torch'} & set(sys.modules), sorted(sys.modules)"
    )
    out = subprocess.run([str(again.python), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(again.tritonserver)


def test_provision_reports_a_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="creating the triton venv: cannot run '/nonexistent/python3'"):
        provision(tmp_path / "venv", base_python="/nonexistent/python3")
    assert not (tmp_path / "venv" / "rewarddance-triton-stamp.json").exists()


# ---------------------------------------------------------------------------------------------------- serving
def test_serves_onnx_over_http_and_grpc(triton_server, tmp_path: Path) -> None:
    batching = DynamicBatching(preferred_batch_size=[4, 8], max_queue_delay_microseconds=50_000, max_queue_size=64)
    repo = make_repo(tmp_path / "repo", {1: V1}, affine_config(dynamic_batching=batching))
    assert (repo / "affine" / "1" / "model.py").read_text() == PYTHON_MODEL_FILE.read_text()
    server = triton_server(repo)
    print(f"tritonserver ready in {server.startup_seconds:.2f} s")
    assert 0 < server.startup_seconds < 60
    assert server.metadata()["version"] == "2.51.0"
    pid = server.pid
    assert len(group_pids(pid)) >= 2  # the server and its python-backend stub
    assert listening_addresses({server.http_port, server.grpc_port, server.metrics_port}) == {"127.0.0.1"}

    # the config Triton parsed from our pbtxt
    cfg = server.model_config("affine")
    assert cfg["max_batch_size"] == 16 and cfg["backend"] == "python"
    assert [int(b) for b in cfg["dynamic_batching"]["preferred_batch_size"]] == [4, 8]
    assert int(cfg["dynamic_batching"]["max_queue_delay_microseconds"]) == 50_000
    assert int(cfg["dynamic_batching"]["default_queue_policy"]["max_queue_size"]) == 64
    assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
    assert [(g["count"], g["kind"]) for g in cfg["instance_group"]] == [(1, "KIND_CPU")]
    assert [w["name"] for w in cfg["model_warmup"]] == ["zeros_b2", "random_b1"]
    assert cfg["parameters"]["intra_op_thread_count"]["string_value"] == "1"
    assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in cfg["input"]] == [
        (t.name, t.data_type, list(t.dims)) for t in INPUTS
    ]

    feeds = sample(3)
    want = reference(V1, feeds)
    np.testing.assert_array_equal(want["y"], feeds["x"] * 2 + 1)  # the model is what we think it is
    with httpclient.InferenceServerClient(server.http_url, connection_timeout=30, network_timeout=30) as client:
        version, got = http_infer(client, feeds)
        assert version == "1"
        assert_same(got, want)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        version, got = grpc_infer(client, feeds)
        assert version == "1"
        assert_same(got, want)

    # concurrent requests through the dynamic batcher: first all of one sequence length (model.py stacks a batch of
    # them into one onnxruntime run and splits the outputs), then mixed lengths (model.py runs them one by one)
    bursts = {
        "stackable": [sample(1 + i % 3, seq=3, seed=100 + i) for i in range(16)],
        "mixed": [sample(1 + i % 3, seq=2 + i % 2, seed=200 + i) for i in range(16)],
    }
    executions = {}
    with httpclient.InferenceServerClient(
        server.http_url, concurrency=16, connection_timeout=30, network_timeout=30
    ) as client:
        for label, reqs in bursts.items():
            before = client.get_inference_statistics("affine")["model_stats"][0]
            pending = []
            for feeds in reqs:
                inputs = []
                for name, arr in feeds.items():
                    inp = httpclient.InferInput(name, list(arr.shape), TRITON[arr.dtype.type])
                    inp.set_data_from_numpy(arr)
                    inputs.append(inp)
                pending.append(client.async_infer("affine", inputs))
            for feeds, fut in zip(reqs, pending, strict=True):
                res = fut.get_result(timeout=30)
                assert_same({o.name: res.as_numpy(o.name) for o in OUTPUTS}, reference(V1, feeds))
            after = client.get_inference_statistics("affine")["model_stats"][0]
            assert after["inference_count"] - before["inference_count"] == sum(len(f["x"]) for f in reqs)
            executions[label] = after["execution_count"] - before["execution_count"]
    print(f"16 concurrent requests -> model executions: {executions}")
    assert 1 <= executions["stackable"] < 16  # the batcher merged requests (50 ms queue delay)
    assert 1 <= executions["mixed"] <= 16

    # a request the model cannot run comes back as an error, and the server keeps serving
    with httpclient.InferenceServerClient(server.http_url, connection_timeout=30, network_timeout=30) as client:
        bad = sample(2)
        bad["ids"] = bad["ids"][:1]  # batch sizes disagree between inputs: Triton itself rejects it
        with pytest.raises(InferenceServerException, match="batch size does not match"):
            http_infer(client, bad)
        assert http_infer(client, feeds)[0] == "1"

    code = server.stop()
    assert code == 0
    assert not _pid_alive(pid)
    assert group_pids(pid) == []
    assert not server.is_ready()


def test_explicit_mode_rolls_to_new_version(triton_server, tmp_path: Path) -> None:
    # a long warmup (run at every version's load) makes the window in which version 2 loads and version 1 still
    # serves wide enough to see even on a busy 2-core machine
    slow_warmup = [Warmup("long_warmup", batch_size=16, data="random", count=WARMUP_COUNT)]
    repo = make_repo(tmp_path / "repo", {1: V1}, affine_config(warmup=slow_warmup))
    server = triton_server(repo, model_control_mode="explicit", load_models=["affine"])
    assert server.model_ready("affine", 1)
    feeds = sample(2, seed=7)
    want = {1: reference(V1, feeds), 2: reference(V2, feeds)}
    np.testing.assert_array_equal(want[2]["y"], feeds["x"] * 3 + 1)

    log: list[tuple[float, float, str, bool]] = []  # (sent, received, version, values match that version)
    errors: list[str] = []
    stop = threading.Event()

    # traffic over gRPC: Triton runs an HTTP repository load synchronously on one of its HTTP worker threads, so
    # HTTP inference connections that happen to share that thread stall until the load ends (seen with
    # --http-thread-count=1); gRPC inference is independent of it
    def hammer() -> None:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    version, got = grpc_infer(client, feeds)
                except Exception as exc:
                    errors.append(repr(exc))
                    continue
                ok = all(np.array_equal(got[n], want[int(version)][n]) for n in want[1])
                log.append((sent, time.monotonic(), version, ok))

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        write_version(repo / "affine", 2, V2)  # appears on disk while version 1 serves
        time.sleep(0.2)
        assert server.model_ready("affine", 1) and not server.model_ready("affine", 2)
        t_load = time.monotonic()
        server.load("affine", timeout=90)
        t_loaded = time.monotonic()
        assert server.model_ready("affine", 2)
        deadline = time.monotonic() + 10  # keep the traffic going until version 2 has answered a few times
        while sum(v == "2" for *_, v, _ in log) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()

    timeline = "\n".join(
        f"sent {sent - t_load:+.3f} recv {recv - t_load:+.3f} v{v} ok={ok}" for sent, recv, v, ok in log[-40:]
    )
    why = f"load {t_load - t_load:+.3f}..{t_loaded - t_load:+.3f}, {len(log)} responses, last ones:\n{timeline}"
    assert errors == []
    assert log and all(ok for *_, ok in log)
    versions = [v for *_, v, _ in sorted(log)]  # in the order the requests were sent (one at a time)
    assert versions[0] == "1" and versions[-1] == "2", why
    first_v2 = versions.index("2")
    assert set(versions[:first_v2]) == {"1"} and set(versions[first_v2:]) == {"2"}, why  # one switch, no flapping
    during = [received for sent, received, v, _ in log if v == "1" and sent >= t_load]
    assert during, "version 1 should have answered while version 2 was loading\n" + why
    assert all(v == "2" for sent, _, v, _ in log if sent > t_loaded), why
    print(f"load of version 2 took {t_loaded - t_load:.2f} s; {len(during)} requests answered by v1 meanwhile")

    # latest-1 policy: version 1 is gone, version 2 answers
    deadline = time.monotonic() + 30
    while server.model_ready("affine", 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.model_ready("affine", 1)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        version, got = grpc_infer(client, feeds)
        assert version == "2"
        assert_same(got, want[2])
        with pytest.raises(InferenceServerException, match="version 1 is not at ready state"):
            grpc_infer(client, feeds, version="1")

    server.unload("affine")
    server.wait_model_unloaded("affine", timeout=30)
    assert not server.model_ready("affine")


def test_version_policies_and_load_failures(triton_server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {1: V1, 2: V2}, affine_config("pinned", version_policy=VersionPolicy.specific([1]), warmup=()))
    make_repo(repo, {1: V1, 2: V2}, affine_config("every", version_policy=VersionPolicy.all(), warmup=()))
    make_repo(repo, {1: b"this is not an onnx model"}, affine_config("broken", warmup=()))
    server = triton_server(repo, model_control_mode="explicit")
    assert server.repository_index() and not server.model_ready("pinned")

    server.load("pinned")
    assert server.model_ready("pinned", 1) and not server.model_ready("pinned", 2)
    server.load("every")
    assert server.model_ready("every", 1) and server.model_ready("every", 2)
    feeds = sample(1, seed=3)
    with httpclient.InferenceServerClient(server.http_url, connection_timeout=30, network_timeout=30) as client:
        assert_same(http_infer(client, feeds, "pinned")[1], reference(V1, feeds))
        assert_same(http_infer(client, feeds, "every", "1")[1], reference(V1, feeds))
        assert_same(http_infer(client, feeds, "every", "2")[1], reference(V2, feeds))

    # a request that fails inside onnxruntime comes back as an error response; the model keeps serving
    make_repo(repo, {1: pair_onnx()}, PAIR_CONFIG)
    server.load("pair")

    def pair_request(n_a: int, n_b: int):
        a = httpclient.InferInput("a", [1, n_a], "FP32")
        a.set_data_from_numpy(np.arange(n_a, dtype=np.float32)[None] + 0.5)
        b = httpclient.InferInput("b", [1, n_b], "UINT8")
        b.set_data_from_numpy(np.full((1, n_b), 250, dtype=np.uint8))
        return [a, b]

    with httpclient.InferenceServerClient(server.http_url, connection_timeout=30, network_timeout=30) as client:
        with pytest.raises(InferenceServerException, match=r"ONNXRuntimeError.*Add node"):
            client.infer("pair", pair_request(3, 2))
        got = client.infer("pair", pair_request(3, 3)).as_numpy("s")
        np.testing.assert_array_equal(got, np.array([[250.5, 251.5, 252.5]], dtype=np.float32))

    # a broken model.onnx: the load fails with onnxruntime's reason, promptly, and the server keeps running
    t0 = time.monotonic()
    with pytest.raises(TritonServerError, match="onnxruntime cannot load"):
        server.load("broken", timeout=60)
    assert time.monotonic() - t0 < 60
    assert server.is_live() and not server.model_ready("broken")
    assert server.model_ready("pinned", 1)

    # in mode "none" the same model stops the server at startup, and wait_ready says why
    server.stop()
    broken_only = make_repo(tmp_path / "broken_repo", {1: b"garbage"}, affine_config("broken", warmup=()))
    t0 = time.monotonic()
    with pytest.raises(TritonServerError, match=r"(?s)exited with code.*broken"):
        triton_server(broken_only, ready_timeout=60)
    assert time.monotonic() - t0 < 60


def test_stop_escalates_to_sigkill(triton_server, tmp_path: Path) -> None:
    """A server that ignores SIGTERM (stopped here with SIGSTOP) is killed, with its stubs, after the timeout."""
    repo = make_repo(tmp_path / "repo", {1: pair_onnx()}, PAIR_CONFIG)
    server = triton_server(repo)
    pid = server.pid
    stubs = [p for p in group_pids(pid) if p != pid]
    assert stubs
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    code = server.stop(timeout=1.0)
    assert 1.0 <= time.monotonic() - t0 < 20
    assert code == -signal.SIGKILL
    assert not _pid_alive(pid) and not any(_pid_alive(p) for p in stubs)
    assert group_pids(pid) == []
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))
