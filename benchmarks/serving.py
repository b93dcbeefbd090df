"""Serving benchmark: per reward scale, the gateway's throughput and latency against concurrency and images per
request, with the embedded onnxruntime backend and with Triton, beside two baselines measured in the same run:

- bare: the same pipeline in-process (decode + ONNX encoders + scorers + ONNX reward, onnxruntime, no HTTP), with
  the same concurrency (threads) and images per call: the gateway's overhead is gateway / bare;
- eager: PyTorch scoring one image per call, the way ImageReward and HPSv2 score (torch encoders, the same
  scorers, torch reward model): our speed-up is gateway / eager.
Plus the compute bound: FLOPs per image (torch's FLOP counter on the graphs) against this machine's measured fp32
matmul FLOP/s, and the share of it we reach. And per server: startup time to ready, peak RSS.

    python benchmarks/serving.py --runs cpu-xs=exporter/rewarddance_exporter/default_model \\
        small=runs/ladder/small-seed0 --concurrency 1 16 --images 1 8 --duration 8 --backends embedded

A run is a pixel (v2) run (the default model's folder is one) or a feature (v1) run. On a shared machine every
row records what else competed: the load average at its start and end, the CPU seconds the gateway's processes and
the load generator each spent per image, and the matmul rate measured at the start of the run. ``--configs``
measures more gateway configurations (``name="serve flags"``) in the same run; ``default`` is what ``make run``
starts.

A scale given as ``random`` is a random-init model of that scale on the small run's encoder and scorers, exported
for latency only (scores are meaningless; the row says so). The load generator (asyncio, raw keep-alive HTTP/1.1,
closed loop) runs on the same machine as the server, so on 2 cores they compete: the ratios are what this box can show.
Results: benchmarks/results/serving.md, serving.json, serving.png.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result

from rewarddance.preprocess import load_pixels
from rewarddance.scoring.pipeline import RewardPipeline

ROOT = Path(__file__).resolve().parents[1]


# -- repositories ---------------------------------------------------------------------------------------------------
def random_run(template: Path, scale: str, out: Path) -> Path:
    """A run directory holding a random-init model of ``scale`` with ``template``'s encoder and scorers."""
    import torch
    from rewarddance_trainer.reward.config import load_scale
    from rewarddance_trainer.reward.model import MANIFEST_FILE, WEIGHTS_FILE, RewardModel
    from safetensors.torch import save_file

    if (out / MANIFEST_FILE).exists():
        return out
    run_json = json.loads((template / MANIFEST_FILE).read_text())
    dims = {k: run_json["model"][k] for k in ("prompt_tokens", "prompt_dim", "image_tokens", "image_dim")}
    cfg = dataclasses.replace(load_scale(scale), **dims)
    torch.manual_seed(0)
    model = RewardModel(cfg)
    with torch.no_grad():  # nn.TransformerEncoder clones one layer: make every layer's weights distinct, or the
        for p in model.parameters():  # exporter's initializer de-duplication would shrink the file and its RSS
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    shutil.copytree(template / run_json.get("components_dir", "components"), out / "components", dirs_exist_ok=True)
    run_json |= {"scale": scale, "model": cfg.__dict__, "metrics": {}, "val_metrics": {}, "random_init": True}
    (out / MANIFEST_FILE).write_text(json.dumps(run_json, indent=2))
    return out


def build_repo(runs: dict[str, Path], repo: Path) -> None:
    from rewarddance_exporter.export import ExportOptions, export_run

    from rewarddance.repository import ModelRepository

    for scale, run in runs.items():
        if not ModelRepository(repo).versions(f"reward_{scale}"):
            if is_pixel(run):
                from rewarddance_exporter.pixel_export import export_pixel_run

                export_pixel_run(run, repo, ExportOptions())
            else:
                export_run(run, repo, ExportOptions(flavour="python"))


def is_pixel(run: Path) -> bool:
    return json.loads((run / "run.json").read_text()).get("kind") == "pixel_reward"


# -- servers --------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor's workers)."""
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        stack += [int(c) for c in children]
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Gateway:
    def __init__(self, repo: Path, model: str | None, extra: list[str], env: dict[str, str] | None = None) -> None:
        """``env``: variables set for the gateway's process on top of this one's (e.g. a PYTHONPATH that serves
        another checkout's code)."""
        self.port, self.grpc_port = free_port(), free_port()
        cmd = [
            sys.executable,
            "-m",
            "rewarddance.cli",
            "serve",
            "--repo",
            str(repo),
            *(["--model", model] if model else []),
        ]
        cmd += ["--host", "127.0.0.1", "--http-port", str(self.port), "--grpc-port", str(self.grpc_port), *extra]
        started = time.perf_counter()
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"gateway-{self.port}.log", "w")  # noqa: SIM115
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env} if env else None
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("gateway not ready in 300 s")
        self.startup_s = time.perf_counter() - started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> float:
        rss = peak_rss_mb(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        return rss


# -- load -----------------------------------------------------------------------------------------------------------
def percentiles(latencies: list[float]) -> dict:
    a = np.asarray(latencies) * 1e3
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)} if len(a) else {}


