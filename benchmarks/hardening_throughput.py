"""Issue 17's throughput check: the serving benchmark's reference row (reward_small, 8 images/request, 16 clients) on
the gateway from before the hardening and on the current tree's, the same exported model, in one run, interleaved.

    python benchmarks/hardening_throughput.py --run runs/ladder/small-seed0 --before 5804ee4 --rounds 3 --duration 15

The gateway before the change runs from a git worktree of that commit (``/tmp/wt-<rev>``, added when missing) with
this interpreter and ``PYTHONPATH`` pointing at the worktree's packages (checked: ``rewarddance.__file__`` must resolve
into it); the current tree's gateway starts the normal way. Each starts with what its tree's ``make run`` passes to
``rewarddance serve`` besides ``--repo`` (its defaults). Both serve one model repository, exported once by the current
exporter (5804ee4 reads it: same format-1 layout), and the sha256 of the served ONNX files is recorded; one request's
scores are compared across the gateways. Both gateways stay up for the whole run; after a warm-up, each round loads
one gateway for ``--duration`` seconds, then the other, the order alternating from round to round (A B, B A, ...), so
drift in the machine's load reaches both sides. ``--also LABEL=REV`` adds more worktree gateways (e.g.
``hardened=9bc1fd3``, the hardening without the later serving work).

Any request that fails, or a gateway that does not become ready or dies, stops the run with a non-zero exit and
writes no result. Results: benchmarks/results/hardening_throughput.{json,md,png}.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result
from serving import Gateway, build_repo, cpu_seconds, gateway_point, matmul_flops, samples_from

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("src", "server", "exporter", "trainer", "client")  # pyproject's packages.find roots
THRESHOLD = 0.95  # after / before: at most 5% slower


class Failed(RuntimeError):
    pass


# -- trees ----------------------------------------------------------------------------------------------------------
def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, text=True).stdout.strip()


def worktree(rev: str) -> Path:
    """A detached worktree of ``rev`` at /tmp/wt-<rev>, added if missing."""
    path = Path(f"/tmp/wt-{rev}")
    if not (path / ".git").exists():
        git(ROOT, "worktree", "add", "--detach", str(path), rev)
    if git(path, "rev-parse", "HEAD") != git(ROOT, "rev-parse", f"{rev}^{{commit}}"):
        raise Failed(f"{path} is not at {rev}")
    return path


def make_run_flags(tree: Path) -> list[str]:
    """What the tree's ``make run`` passes to ``rewarddance serve`` besides ``--repo``."""
    found = re.search(r"rewarddance serve --repo \$\(REPO\)(.*)", (tree / "Makefile").read_text())
    if not found:
        raise Failed(f"no `rewarddance serve --repo $(REPO)` line in {tree / 'Makefile'}")
    return shlex.split(found.group(1))


_PROBE = """
import argparse, json, rewarddance, rewarddance_server
from rewarddance_server.serve_cmd import add_arguments
parser = argparse.ArgumentParser()
add_arguments(parser)
defaults = {k: v for k, v in vars(parser.parse_args([])).items() if not k.endswith("_file")}
print(json.dumps({"files": [rewarddance.__file__, rewarddance_server.__file__], "serve_defaults": defaults}))
"""


