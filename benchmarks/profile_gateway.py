"""Where a gateway's CPU goes under load: py-spy samples of the gateway process (and of bare onnxruntime doing the
same work in-process), rendered as flame graphs (PNG) and a table of time per stage (issue 18).

    python benchmarks/profile_gateway.py --repo runs/bench-serving/model_repository --model reward_cpu-xs \\
        --samples-from runs/ladder/small-seed0 --images 8 --concurrency 16 --duration 20 --name before

A closed-loop load (the serving benchmark's) runs in a separate process, so the samples are the server's alone.
``--duration`` seconds of samples of every thread that is running (where the CPU goes; py-spy's ``--gil`` mode
finds no GIL holder with this interpreter build, so it is not used). Then the bare pipeline (decode + score, the
same images per call and threads) is sampled the same way. Results: benchmarks/results/profile-<name>.{json,md}
and docs/profile-<name>-{gateway,bare}.png (stacks with under 0.5% of the samples are left out of the picture).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import command, machine, markdown_table, write_result

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PY_SPY = Path(sys.executable).with_name("py-spy")

# (stage, substrings of a frame "function (file:line)"), first match from the top of the list wins for a stack
STAGES = [
    ("onnxruntime (session.run)", ["onnxruntime_inference_collection.py"]),
    ("image decode + resize", ["decode_image", "decode_images", "open_checked", "square_pixels", "load_pixels"]),
    ("base64 decode", ["decode_base64"]),
    ("JSON parse", ["_json_object", "_images_from_json", "_loads"]),
    ("response JSON", ["render (starlette", "render (rewarddance", "_result (", "dumps"]),
    ("prompt states (cache, stack)", ["prompt_features", "_score_pixels", "tokenizer"]),
    ("micro-batcher", ["batcher.py"]),
    ("service (validate, admission)", ["service.py", "admission.py"]),
    ("HTTP server (uvicorn, starlette, fastapi)", ["uvicorn", "starlette", "fastapi", "h11", "httptools"]),
    ("gRPC / metrics / logging", ["grpc", "prometheus", "logging"]),
    ("asyncio event loop", ["asyncio", "uvloop"]),
]


def stage_of(stack: str) -> str:
    for stage, needles in STAGES:
        if any(n in stack for n in needles):
            return stage
    return "other"


# -- sampling -------------------------------------------------------------------------------------------------------
def record(pid: int, seconds: float, out: Path, rate: int = 100) -> Counter:
    """py-spy's collapsed stacks of ``pid``'s running threads."""
    cmd = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate)]
    cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 300)
    stacks: Counter = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    return stacks


def load_process(url: str, args: argparse.Namespace, seconds: float) -> subprocess.Popen:
    """The serving benchmark's closed-loop load, in its own process (not sampled); returns once it is loaded."""
    code = (
        "import sys, json; sys.path.insert(0, 'benchmarks'); from pathlib import Path; import serving; "
        f"s = serving.samples_from(Path({str(args.samples_from)!r})); print('go', flush=True); "
        f"print(json.dumps(serving.gateway_point({url!r}, s, {args.concurrency}, {args.images}, {seconds})))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "go":
        raise RuntimeError("the load process did not start")
    return proc


BARE_WORKER = """
import sys, json, time, threading
sys.path.insert(0, 'benchmarks')
from pathlib import Path
import serving
from rewarddance.scoring.pipeline import RewardPipeline
pipeline = RewardPipeline(sys.argv[1], sys.argv[2]).load()
pipeline.warmup()
samples = serving.samples_from(Path(sys.argv[3]))
print('ready', flush=True)
time.sleep(1.0)
print(json.dumps(serving.bare_point(pipeline, samples, int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))))
"""


def profile_gateway(args: argparse.Namespace, work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from serving import Gateway

    gateway = Gateway(args.repo, args.model, args.gateway_args.split())
    out = {}
    try:
        load = load_process(gateway.url, args, args.duration + 4)
        time.sleep(2.0)  # the load's warm-up and connections
        out["gateway"] = record(gateway.proc.pid, args.duration, work / "gateway.txt")
        out["gateway_load"] = json.loads(load.communicate(timeout=120)[0].strip().splitlines()[-1])
    finally:
        gateway.stop()
    return out


def profile_bare(args: argparse.Namespace, work: Path) -> dict:
    cmd = [sys.executable, "-c", BARE_WORKER, str(args.repo), args.model, str(args.samples_from)]
    cmd += [str(args.concurrency), str(args.images), str(args.duration + 2)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the bare worker did not start")
    stacks = record(proc.pid, args.duration, work / "bare.txt")
    result = json.loads(proc.communicate(timeout=120)[0].strip().splitlines()[-1])
    return {"bare": stacks, "bare_load": result}


# -- pictures and tables --------------------------------------------------------------------------------------------
def _frames(stack: str) -> list[str]:
    """A stack's frames, root first, without py-spy's process and thread entries."""
    frames = stack.split(";")
    return [f for f in frames if not f.startswith(("process ", "thread ("))] or frames


def flame_png(stacks: Counter, title: str, path: Path, min_share: float = 0.005) -> None:
    """An icicle graph (root on top): each frame's width is its share of the samples."""
    total = sum(stacks.values())
    tree: dict = {}
    for stack, n in stacks.items():
        node = tree
        for frame in _frames(stack):
            entry = node.setdefault(frame, [0, {}])
            entry[0] += n
            node = entry[1]
    fig, ax = plt.subplots(figsize=(16, 9))
    depth_max = [0]
    cmap = plt.get_cmap("tab20")

    def draw(node: dict, x0: float, depth: int) -> None:
        x = x0
        for frame, (n, children) in sorted(node.items(), key=lambda kv: -kv[1][0]):
            width = n / total
            if width < min_share:
                continue
            ax.add_patch(plt.Rectangle((x, -depth - 1), width, 1, color=cmap(hash(frame.split(" (")[0]) % 20), ec="w"))
            if width > 0.03:
                name = frame.split(" (")[0]
                where = frame.rpartition("/")[2].rstrip(")") if "(" in frame else ""
                ax.text(x + 0.002, -depth - 0.5, f"{name} {where}"[: int(width * 180)], va="center", fontsize=6.5)
            depth_max[0] = max(depth_max[0], depth + 1)
            draw(children, x, depth + 1)
            x += width

    draw(tree, 0.0, 0)
    ax.set(xlim=(0, 1), ylim=(-depth_max[0] - 0.2, 0.2), title=f"{title} ({total} samples)")
    ax.set_xlabel("share of samples")
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_shares(stacks: Counter) -> dict[str, float]:
    total = sum(stacks.values()) or 1
    shares: Counter = Counter()
    for stack, n in stacks.items():
        shares[stage_of(stack)] += n
    return {stage: round(n / total, 4) for stage, n in shares.most_common()}


def markdown(payload: dict) -> str:
    windows = [w for w in ("gateway", "bare") if w in payload["stages"]]
    stages = list(dict.fromkeys(s for w in windows for s in payload["stages"][w]))
    rows = [[s, *(f"{100 * payload['stages'][w].get(s, 0):.1f}%" for w in windows)] for s in stages]
    loads = [f"{w}: {payload['loads'][w]['images_per_s']} images/s" for w in payload["loads"]]
    return "\n".join(
        [
            f"# Profile `{payload['name']}`",
            "",
            f"Command: `{payload['command']}`; load average {payload['loadavg_before']} before, "
            f"{payload['loadavg_after']} after. Throughput while sampled: {'; '.join(loads)}.",
            "",
            "Share of py-spy samples per stage: gateway = every running thread of the gateway process, bare = the "
            "same pipeline in-process (threads inside onnxruntime count as running). Pictures: "
            + ", ".join(f"docs/profile-{payload['name']}-{w}.png" for w in windows)
            + ".",
            "",
            markdown_table(["stage", *windows], rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--samples-from", type=Path, required=True, help="a run whose run.json names its dataset")
    parser.add_argument("--images", type=int, default=8, help="images per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per sampled window")
    parser.add_argument("--gateway-args", default="", help="extra `rewarddance serve` flags, one string")
    parser.add_argument("--name", default="gateway", help="result and picture names")
    parser.add_argument("--no-bare", action="store_true")
    args = parser.parse_args()

    before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        sampled = profile_gateway(args, Path(tmp))
        if not args.no_bare:
            sampled |= profile_bare(args, Path(tmp))
    windows = [w for w in ("gateway", "bare") if w in sampled]
    titles = {"gateway": "gateway, running threads", "bare": "bare pipeline, running threads"}
    for w in windows:
        title = f"{args.name}: {titles[w]}, {args.images} img/req, c{args.concurrency}"
        flame_png(sampled[w], title, DOCS / f"profile-{args.name}-{w}.png")
    payload = {
        "name": args.name,
        "machine": machine(),
        "command": command(),
        "loadavg_before": before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "stages": {w: stage_shares(sampled[w]) for w in windows},
        "loads": {w: sampled[f"{w}_load"] for w in windows},
        "top_stacks": {w: [[s, n] for s, n in sampled[w].most_common(25)] for w in windows},
    }
    write_result(f"profile-{args.name}", payload, markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