class _Connection:
    """One keep-alive HTTP/1.1 connection that posts pre-built requests and reads status, headers and body: a
    load generator that spends ~0.1 ms of CPU per request, not the ~4 ms httpx took on this box (its CPU would be
    taken from the server it measures, both on the same 2 cores)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            await self.reader.readexactly(int(headers.get("content-length", 0)))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            return 0, {}
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(lines[0].split()[1]), headers

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def score_request(host: str, port: int, body: bytes) -> bytes:
    head = f"POST /v1/score HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


async def _load(url: str, payloads: list[tuple[bytes, int]], concurrency: int, duration: float) -> dict:
    """Closed loop: ``concurrency`` keep-alive clients post pre-built requests (no JSON or HTTP library work)."""
    host, _, port = url.removeprefix("http://").partition(":")
    requests = [(score_request(host, int(port), body), n) for body, n in payloads]
    latencies, failures, images, workers = [], 0, 0, {}
    stop = time.perf_counter() + duration

    async def worker(k: int) -> None:
        nonlocal failures, images
        connection, i = _Connection(host, int(port)), k
        while time.perf_counter() < stop:
            request, n = requests[i % len(requests)]
            t = time.perf_counter()
            status, headers = await connection.post(request)
            if status == 200:
                latencies.append(time.perf_counter() - t)
                images += n
                worker_id = headers.get("x-worker", "-")  # set with --processes N
                workers[worker_id] = workers.get(worker_id, 0) + 1
            else:
                failures += 1
            i += concurrency
        connection.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    wall = time.perf_counter() - t0
    summary = {"images_per_s": round(images / wall, 2), "requests": len(latencies), "failures": failures}
    return summary | percentiles(latencies) | {"requests_by_worker": dict(sorted(workers.items()))}


def gateway_point(
    url: str, samples: list[tuple[bytes, str]], concurrency: int, per_request: int, duration: float, pid: int = 0
) -> dict:
    """The load's result; with the gateway's ``pid``, the CPU seconds per image of the gateway's processes and of
    this process (the load generator) beside it, and the load average at the start and end."""
    payloads = []
    for i in range(0, len(samples) - per_request + 1, per_request):
        chunk = samples[i : i + per_request]
        body = {"prompt": chunk[0][1], "images": [base64.b64encode(b).decode() for b, _ in chunk]}
        payloads.append((json.dumps(body).encode(), len(chunk)))
    asyncio.run(_load(url, payloads[:4], 1, 1.0))  # warm-up
    load_before, server_before, client_before = (
        os.getloadavg()[0],
        cpu_seconds(pid) if pid else 0.0,
        time.process_time(),
    )
    out = asyncio.run(_load(url, payloads, concurrency, duration))
    client_cpu, server_cpu = time.process_time() - client_before, (cpu_seconds(pid) - server_before) if pid else None
    images = out["images_per_s"] * duration
    out["loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out["loadgen_cpu_ms_per_image"] = round(1e3 * client_cpu / max(images, 1), 3)
    if server_cpu is not None:
        out["server_cpu_ms_per_image"] = round(1e3 * server_cpu / max(images, 1), 3)
    return out


def bare_point(pipeline: RewardPipeline, samples, concurrency: int, per_request: int, duration: float) -> dict:
    """The same work in-process: decode + pipeline.score, ``concurrency`` threads, ``per_request`` images per call."""
    latencies, images, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + duration

    def worker(k: int) -> None:
        i = k * per_request
        while time.perf_counter() < stop:
            chunk = [samples[(i + j) % len(samples)] for j in range(per_request)]
            t = time.perf_counter()
            pixels = load_pixels([b for b, _ in chunk], pipeline.image_size)
            pipeline.score(pixels, [chunk[0][1]] * per_request)
            with lock:
                latencies.append(time.perf_counter() - t)
                images[0] += per_request
            i += concurrency * per_request

    t0, cpu0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {"images_per_s": round(images[0] / wall, 2), "requests": len(latencies)} | percentiles(latencies)
    out["loadavg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return out | {"cpu_ms_per_image": round(1e3 * cpu / max(images[0], 1), 3)}


def eager_point(run: Path, samples, duration: float) -> dict:
    """PyTorch, one image per call: torch encoders + the same scorers + torch reward model (v1), or the torch prompt
    encoder (MiniLM) + the torch pixel reward model (v2), the prompt encoded with each image."""
    if is_pixel(run):
        return eager_pixel_point(run, samples, duration)
    import torch
    from rewarddance_exporter.export import Run, training_path_scores
    from rewarddance_trainer.encoders.model import Encoder
    from rewarddance_trainer.reward.model import load_model

    from rewarddance.components.bundle import ComponentSet

    info = Run.open(run)
    encoder, model, scorers = Encoder.load(info.encoder_run), load_model(run), ComponentSet.load(info.components)
    latencies = []
    stop = time.perf_counter() + duration
    i = 0
    with torch.inference_mode():
        while time.perf_counter() < stop or len(latencies) < 3:
            data, text = samples[i % len(samples)]
            t = time.perf_counter()
            training_path_scores(encoder, model, scorers, load_pixels([data], encoder.image_spec.size), [text])
            latencies.append(time.perf_counter() - t)
            i += 1
    return {"images_per_s": round(len(latencies) / sum(latencies), 2), "requests": len(latencies)} | percentiles(
        latencies
    )


def eager_pixel_point(run: Path, samples, duration: float) -> dict:
    import torch
    from rewarddance_exporter.pixel_export import torch_scores
    from rewarddance_trainer.pixel_reward.model import load_model
    from rewarddance_trainer.pixel_reward.text import PromptStates

    model, states = load_model(run), PromptStates()
    size = model.cfg.image_size
    latencies, i = [], 0
    stop = time.perf_counter() + duration
    with torch.inference_mode():
        while time.perf_counter() < stop or len(latencies) < 3:
            data, text = samples[i % len(samples)]
            t = time.perf_counter()
            torch_scores(states, model, load_pixels([data], size), [text])
            latencies.append(time.perf_counter() - t)
            i += 1
    return {"images_per_s": round(len(latencies) / sum(latencies), 2), "requests": len(latencies)} | percentiles(
        latencies
    )


# -- compute bound --------------------------------------------------------------------------------------------------
def flops_per_image(run: Path) -> dict:
    """Forward FLOPs of one image through image encoder + reward model, and of one prompt through the text tower
    (v1); of one image through the pixel reward graph, and of one prompt through the prompt encoder (v2)."""
    if is_pixel(run):
        return pixel_flops_per_image(run)
    import torch
    from rewarddance_exporter.export import Run
    from rewarddance_exporter.graphs import image_graph, reward_graph, text_graph
    from rewarddance_trainer.encoders.model import Encoder
    from rewarddance_trainer.reward.model import load_model
    from torch.utils.flop_counter import FlopCounterMode

    info = Run.open(run)
    encoder = Encoder.load(info.encoder_run)
    out = {}
    for name, spec in (
        ("image_encoder", image_graph(encoder)),
        ("text_encoder", text_graph(encoder)),
        ("reward", reward_graph(load_model(run))),
    ):
        args = []
        for t in spec.inputs:
            shape = (1, *t.shape[1:])
            dtype = {"uint8": torch.uint8, "int64": torch.int64, "bool": torch.bool}.get(t.dtype, torch.float32)
            args.append(torch.ones(shape, dtype=dtype))
        # Grad mode on: under no_grad nn.TransformerEncoderLayer runs a fused kernel the FLOP counter cannot see.
        with FlopCounterMode(display=False) as counter:
            spec.module(*args)
        out[name] = int(counter.get_total_flops())
    return out


def _count(spec) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = []
    for t in spec.inputs:
        dtype = {"uint8": torch.uint8, "int64": torch.int64, "bool": torch.bool}.get(t.dtype, torch.float32)
        args.append(torch.ones((1, *t.shape[1:]), dtype=dtype))
    with FlopCounterMode(display=False) as counter:  # grad mode on: the fused inference kernels hide their FLOPs
        spec.module(*args)
    return int(counter.get_total_flops())


def pixel_flops_per_image(run: Path) -> dict:
    from rewarddance_exporter.pixel_export import prompt_graph, reward_graph
    from rewarddance_trainer.pixel_reward.model import load_model
    from rewarddance_trainer.pixel_reward.text import PromptStates

    return {"reward": _count(reward_graph(load_model(run))), "text_encoder": _count(prompt_graph(PromptStates()))}


def matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """fp32 matmul FLOP/s of this machine (torch, all threads)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t)


