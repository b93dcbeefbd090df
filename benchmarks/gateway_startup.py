"""Gateway startup: seconds from `rewarddance serve` to /healthz and to /readyz, and the server's peak RSS.

    python benchmarks/gateway_startup.py --repo model_repository [--model reward_small] [--label small] [--runs 3]

Starts the real server (subprocess, 127.0.0.1, free ports) ``--runs`` times; each run: time to the first /healthz
(process up, HTTP listening) and to /readyz 200 (models loaded and warmed), then 20 single-image /v1/score
calls, then the process's peak RSS (VmHWM) and SIGTERM to exit. Results merge into
benchmarks/results/gateway_startup.json and .md, one row per --label.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from common import RESULTS, command, machine, markdown_table, write_result
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def one_run(repo: Path, model: str | None, timeout: float) -> dict:
    http_port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    cmd = [sys.executable, "-m", "rewarddance.cli", "serve", "--repo", str(repo), "--host", "127.0.0.1"]
    cmd += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), *(["--model", model] if model else [])]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"gateway-startup-{http_port}.log", "w")  # noqa: SIM115
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    healthy = ready = None
    try:
        while time.perf_counter() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}; see {log.name}")
            try:
                if healthy is None and httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    healthy = time.perf_counter() - started
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    ready = time.perf_counter() - started
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        if ready is None:
            raise RuntimeError(f"not ready within {timeout} s")
        rss_ready = vm_kb(proc.pid, "VmRSS") / 1024
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "PNG")
        body = {"prompt": "a red circle in the centre", "images": [base64.b64encode(buf.getvalue()).decode()]}
        latencies = []
        with httpx.Client(timeout=60) as client:
            for _ in range(20):
                t = time.perf_counter()
                client.post(url + "/v1/score", json=body).raise_for_status()
                latencies.append(time.perf_counter() - t)
        peak = vm_kb(proc.pid, "VmHWM") / 1024
        t = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        return {
            "healthz_s": round(healthy or ready, 3),
            "ready_s": round(ready, 3),
            "rss_ready_mb": round(rss_ready, 1),
            "peak_rss_mb": round(peak, 1),
            "score_p50_ms": round(1000 * float(np.median(latencies)), 2),
            "shutdown_s": round(time.perf_counter() - t, 3),
            "exit_code": code,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default=None)
    parser.add_argument("--label", default=None, help="row name (default: the model or the repository)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    label = args.label or args.model or args.repo.name
    runs = [one_run(args.repo, args.model, args.timeout) for _ in range(args.runs)]
    for r in runs:
        print(label, r, flush=True)
    summary = {k: float(np.median([r[k] for r in runs])) for k in runs[0] if k != "exit_code"}
    path = RESULTS / "gateway_startup.json"
    payload = json.loads(path.read_text()) if path.exists() else {"rows": {}}
    payload["rows"][label] = {
        "repo": str(args.repo),
        "model": args.model,
        "median": summary,
        "runs": runs,
        "command": command(),
    }
    payload["machine"] = machine()
    headers = [
        "repository",
        "to /healthz s",
        "to /readyz s",
        "RSS ready MB",
        "peak RSS MB",
        "score p50 ms",
        "SIGTERM exit s",
    ]
    rows = [
        [
            name,
            r["median"]["healthz_s"],
            r["median"]["ready_s"],
            r["median"]["rss_ready_mb"],
            r["median"]["peak_rss_mb"],
            r["median"]["score_p50_ms"],
            r["median"]["shutdown_s"],
        ]
        for name, r in payload["rows"].items()
    ]
    markdown = (
        "# Gateway startup and memory\n\n"
        f"Median of {args.runs} runs per row; 2-core shared CPU box; embedded onnxruntime backend. "
        "Peak RSS = VmHWM after warm-up and 20 single-image /v1/score calls (256x256 PNG).\n\n"
        + markdown_table(headers, rows)
        + f"\n\nMachine: {payload['machine']}\n\nCommand (last row): `{command()}`"
    )
    write_result("gateway_startup", payload, markdown)


if __name__ == "__main__":
    main()
