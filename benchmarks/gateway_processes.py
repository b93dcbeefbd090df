"""Gateway throughput with 1 and N worker processes (``rewarddance serve --processes N``) against the same pipeline
in-process (bare onnxruntime, threads, no HTTP), measured in one run on one machine.

    python benchmarks/gateway_processes.py --repo runs/bench-serving/model_repository --model reward_small \\
        --samples-from runs/reward-small --gateways 1 2 2:1 --concurrency 16 --images 8 1 --duration 8

Each point: ``--concurrency`` keep-alive HTTP clients posting ``--images`` images per request for ``--duration``
seconds (after a warm-up), images/s and latency percentiles, and how many requests each worker answered.
Results: benchmarks/results/gateway_processes.{md,json,png}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result
from serving import Gateway, bare_point, gateway_point, samples_from

from rewarddance.scoring.backend import OnnxRuntimeBackend
from rewarddance.scoring.pipeline import RewardPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--model", default="reward_small")
    parser.add_argument("--samples-from", type=Path, required=True, help="a training run: its test images and prompts")
    parser.add_argument(
        "--gateways",
        nargs="+",
        default=["1", "2", "2:1"],
        help="PROCESSES[:INTRA_OP_THREADS] per gateway to measure (threads default: onnxruntime's, all cores)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--images", type=int, nargs="+", default=[8, 1], help="images per request")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    samples = samples_from(args.samples_from)
    rows = []
    for spec in args.gateways:
        n, _, threads = spec.partition(":")
        extra = ["--processes", n] + (["--intra-op-threads", threads] if threads else [])
        setup = f"gateway, {n} process(es)" + (f", {threads} onnxruntime thread(s) each" if threads else "")
        gateway = Gateway(args.repo, args.model, extra)
        try:
            for per_request in args.images:
                for c in args.concurrency:
                    point = gateway_point(gateway.url, samples, c, per_request, args.duration)
                    rows.append(
                        {"setup": setup, "processes": int(n), "threads": threads or "all", "images": per_request}
                        | {"concurrency": c}
                        | point
                    )
                    print(rows[-1], flush=True)
        finally:
            gateway.stop()
    pipeline = RewardPipeline(args.repo, args.model, backend=OnnxRuntimeBackend()).load()
    pipeline.warmup((1, 8))
    for per_request in args.images:
        for c in args.concurrency:
            point = bare_point(pipeline, samples, c, per_request, args.duration)
            rows.append(
                {
                    "setup": "bare onnxruntime, in-process threads",
                    "processes": 0,
                    "threads": "all",
                    "images": per_request,
                    "concurrency": c,
                }
                | point
            )
            print(rows[-1], flush=True)

    bare = {(r["images"], r["concurrency"]): r["images_per_s"] for r in rows if r["processes"] == 0}
    one = {
        (r["images"], r["concurrency"]): r["images_per_s"]
        for r in rows
        if r["processes"] == 1 and r["threads"] == "all"
    }
    for r in rows:
        key = (r["images"], r["concurrency"])
        r["vs_bare"] = round(r["images_per_s"] / bare[key], 3) if key in bare else None
        r["vs_one_process"] = round(r["images_per_s"] / one[key], 3) if key in one and r["processes"] else None
    payload = {"machine": machine(), "command": command(), "repo": str(args.repo), "model": args.model, "rows": rows}
    headers = [
        "setup",
        "images/request",
        "concurrency",
        "images/s",
        "vs 1 process",
        "vs bare",
        "p50 / p95 ms",
        "requests by worker",
    ]
    table = [
        [
            r["setup"],
            r["images"],
            r["concurrency"],
            r["images_per_s"],
            r["vs_one_process"] if r["vs_one_process"] is not None else "—",
            r["vs_bare"],
            f"{r.get('p50_ms', '—')} / {r.get('p95_ms', '—')}",
            r.get("requests_by_worker", "—"),
        ]
        for r in rows
    ]
    md = (
        f"# Gateway worker processes\n\nMachine {payload['machine']}; model `{args.model}` from `{args.repo}`.\n\n"
        f"Command: `{payload['command']}`\n\n{markdown_table(headers, table)}\n"
    )
    write_result("gateway_processes", payload, md, args.out_dir)
    plot(rows, args.out_dir / "gateway_processes.png")
    print(md)


def plot(rows: list[dict], path: Path) -> None:
    keys = sorted({(r["images"], r["concurrency"]) for r in rows})
    setups = list(dict.fromkeys(r["setup"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(setups)
    for i, setup in enumerate(setups):
        values = [
            next((r["images_per_s"] for r in rows if r["setup"] == setup and (r["images"], r["concurrency"]) == k), 0)
            for k in keys
        ]
        ax.bar([j + i * width for j in range(len(keys))], values, width, label=setup)
    ax.set_xticks([j + width * (len(setups) - 1) / 2 for j in range(len(keys))])
    ax.set_xticklabels([f"{i} img/request, c{c}" for i, c in keys])
    ax.set_ylabel("images/s")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