# -- main -----------------------------------------------------------------------------------------------------------
def samples_from(run: Path, n: int = 64) -> list[tuple[bytes, str]]:
    data = Path(json.loads((run / "run.json").read_text())["data"]["path"])
    images = pd.read_parquet(data / "images.parquet").merge(pd.read_parquet(data / "prompts.parquet"), on="prompt_id")
    rows = images[images.split == "test"].head(n)
    return [((data / p).read_bytes(), t) for p, t in zip(rows.path, rows.text, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="scale=RUN_DIR or scale=random")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-serving")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--images", type=int, nargs="+", default=[1, 8], help="images per request")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per point")
    parser.add_argument("--backends", nargs="+", default=["embedded", "triton"], choices=["embedded", "triton"])
    parser.add_argument("--eager-duration", type=float, default=8.0)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["default="],
        help='embedded gateway configurations as name="serve flags" (default: `default=`, what make run starts)',
    )
    parser.add_argument(
        "--recount-flops", action="store_true", help="only recount FLOPs for an existing serving.json (no timing)"
    )
    args = parser.parse_args()

    runs: dict[str, Path] = {}
    for item in args.runs:
        scale, _, path = item.partition("=")
        runs[scale] = Path(path)
    template = next(p for p in runs.values() if str(p) != "random")
    for scale, path in runs.items():
        if str(path) == "random":
            runs[scale] = random_run(template, scale, args.work / f"random-{scale}")
    repo = args.work / "model_repository"
    if args.recount_flops:
        return recount_flops(runs)
    build_repo(runs, repo)
    samples = samples_from(template)
    load_start = [round(x, 2) for x in os.getloadavg()]
    machine_flops = matmul_flops()
    configs = dict(c.partition("=")[::2] for c in args.configs)
    rows, curves = [], {}
    triton = None
    if "triton" in args.backends:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the Triton test harness
        from triton_harness import TritonServer

        models = ["image_encoder", "text_encoder", *(f"reward_{s}" for s in runs)]
        triton = TritonServer(repo, model_control_mode="explicit", load_models=models)
        triton.start_and_wait(300)
    try:
        for scale, run in runs.items():
            rows += measure_scale(args, repo, scale, run, samples, machine_flops, triton, curves, configs)
    finally:
        if triton is not None:
            triton.stop()
    machine_info = machine() | {"matmul_gflops": round(machine_flops / 1e9, 1), "loadavg_start": load_start}
    machine_info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    payload = {"machine": machine_info, "command": command(), "configs": configs}
    payload["rows"] = rows
    write_result("serving", payload, markdown(payload))
    plot(curves, RESULTS / "serving.png")
    print(markdown(payload))