def probe(tree: Path, env: dict[str, str]) -> dict:
    """Which files ``import rewarddance`` / ``rewarddance_server`` load under ``env`` (must be ``tree``'s) and the
    ``serve`` defaults that code resolves to."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env}, cwd=ROOT, check=True, capture_output=True, text=True
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    for f in info["files"]:
        if not Path(f).resolve().is_relative_to(tree.resolve()):
            raise Failed(f"{f} is not inside {tree}: PYTHONPATH did not win over the installed package")
    return info


def tree_info(label: str, tree: Path, env: dict[str, str], base: str | None) -> dict:
    info = {
        "label": label,
        "tree": str(tree),
        "commit": git(tree, "rev-parse", "HEAD"),
        "subject": git(tree, "log", "-1", "--format=%s", "HEAD")[:160],
        "uncommitted_server_files": git(tree, "status", "--porcelain", "--", "src", "server").splitlines(),
        "env": env,
        "make_run_flags": make_run_flags(tree),
    } | probe(tree, env)
    if base:  # the server-side commits this tree has over the "before" tree
        span = f"{base}..{info['commit']}"
        info["server_commits_since_before"] = git(
            ROOT,
            "log",
            "--format=%h %s",
            span,
            "--",
            "server",
            "src/rewarddance/scoring",
            "src/rewarddance/preprocess.py",
        ).splitlines()
        info["server_commits_since_before"] = [c[:140] for c in info["server_commits_since_before"]]
    return info


# -- model ----------------------------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def served(url: str, samples: list[tuple[bytes, str]], per_request: int) -> dict:
    """One scoring request: the version served and the rewards (compared across gateways)."""
    chunk = samples[:per_request]
    body = {"prompt": chunk[0][1], "images": [base64.b64encode(b).decode() for b, _ in chunk]}
    r = httpx.post(f"{url}/v1/score", json=body, timeout=60)
    if r.status_code != 200:
        raise Failed(f"{url}/v1/score answered {r.status_code}: {r.text[:500]}")
    out = r.json()
    return {"model": out["model"], "rewards": [row["reward"] for row in out["results"]]}


# -- run ------------------------------------------------------------------------------------------------------------
def check(label: str, gateway: Gateway, point: dict) -> None:
    if point["failures"] or gateway.proc.poll() is not None:
        log = Path(gateway.log.name).read_text()[-2000:]
        raise Failed(f"{label}: {point['failures']} failed requests, exit code {gateway.proc.poll()}\n{log}")


def summary(rounds: list[dict]) -> dict:
    ips = [p["images_per_s"] for p in rounds]
    return {
        "images_per_s": ips,
        "images_per_s_mean": round(float(np.mean(ips)), 2),
        "images_per_s_std": round(float(np.std(ips, ddof=1)), 2) if len(ips) > 1 else None,
        "p50_ms": [p["p50_ms"] for p in rounds],
        "p99_ms": [p["p99_ms"] for p in rounds],
        "p50_ms_mean": round(float(np.mean([p["p50_ms"] for p in rounds])), 2),
        "p99_ms_mean": round(float(np.mean([p["p99_ms"] for p in rounds])), 2),
        "failures": sum(p["failures"] for p in rounds),
        "requests": sum(p["requests"] for p in rounds),
        "server_cpu_ms_per_image": [p["server_cpu_ms_per_image"] for p in rounds],
        "server_cpu_ms_per_image_mean": round(float(np.mean([p["server_cpu_ms_per_image"] for p in rounds])), 3),
        "loadavg": [p["loadavg"] for p in rounds],
    }


def ratio(after: dict, before: dict) -> dict:
    per_round = [a / b for a, b in zip(after["images_per_s"], before["images_per_s"], strict=True)]
    mean = after["images_per_s_mean"] / before["images_per_s_mean"]
    return {
        "mean": round(mean, 4),
        "per_round": [round(r, 4) for r in per_round],
        "min": round(min(per_round), 4),
        "max": round(max(per_round), 4),
        "within_5pct": mean >= THRESHOLD,
        "every_round_within_5pct": min(per_round) >= THRESHOLD,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "ladder" / "small-seed0", help="the pixel run")
    parser.add_argument("--scale", default="small", help="served as reward_<scale>")
    parser.add_argument("--before", default="5804ee4", help="the commit before the change (a worktree gateway)")
    parser.add_argument("--also", nargs="*", default=[], help="more worktree gateways, LABEL=REV")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per gateway per round")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of full load per gateway before round 1")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--images", type=int, default=8, help="images per request")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-hardening")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    try:
        run(args)
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def run(args) -> None:
    model = f"reward_{args.scale}"
    repo = args.work / "model_repository"
    build_repo({args.scale: args.run}, repo)
    samples = samples_from(args.run)

    before_rev = git(ROOT, "rev-parse", "--short", f"{args.before}^{{commit}}")
    specs = [("before", worktree(args.before))]
    specs += [(lbl, worktree(rev)) for lbl, _, rev in (a.partition("=") for a in args.also)]
    specs.append(("after", ROOT))
    trees = {}
    for label, tree in specs:
        env = {"PYTHONPATH": os.pathsep.join(str(tree / d) for d in PACKAGE_DIRS)} if tree != ROOT else {}
        trees[label] = tree_info(label, tree, env, None if label == "before" else before_rev)
        print(label, json.dumps(trees[label]["files"]), flush=True)
    env_set = {k: v for k, v in os.environ.items() if k.startswith("REWARDDANCE_") or k == "PYTHONPATH"}

    load_start = [round(x, 2) for x in os.getloadavg()]
    flops_start = matmul_flops()
    gateways: dict[str, Gateway] = {}
    points: dict[str, list[dict]] = {label: [] for label in trees}
    try:
        for label, info in trees.items():
            gateways[label] = Gateway(repo, model, info["make_run_flags"], env=info["env"])
            info["command"] = " ".join(shlex.quote(c) for c in gateways[label].cmd)
            info["startup_s"] = round(gateways[label].startup_s, 2)
            info["served"] = served(gateways[label].url, samples, args.images)
            version = info["served"]["model"]["version"]
            encoder = max(int(v.name) for v in (repo / "prompt_encoder").iterdir() if v.name.isdigit())
            files = [f"{model}/{version}/model.onnx", f"prompt_encoder/{encoder}/model.onnx"]  # what it loads
            info["onnx_sha256"] = {f: sha256(repo / f) for f in files}
        reference = trees["before"]["served"]["rewards"]
        for info in trees.values():
            info["max_abs_reward_diff_vs_before"] = float(
                np.max(np.abs(np.subtract(info["served"]["rewards"], reference)))
            )
            if info["max_abs_reward_diff_vs_before"] > 1e-3 or info["onnx_sha256"] != trees["before"]["onnx_sha256"]:
                raise Failed(f"{info['label']} does not serve the same model as before: {info}")
        for label, gateway in gateways.items():  # warm-up at full load, not recorded
            point = gateway_point(gateway.url, samples, args.concurrency, args.images, args.warmup, gateway.proc.pid)
            check(f"{label} warm-up", gateway, point)
        order = list(gateways)
        for r in range(args.rounds):
            for label in order if r % 2 == 0 else order[::-1]:
                gateway = gateways[label]
                others = [g.proc.pid for k, g in gateways.items() if k != label]
                idle0, t0 = sum(cpu_seconds(p) for p in others), time.time()
                point = gateway_point(
                    gateway.url, samples, args.concurrency, args.images, args.duration, gateway.proc.pid
                )
                point |= {"round": r + 1, "started": round(t0, 1)}
                point["other_gateways_cpu_s"] = round(sum(cpu_seconds(p) for p in others) - idle0, 3)
                check(f"{label} round {r + 1}", gateway, point)
                points[label].append(point)
                print(label, json.dumps(point), flush=True)
    finally:
        for label, gateway in gateways.items():
            trees[label]["peak_rss_mb"] = round(gateway.stop(), 1)

    machine_info = machine() | {"matmul_gflops": round(flops_start / 1e9, 1), "loadavg_start": load_start}
    machine_info |= {"matmul_gflops_end": round(matmul_flops() / 1e9, 1)}
    machine_info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {label: summary(p) for label, p in points.items()}
    payload = {
        "machine": machine_info,
        "command": command(),
        "env": env_set,
        "row": {
            "model": model,
            "run": str(args.run),
            "images_per_request": args.images,
            "concurrency": args.concurrency,
        },
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "threshold": THRESHOLD,
        "gateways": trees,
        "points": points,
        "results": results,
        "ratio": {label: ratio(results[label], results["before"]) for label in results if label != "before"},
    }
    png = args.out_dir / "hardening_throughput.png"
    write_result("hardening_throughput", payload, markdown(payload), args.out_dir)
    plot(payload, png)
    print(markdown(payload))


def markdown(payload: dict) -> str:
    m, row, trees = payload["machine"], payload["row"], payload["gateways"]
    ratio = payload["ratio"]["after"]
    verdict = "within" if ratio["within_5pct"] else "NOT within"
    lines = [
        "# Gateway throughput before and after the hardening (issue 17)",
        "",
        f"Row: {row['model']} ({row['run']}), {row['images_per_request']} images/request, concurrency "
        f"{row['concurrency']}; {payload['rounds']} rounds x {payload['duration_s']:g} s per gateway after a "
        f"{payload['warmup_s']:g} s warm-up each, the order alternating by round.",
        f"Machine: {m['processor']}, {m['cpus']} CPUs, Python {m['python']}; fp32 matmul {m['matmul_gflops']} GFLOP/s "
        f"at the start, {m['matmul_gflops_end']} at the end; load average {m['loadavg_start']} at the start, "
        f"{m['loadavg_end']} at the end.",
        f"Command: `{payload['command']}`"
        + (f" with `{' '.join(f'{k}={v}' for k, v in payload['env'].items())}`" if payload["env"] else ""),
        "",
        f"**after / before = {ratio['mean']:.3f}** (mean img/s; per round {ratio['min']:.3f} to {ratio['max']:.3f}): "
        f"{verdict} 5% of before (pass: >= {payload['threshold']}).",
        "",
    ]
    headers = ["gateway", "commit", "img/s per round", "mean img/s", "vs before", "p50 / p99 ms (mean of rounds)"]
    headers += ["failures", "server CPU ms/img", "load avg per round", "startup", "peak RSS"]
    table = []
    for label, res in payload["results"].items():
        t = trees[label]
        r = payload["ratio"].get(label)
        table.append(
            [
                label,
                t["commit"][:7] + (" (+uncommitted)" if t["uncommitted_server_files"] else ""),
                ", ".join(f"{x:g}" for x in res["images_per_s"]),
                res["images_per_s_mean"],
                f"{r['mean']:.3f} ({r['min']:.3f}–{r['max']:.3f})" if r else "1",
                f"{res['p50_ms_mean']} / {res['p99_ms_mean']}",
                res["failures"],
                res["server_cpu_ms_per_image_mean"],
                "; ".join("–".join(str(x) for x in la) for la in res["loadavg"]),
                f"{t['startup_s']} s",
                f"{t['peak_rss_mb']} MB",
            ]
        )
    lines += [markdown_table(headers, table), ""]
    sha = trees["before"]["onnx_sha256"]
    lines += ["Model files served by every gateway (sha256): " + "; ".join(f"{k} `{v[:16]}…`" for k, v in sha.items())]
    diffs = ", ".join(f"{k} {t['max_abs_reward_diff_vs_before']:.1e}" for k, t in trees.items() if k != "before")
    lines += [f"One request's rewards, max |difference| from before: {diffs}.", ""]
    before_defaults = trees["before"]["serve_defaults"]
    for label, t in trees.items():
        lines.append(
            f"- **{label}**: `{t['command']}`" + (f" with `PYTHONPATH={t['env']['PYTHONPATH']}`" if t["env"] else "")
        )
        if label != "before":
            changed = {
                k: (before_defaults.get(k, "—"), v)
                for k, v in t["serve_defaults"].items()
                if before_defaults.get(k) != v and k not in ("repo",)
            }
            if changed:
                lines.append(
                    "  serve defaults that differ from before: "
                    + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
                )
            if t.get("server_commits_since_before"):
                lines.append(f"  server commits since before: {len(t['server_commits_since_before'])}")
                lines += [f"  - {c}" for c in t["server_commits_since_before"]]
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    results = payload["results"]
    labels = list(results)
    n, width = payload["rounds"], 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 2 + 1.6 * n), 4.2))
    for i, label in enumerate(labels):
        x = np.arange(n) + (i - (len(labels) - 1) / 2) * width
        commit = payload["gateways"][label]["commit"][:7]
        mean = results[label]["images_per_s_mean"]
        bars = ax.bar(x, results[label]["images_per_s"], width, label=f"{label} ({commit}), mean {mean:g}")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.axhline(mean, color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ratio, row = payload["ratio"]["after"], payload["row"]
    top = max(max(r["images_per_s"]) for r in results.values())
    ax.set(
        xticks=np.arange(n),
        xticklabels=[f"round {r + 1}" for r in range(n)],
        ylabel="images/s",
        ylim=(0, 1.3 * top),
    )
    ax.set_title(
        f"{row['model']}, {row['images_per_request']} img/req, concurrency {row['concurrency']}\n"
        f"after / before {ratio['mean']:.3f} (rounds {ratio['min']:.3f}–{ratio['max']:.3f})",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper center", ncol=len(labels))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
