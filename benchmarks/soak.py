"""Soak: one gateway under a mix of normal, hostile and slow clients for a few minutes, its memory and descriptors
sampled every second, to show that hostile traffic neither starves normal clients nor grows memory without a bound,
and never causes a 5xx (issue 17).

    python benchmarks/soak.py --repo runs/bench-serving/model_repository --model reward_small --duration 240

Clients, all on 127.0.0.1, closed loops stopped at ``--duration``:
- normal: ``--normal`` keep-alive clients posting ``--images`` images per /v1/score (latency percentiles, and p99
  per 10 s window over time);
- thin: 16 PNGs of 1 x 100,000 pixels per request (the cost amplification of issue 17) -> 413;
- bad: malformed JSON, JSON nested 100,000 deep, bad base64, multipart with nested JSON weights, a body just over
  the limit, malformed gRPC messages -> 4xx / INVALID_ARGUMENT;
- aborting: uploads that declare 1 MB and hang up after 64 kB -> 499 in the gateway's own metrics;
- slow: ``--slow`` connections open at any time, each a slowloris (a header line every 0.5 s, never the end), a
  trickled body (10 bytes a second) or an idle connection, reopened once the gateway closes it;
- big: ``--big`` clients uploading ``--big-mb`` MB bodies at once (memory pressure) -> 200, or 429 ``overloaded``
  once they fill the in-flight byte budget (then normal clients may get 429 too: that is the budget working).
Sampled every second: the RSS and open descriptors of the gateway's processes, its open HTTP connections.
Result: benchmarks/results/soak.{json,md,png}: status counts per client class, the normal clients' latency
percentiles, peak RSS against the bound (RSS when ready + ``--rss-allowance-mb``), and the 5xx count from the
gateway's own metrics (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import re
import shlex
import time
from collections import Counter
from pathlib import Path

import httpx
import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result
from serving import Gateway, percentiles

THIN = (1, 100_000)


# -- payloads -------------------------------------------------------------------------------------------------------
def png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def normal_bodies(images: int) -> list[dict]:
    pool = [b64(png(64, 64, seed)) for seed in range(32)]
    return [{"prompt": f"a red circle {k}", "images": [pool[(k + i) % 32] for i in range(images)]} for k in range(8)]


def bad_requests(max_body_bytes: int) -> list[tuple[str, dict]]:
    """(name, httpx request kwargs); every one must get a 4xx."""
    json_type = {"content-type": "application/json"}
    small = b64(png(32, 32, 0))
    return [
        ("malformed_json", {"content": b"{not json", "headers": json_type}),
        ("nested_json", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": json_type}),
        ("bad_base64", {"json": {"prompt": "p", "images": ["!!not base64!!"]}}),
        ("not_an_image", {"json": {"prompt": "p", "images": [b64(b"hello")]}}),
        (
            "nested_weights",
            {"files": [("image", ("a.png", base64.b64decode(small)))], "data": {"prompt": "p", "weights": "[" * 5000}},
        ),
        ("over_the_limit", {"content": b" " * (max_body_bytes + 1), "headers": json_type}),
    ]


# -- clients --------------------------------------------------------------------------------------------------------
class Soak:
    def __init__(self, url: str, grpc_target: str, args: argparse.Namespace, max_body_bytes: int) -> None:
        self.url = url
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.grpc_target = grpc_target
        self.args = args
        self.max_body_bytes = max_body_bytes
        self.stop_at = 0.0
        self.t0 = 0.0
        self.statuses: dict[str, Counter] = {}
        self.normal: list[tuple[float, float]] = []  # (seconds since start, latency) of each 200

    def count(self, kind: str, status: int | str) -> None:
        self.statuses.setdefault(kind, Counter())[str(status)] += 1

    @property
    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def normal_client(self, bodies: list[dict], k: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
            i = k
            while self.running:
                started = time.monotonic()
                try:
                    r = await client.post("/v1/score", json=bodies[i % len(bodies)])
                    self.count("normal", r.status_code)
                    if r.status_code == 200:
                        self.normal.append((started - self.t0, time.monotonic() - started))
                except httpx.HTTPError as exc:
                    self.count("normal", type(exc).__name__)
                i += 1

    async def http_loop(self, kind: str, requests: list[tuple[str, dict]], pause_s: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
            i = 0
            while self.running:
                name, kwargs = requests[i % len(requests)]
                try:
                    r = await client.post("/v1/score", **kwargs)
                    self.count(f"{kind}:{name}" if kind == "bad" else kind, r.status_code)
                except httpx.HTTPError as exc:
                    self.count(f"{kind}:{name}" if kind == "bad" else kind, type(exc).__name__)
                i += 1
                await asyncio.sleep(pause_s)

    async def grpc_bad(self) -> None:
        import grpc.aio

        async with grpc.aio.insecure_channel(self.grpc_target) as channel:
            call = channel.unary_unary("/rewarddance.v1.RewardService/Score")  # raw bytes in
            while self.running:
                try:
                    await call(b"\xff\xff\xff\xff\x0f", timeout=10)
                    self.count("bad:grpc_malformed", "OK")
                except grpc.aio.AioRpcError as exc:
                    self.count("bad:grpc_malformed", exc.code().name)
                await asyncio.sleep(0.5)

    async def aborting(self) -> None:
        head = (
            b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n"
        )
        while self.running:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(head + b"{" + b" " * 65535)
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.transport.abort()
                self.count("aborting", "sent")
            except OSError as exc:
                self.count("aborting", type(exc).__name__)
            await asyncio.sleep(0.2)

    async def slow(self, kind: str) -> None:
        """One slow connection at a time; what ended it (the status line the gateway sent, or how it closed)."""
        while self.running:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self.count(f"slow:{kind}", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            if kind == "slowloris":
                writer.write(b"POST /v1/score HTTP/1.1\r\nhost: x\r\n")
            elif kind == "trickle":
                writer.write(b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n{")
            answer = b""
            try:
                while self.running:
                    try:
                        chunk = await asyncio.wait_for(reader.read(4096), 0.5)
                    except TimeoutError:
                        if kind == "slowloris":
                            writer.write(b"x-slow: 1\r\n")
                        elif kind == "trickle":
                            writer.write(b" " * 5)
                        await writer.drain()
                        continue
                    if not chunk:
                        break
                    answer += chunk
            except OSError:
                pass
            finally:
                writer.transport.abort()
            if answer.startswith(b"HTTP/1.1 "):
                self.count(f"slow:{kind}", answer.split(b" ", 2)[1].decode())
            else:
                self.count(f"slow:{kind}", "closed" if self.running else "open at the end")

    async def big(self) -> None:
        body = {"prompt": "p", "images": [b64(png(64, 64, 1))], "pad": "x" * int(self.args.big_mb * 2**20)}
        content = json.dumps(body).encode()
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as client:
            while self.running:
                try:
                    r = await client.post("/v1/score", content=content, headers={"content-type": "application/json"})
                    self.count("big", r.status_code)
                except httpx.HTTPError as exc:
                    self.count("big", type(exc).__name__)
                await asyncio.sleep(0.1)

    async def run(self, sample) -> list[dict]:
        a = self.args
        self.t0 = time.monotonic()
        self.stop_at = self.t0 + a.duration
        thin = {"prompt": "a red line", "images": [b64(png(*THIN, 0))] * 16}
        tasks = [self.normal_client(normal_bodies(a.images), k) for k in range(a.normal)]
        tasks += [self.http_loop("thin", [("thin", {"json": thin})], 0.05) for _ in range(a.thin)]
        tasks += [self.http_loop("bad", bad_requests(self.max_body_bytes), 0.05) for _ in range(a.bad)]
        tasks += [self.grpc_bad(), self.aborting()]
        kinds = ("slowloris", "trickle", "idle")
        tasks += [self.slow(kinds[k % 3]) for k in range(a.slow)]
        tasks += [self.big() for _ in range(a.big)]
        samples: list[dict] = []

        async def sampler() -> None:
            while self.running:
                samples.append({"t": round(time.monotonic() - self.t0, 2), **sample()})
                await asyncio.sleep(1.0)

        await asyncio.gather(sampler(), *tasks)
        return samples


# -- the gateway's processes ----------------------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        with contextlib.suppress(OSError):
            stack += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return pids


def rss_and_fds(pid: int) -> tuple[float, int]:
    rss, fds = 0.0, 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
            fds += len(list(Path(f"/proc/{p}/fd").iterdir()))
        except OSError:
            pass
    return round(rss, 1), fds


def scrape(url: str) -> str:
    try:
        return httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


def metric_sum(text: str, name: str, where: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and re.search(where, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            match = re.search(rf'{label}="([^"]*)"', line)
            if match:
                out[match.group(1)] = out.get(match.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


# -- report ---------------------------------------------------------------------------------------------------------
def windows(normal: list[tuple[float, float]], width: float = 10.0) -> list[dict]:
    out = []
    if not normal:
        return out
    end = max(t for t, _ in normal)
    start = 0.0
    while start <= end:
        lat = [latency for t, latency in normal if start <= t < start + width]
        if lat:
            out.append({"t": start + width / 2, "requests": len(lat), **percentiles(lat)})
        start += width
    return out


def plot(samples: list[dict], spans: list[dict], bound_mb: float, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    t = [s["t"] for s in samples]
    axes[0].plot(t, [s["rss_mb"] for s in samples], label="gateway RSS")
    axes[0].axhline(bound_mb, color="red", linestyle="--", label=f"bound {bound_mb:.0f} MB")
    axes[0].set(xlabel="s", ylabel="MB", title="memory")
    axes[0].legend()
    axes[1].plot(t, [s["fds"] for s in samples], label="open descriptors")
    axes[1].plot(t, [s["connections"] for s in samples], label="open HTTP connections")
    axes[1].set(xlabel="s", title="descriptors and connections")
    axes[1].legend()
    axes[2].plot([w["t"] for w in spans], [w["p99_ms"] for w in spans], marker="o", label="p99")
    axes[2].plot([w["t"] for w in spans], [w["p50_ms"] for w in spans], marker=".", label="p50")
    axes[2].set(xlabel="s", ylabel="ms", title="normal clients' latency (10 s windows)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of mixed traffic")
    parser.add_argument("--normal", type=int, default=4, help="normal clients")
    parser.add_argument("--images", type=int, default=8, help="images per normal request")
    parser.add_argument("--thin", type=int, default=2, help="clients sending thin-image requests")
    parser.add_argument("--bad", type=int, default=2, help="clients sending malformed requests")
    parser.add_argument("--slow", type=int, default=300, help="slow connections open at any time")
    parser.add_argument(
        "--big", type=int, default=4, help="clients uploading big bodies (4 x 24 MB: near, not over, the 128 MB cap)"
    )
    parser.add_argument("--big-mb", type=float, default=24.0)
    parser.add_argument("--rss-allowance-mb", type=float, default=600.0, help="bound = RSS when ready + this")
    parser.add_argument("--gateway-args", default="", help="extra `rewarddance serve` flags, one string")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    extra = shlex.split(args.gateway_args)
    max_body = int(float(extra[extra.index("--max-body-mb") + 1] if "--max-body-mb" in extra else 32) * 2**20)
    load_start = round(os.getloadavg()[0], 2)  # 1-minute load average: above the core count, others competed
    gateway = Gateway(args.repo, args.model, extra)
    try:
        pid = gateway.proc.pid
        ready_rss, ready_fds = rss_and_fds(pid)
        bound = ready_rss + args.rss_allowance_mb

        def sample() -> dict:
            rss, fds = rss_and_fds(pid)
            text = scrape(gateway.url)
            return {"rss_mb": rss, "fds": fds, "connections": metric_sum(text, "rewarddance_http_connections")}

        soak = Soak(gateway.url, f"127.0.0.1:{gateway.grpc_port}", args, max_body)
        samples = asyncio.run(soak.run(sample))
        time.sleep(6.0)  # idle connections time out; descriptors should be back near the start
        settled_rss, settled_fds = rss_and_fds(pid)
        text = scrape(gateway.url)
    finally:
        peak = gateway.stop()
    normal_latencies = [latency for _, latency in soak.normal]
    server_5xx = metric_sum(text, "rewarddance_requests_total", r'status="5\d\d"')
    peak_rss = max(s["rss_mb"] for s in samples)
    result = {
        "machine": machine(),
        "command": command(),
        "loadavg": [load_start, round(os.getloadavg()[0], 2)],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ready": {"rss_mb": ready_rss, "fds": ready_fds},
        "settled": {"rss_mb": settled_rss, "fds": settled_fds},
        "rss_bound_mb": round(bound, 1),
        "peak_rss_mb": peak_rss,
        "peak_rss_hwm_mb": round(peak, 1),
        "peak_fds": max(s["fds"] for s in samples),
        "peak_connections": max(s["connections"] for s in samples),
        "normal": {"requests": len(normal_latencies), **percentiles(normal_latencies)},
        "statuses": {k: dict(sorted(v.items())) for k, v in sorted(soak.statuses.items())},
        "server_5xx": server_5xx,
        "server_statuses": by_label(text, "rewarddance_requests_total", "status"),
        "server_errors": by_label(text, "rewarddance_errors_total", "code"),
        "connections_closed": by_label(text, "rewarddance_http_connections_closed_total", "reason"),
        "windows": windows(soak.normal),
        "samples": samples,
    }
    ok = server_5xx == 0 and peak_rss <= bound and len(normal_latencies) > 0
    result["verdict"] = "pass" if ok else "fail"
    rows = [[k, ", ".join(f"{s}: {n}" for s, n in v.items())] for k, v in result["statuses"].items()]
    n = result["normal"]
    markdown = "\n".join(
        [
            "# Soak: normal, hostile and slow clients at once",
            "",
            f"Machine: {machine()['processor']}, {machine()['cpus']} CPUs; load average {result['loadavg'][0]} at the "
            f"start, {result['loadavg'][1]} at the end. Command: `{command()}`",
            "",
            f"{args.duration:.0f} s; {args.normal} normal clients x {args.images} images, {args.thin} thin-image, "
            f"{args.bad} malformed, 1 aborting, {args.slow} slow connections, {args.big} x {args.big_mb:g} MB uploads.",
            "",
            f"- **verdict: {result['verdict']}** (no 5xx, peak RSS under the bound, normal clients served)",
            f"- normal clients: {n['requests']} requests served, p50 / p95 / p99 = {n.get('p50_ms')} / "
            f"{n.get('p95_ms')} / {n.get('p99_ms')} ms",
            f"- 5xx in the gateway's metrics: {server_5xx:g}",
            f"- RSS: {ready_rss} MB when ready, peak {peak_rss} MB sampled ({result['peak_rss_hwm_mb']} MB high-water "
            f"mark), bound {bound:.0f} MB (ready + {args.rss_allowance_mb:g}), {settled_rss} MB after",
            f"- descriptors: {ready_fds} when ready, peak {result['peak_fds']}, {settled_fds} after; peak open HTTP "
            f"connections {result['peak_connections']:g}",
            f"- connections the gateway closed: {result['connections_closed']}",
            "",
            markdown_table(["client", "statuses seen by the client"], rows),
            "",
            "![soak](soak.png)",
        ]
    )
    json_path, md_path = write_result("soak", result, markdown, args.out_dir)
    plot(samples, result["windows"], bound, args.out_dir / "soak.png")
    print(markdown)
    print(f"wrote {json_path}, {md_path}")


if __name__ == "__main__":
    main()