def measure_scale(
    args, repo: Path, scale: str, run: Path, samples, machine_flops: float, triton, curves, configs: dict[str, str]
) -> list:
    """Every (backend or configuration, images per request, concurrency) point of one scale, with its baselines:
    bare at the same point is measured right after the gateway, so each ratio comes from one stretch of time."""
    model = f"reward_{scale}"
    pipeline = RewardPipeline(repo, model).load()
    pipeline.warmup()
    flops = flops_per_image(run)
    per_image_flops = flops.get("image_encoder", 0) + flops["reward"]  # the prompt is cached across requests
    eager = eager_point(run, samples, args.eager_duration)
    servers = (
        [("embedded", name, flags.split()) for name, flags in configs.items()] if "embedded" in args.backends else []
    )
    if "triton" in args.backends:
        servers.append(("triton", "triton", ["--backend", "triton", "--triton-url", f"grpc://{triton.grpc_url}"]))
    rows = []
    for backend, config, extra in servers:
        gateway = Gateway(repo, model, extra)
        measured = []
        try:
            for per_request in args.images:
                for c in args.concurrency:
                    served = gateway_point(gateway.url, samples, c, per_request, args.duration, gateway.proc.pid)
                    bare = None
                    if backend == "embedded":
                        bare = bare_point(pipeline, samples, c, per_request, args.duration)
                    row = {
                        "scale": scale,
                        "backend": backend,
                        "config": config,
                        "flags": " ".join(extra),
                        "images_per_request": per_request,
                        "concurrency": c,
                        "gateway": served,
                        "bare": bare,
                        "eager": eager,
                        "vs_bare": round(served["images_per_s"] / bare["images_per_s"], 3) if bare else None,
                        "vs_eager": round(served["images_per_s"] / eager["images_per_s"], 2),
                        "compute_share": served["images_per_s"] * per_image_flops / machine_flops,
                        "bare_compute_share": bare["images_per_s"] * per_image_flops / machine_flops if bare else None,
                        "flops_per_image": per_image_flops,
                        "flops": flops,
                        "random_init": bool(json.loads((run / "run.json").read_text()).get("random_init")),
                    }
                    measured.append(row)
                    curves.setdefault((scale, config, per_request), []).append(served)
                    print(json.dumps(row), flush=True)
        finally:
            rss = gateway.stop()
        for row in measured:
            row |= {"startup_s": round(gateway.startup_s, 2), "peak_rss_mb": round(rss, 1)}
        rows += measured
    pipeline.unload()
    return rows


