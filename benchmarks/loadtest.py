"""Locust load test against a gateway this script starts (127.0.0.1), bounded in users and time.

    python benchmarks/loadtest.py --repo model_repository --model reward_small --users 20 --time 60

Runs locust headless with the HTTP and gRPC users of benchmarks/locustfile.py, writes locust's CSVs to
``runs/loadtest/`` and a summary (requests, failures, p50/p95/p99 per call and in total) to
benchmarks/results/loadtest.md and .json.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

from common import command, machine, markdown_table, write_result
from serving import ROOT, Gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default=None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--time", type=int, default=60, help="seconds")
    parser.add_argument("--data", type=Path, default=None, help="dataset whose test images are sent")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "loadtest")
    args = parser.parse_args()
    if not 1 <= args.users <= 200 or not 1 <= args.time <= 900:
        raise SystemExit("error: --users must be 1..200 and --time 1..900 s (load tests stay bounded)")

    args.out.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(args.repo, args.model, [])
    env = os.environ | {"REWARDDANCE_GRPC": f"127.0.0.1:{gateway.grpc_port}"}
    if args.data:
        env["REWARDDANCE_LOCUST_DATA"] = str(args.data)
    cmd = [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless"]
    cmd += ["-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.time}s", "--host", gateway.url]
    cmd += ["--csv", str(args.out / "locust"), "--only-summary", "--stop-timeout", "10"]
    try:
        result = subprocess.run(cmd, env=env, timeout=args.time + 120, capture_output=True, text=True)
    finally:
        rss = gateway.stop()
    rows = list(csv.DictReader((args.out / "locust_stats.csv").open()))
    summary = [
        {
            "type": r["Type"],
            "name": r["Name"],
            "requests": int(r["Request Count"]),
            "failures": int(r["Failure Count"]),
            "rps": round(float(r["Requests/s"]), 2),
            "p50_ms": r["50%"],
            "p95_ms": r["95%"],
            "p99_ms": r["99%"],
        }
        for r in rows
    ]
    payload = {
        "machine": machine(),
        "command": command(),
        "users": args.users,
        "seconds": args.time,
        "gateway_startup_s": round(gateway.startup_s, 2),
        "gateway_peak_rss_mb": round(rss, 1),
        "locust_exit_code": result.returncode,
        "rows": summary,
    }
    table = markdown_table(
        ["type", "call", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"],
        [
            [r["type"], r["name"], r["requests"], r["failures"], r["rps"], r["p50_ms"], r["p95_ms"], r["p99_ms"]]
            for r in summary
        ],
    )
    text = "\n".join(
        [
            "# Load test (locust)",
            "",
            f"{args.users} users (HTTP and gRPC), {args.time} s, gateway on 127.0.0.1 ({args.repo}); "
            f"machine: {payload['machine']['cpus']} CPUs. Gateway startup {payload['gateway_startup_s']} s, "
            f"peak RSS {payload['gateway_peak_rss_mb']} MB.",
            f"Command: `{payload['command']}`",
            "",
            table,
        ]
    )
    write_result("loadtest", payload, text)
    print(text)
    if result.returncode not in (0, 1):  # locust exits 1 when any request failed; that is reported, not hidden
        print(result.stderr[-3000:], file=sys.stderr)


if __name__ == "__main__":
    main()
