"""Regenerate the README's Performance tables from the result files, so the README never says what no file shows.

    python benchmarks/readme_performance.py            # rewrites README.md between the performance markers
    python benchmarks/readme_performance.py --check    # exit 1 when the README differs from the result files

Reads benchmarks/results/serving.json (issue 18's rows: gateway and bare images/s, their ratio, vs eager, compute
share, the micro-batching gain, CPU per image, load average, matmul rate) and, when present, soak.json and
hardening_throughput.json (issue 17).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import RESULTS, markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- performance:start (benchmarks/readme_performance.py) -->", "<!-- performance:end -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def serving_section(payload: dict) -> list[str]:
    m = payload["machine"]
    lines = [
        f"`benchmarks/results/serving.json`: {m['cpus']} CPUs, fp32 matmul {m['matmul_gflops']} GFLOP/s measured in "
        f"the run, load average {m.get('loadavg_start', '?')} at its start and {m.get('loadavg_end', '?')} at its "
        f"end; every ratio below comes from that one run (bare is measured right after the gateway at each point).",
        f"Command: `{payload['command']}`",
        "",
    ]
    headers = ["model", "config", "row", "gateway img/s", "bare img/s", "gateway / bare", "vs eager"]
    headers += ["compute share (bare)", "CPU ms/img server / loadgen / bare", "load avg"]
    table, gains = [], []
    by_point = {}
    for r in payload["rows"]:
        g, b = r["gateway"], r["bare"] or {}
        by_point[(r["scale"], r.get("config", r["backend"]), r["images_per_request"], r["concurrency"])] = g
        share = f"{100 * r['compute_share']:.1f}%"
        if r.get("bare_compute_share") is not None:
            share += f" ({100 * r['bare_compute_share']:.1f}%)"
        cpu = f"{g.get('server_cpu_ms_per_image', '—')} / {g.get('loadgen_cpu_ms_per_image', '—')} / "
        cpu += str(b.get("cpu_ms_per_image", "—"))
        table.append(
            [
                f"reward_{r['scale']}",
                r.get("config", r["backend"]),
                f"{r['images_per_request']} image{'s' if r['images_per_request'] > 1 else ''}/request, "
                f"c{r['concurrency']}",
                g["images_per_s"],
                b.get("images_per_s", "—"),
                r["vs_bare"] if r["vs_bare"] is not None else "—",
                f"{r['vs_eager']}x",
                share,
                cpu,
                "–".join(str(x) for x in g.get("loadavg", [])) or "—",
            ]
        )
    for (scale, config, per_request, c), g in sorted(by_point.items()):
        low = by_point.get((scale, config, per_request, 1))
        if per_request == 1 and c > 1 and low:
            gain = g["images_per_s"] / low["images_per_s"]
            gains.append(f"reward_{scale} ({config}): {g['images_per_s']} vs {low['images_per_s']} img/s ({gain:.2f}x)")
    lines.append(markdown_table(headers, table))
    if gains:
        lines += ["", "Micro-batching, 1 image/request, concurrency N vs 1: " + "; ".join(gains) + "."]
    return lines


def soak_section(payload: dict) -> list[str]:
    n = payload["normal"]
    load = payload.get("loadavg")
    return [
        "",
        f"Soak (`benchmarks/results/soak.json`, {payload['config']['duration']:.0f} s of normal, thin-image, "
        f"malformed, aborting, slow and big-upload clients at once): **{payload['verdict']}**; normal clients "
        f"{n['requests']} requests, p50 / p99 {n.get('p50_ms')} / {n.get('p99_ms')} ms; {payload['server_5xx']:g} "
        f"5xx; peak RSS {payload['peak_rss_mb']} MB under a bound of {payload['rss_bound_mb']} MB"
        + (f"; load average {load[0]}–{load[1]}" if load else "")
        + ".",
    ]


def hardening_section(payload: dict) -> list[str]:
    row, results = payload["row"], payload["results"]
    parts = [
        f"{label} {results[label]['images_per_s_mean']} img/s"
        + (f" ({ratio['mean']:.3f}x, rounds {ratio['min']:.3f}-{ratio['max']:.3f})" if ratio else "")
        for label in results
        for ratio in [payload["ratio"].get(label)]
    ]
    commits = ", ".join(f"{g} {info.get('commit', '')[:7]}" for g, info in payload.get("gateways", {}).items())
    return [
        "",
        f"Hardening cost (`benchmarks/results/hardening_throughput.json`, {row['model']} at "
        f"{row['images_per_request']} images/request, concurrency {row['concurrency']}, the gateways interleaved "
        f"over {len(results['before']['images_per_s'])} rounds in one run; {commits}): " + "; ".join(parts) + ".",
    ]


def generated() -> str:
    lines = [START, ""]
    serving = _load("serving")
    if serving:
        lines += serving_section(serving)
    soak = _load("soak")
    if soak:
        lines += soak_section(soak)
    hardening = _load("hardening_throughput")
    if hardening:
        lines += hardening_section(hardening)
    return "\n".join([*lines, "", END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README is stale")
    args = parser.parse_args()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    updated = head + generated() + tail
    if args.check:
        stale = updated != text
        print("README.md is stale: run benchmarks/readme_performance.py" if stale else "README.md matches")
        return int(stale)
    README.write_text(updated)
    print("README.md performance block regenerated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