def recount_flops(runs: dict[str, Path]) -> None:
    """Redo the FLOP counts (and compute shares) of benchmarks/results/serving.json; the timings stay as measured."""
    payload = json.loads((RESULTS / "serving.json").read_text())
    machine_flops = payload["machine"]["matmul_gflops"] * 1e9
    counts = {scale: flops_per_image(run) for scale, run in runs.items()}
    for row in payload["rows"]:
        flops = counts[row["scale"]]
        row["flops"], row["flops_per_image"] = flops, flops.get("image_encoder", 0) + flops["reward"]
        row["compute_share"] = row["gateway"]["images_per_s"] * row["flops_per_image"] / machine_flops
    write_result("serving", payload, markdown(payload))
    print(markdown(payload))


def markdown(payload: dict) -> str:
    headers = ["scale", "config", "imgs/req", "conc.", "gateway img/s", "p50 / p99 ms", "bare img/s", "gateway / bare"]
    headers += ["eager img/s", "gateway / eager", "compute share (bare)", "CPU ms/img server / loadgen / bare"]
    headers += ["load avg", "startup", "peak RSS"]
    table = []
    for r in payload["rows"]:
        g, b = r["gateway"], r["bare"]
        cpu = f"{g.get('server_cpu_ms_per_image', '—')} / {g.get('loadgen_cpu_ms_per_image', '—')}"
        cpu += f" / {b.get('cpu_ms_per_image', '—')}" if b else " / —"
        share = f"{100 * r['compute_share']:.1f}%"
        if r.get("bare_compute_share") is not None:
            share += f" ({100 * r['bare_compute_share']:.1f}%)"
        table.append(
            [
                r["scale"] + (" (random init)" if r.get("random_init") else ""),
                r.get("config", r["backend"]),
                r["images_per_request"],
                r["concurrency"],
                g["images_per_s"],
                f"{g.get('p50_ms')} / {g.get('p99_ms')}",
                b["images_per_s"] if b else "—",
                r["vs_bare"] if r["vs_bare"] is not None else "—",
                r["eager"]["images_per_s"],
                r["vs_eager"],
                share,
                cpu,
                "–".join(str(x) for x in g.get("loadavg", [])) or "—",
                f"{r.get('startup_s', '—')} s",
                f"{r.get('peak_rss_mb', '—')} MB",
            ]
        )
    m = payload["machine"]
    configs = "; ".join(f"`{k}`: `{v or '(no flags)'}`" for k, v in payload.get("configs", {}).items())
    return "\n".join(
        [
            "# Serving benchmark",
            "",
            f"Machine: {m['processor']}, {m['cpus']} CPUs, Python {m['python']}; "
            f"fp32 matmul {m['matmul_gflops']} GFLOP/s; load average {m.get('loadavg_start', '?')} at the start, "
            f"{m.get('loadavg_end', '?')} at the end.",
            f"Command: `{payload['command']}`",
            f"Gateway configurations: {configs or 'default'}.",
            "",
            "The load generator shares the machine with the server. bare = the same pipeline in-process (no HTTP) "
            "at the same concurrency and images per call, measured right after the gateway; eager = PyTorch, one image "
            "per call. compute share = achieved FLOP/s (images/s x FLOPs per image) over the machine's matmul FLOP/s, "
            "measured once at the start of the run (bare's in brackets). CPU ms/img: CPU time of the gateway's "
            "processes, of the load generator and of bare per image served; load avg: the 1-minute load average at "
            "the start and end of the gateway point (2 CPUs: above ~2 something else competed).",
            "",
            markdown_table(headers, table),
        ]
    )


def plot(curves: dict, path: Path) -> None:
    scales = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(1, len(scales), figsize=(5 * len(scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        for (s, config, per_request), points in sorted(curves.items()):
            if s != scale:
                continue
            ax.plot(
                [p["images_per_s"] for p in points],
                [p.get("p50_ms", np.nan) for p in points],
                marker="o",
                label=f"{config}, {per_request} img/req",
            )
        ax.set(title=f"reward_{scale}", xlabel="throughput (images/s)", ylabel="p50 latency (ms)", yscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
