"""Average the weights of finished pixel reward runs fine-tuned from the same run (a "model soup"): one model, the
cost of one at serving time.

Examples:
  rewarddance train soup --runs runs/stage12/a runs/stage12/b --out runs/stage12/soup

Arms trained from one starting point (same ``--init``, other seeds or other datasets) stay in one basin, so the
mean of their weights is a model of its own, usually a little better than each arm (Wortsman et al., 2022). The
soup is tested on the first arm's dataset (val and test split, the draws training uses) and written as a run
directory: reward.safetensors + run.json (the first arm's, with ``soup``: every arm's path, seed, data and
metrics; wall time and images summed over the arms, since each was trained), so export, eval and further
stages take it like any run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="finished runs, one starting point")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--workers", type=int, default=1, help="loader workers for the evaluation")


def _run_json(run: Path) -> dict:
    from .model import MANIFEST_FILE, WEIGHTS_FILE

    if not (run / MANIFEST_FILE).exists() or not (run / WEIGHTS_FILE).exists():
        raise ValueError(f"{run} is not a finished pixel reward run (needs {MANIFEST_FILE} and {WEIGHTS_FILE})")
    return json.loads((run / MANIFEST_FILE).read_text())


def _start(run_json: dict) -> str | None:
    init = run_json.get("init")
    return None if init is None else str(Path(init["path"]).resolve())


def average(runs: list[Path]) -> tuple[dict, list[dict]]:
    """The mean of the runs' weights (float tensors; the rest from the first run) and their run.json records; refuses
    runs of other architectures or starting points, whose mean is no model."""
    import torch
    from safetensors.torch import load_file

    from .model import WEIGHTS_FILE

    if len(runs) < 2:
        raise ValueError("a soup needs at least two runs")
    run_infos = [_run_json(r) for r in runs]
    if _start(run_infos[0]) is None:
        raise ValueError(f"{runs[0]} was trained from scratch: a soup's arms are fine-tuned from one run (--init)")
    for run, m in zip(runs[1:], run_infos[1:], strict=True):
        if m["model"] != run_infos[0]["model"]:
            raise ValueError(f"{run} has another architecture than {runs[0]}")
        if _start(m) != _start(run_infos[0]):
            raise ValueError(f"{run} did not start from the same weights as {runs[0]} (run.json init)")
    states = [load_file(r / WEIGHTS_FILE) for r in runs]
    soup = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            soup[name] = torch.stack([s[name].float() for s in states]).mean(0).to(first.dtype)
        else:
            soup[name] = first
    return soup, run_infos


def make_soup(runs: list[Path], out: Path, workers: int = 1) -> dict:
    """Write the soup of ``runs`` into ``out`` and return its run.json record (metrics on the first run's dataset)."""
    from safetensors.torch import save_file

    from . import evaluate
    from .data import Tables
    from .model import MANIFEST_FILE, WEIGHTS_FILE, model_from
    from .text import load_cache
    from .train import fixed_draw

    weights, run_infos = average(runs)
    first = run_infos[0]
    model = model_from(first, weights)
    data = Path(first["data"]["path"])
    tables, states = Tables.load(data), load_cache(data)
    cfg = first["train"]
    hold_out = cfg.get("hold_out_style", "")
    measured = {}
    for split, n in (("val", cfg["val_prompts"]), ("test", cfg["test_prompts"])):
        prompts = fixed_draw(tables.prompt_rows(split, hold_out), n)
        rows, c, r = evaluate.predict(model, tables, states, prompts, workers)
        measured[split] = evaluate.metrics(tables, rows, c, r, model.weights.numpy())
    run_info = dict(first)
    run_info["val_metrics"], run_info["metrics"] = measured["val"], measured["test"]
    run_info["wall_seconds"] = round(sum(m["wall_seconds"] for m in run_infos), 2)
    run_info["samples_seen"] = sum(m["samples_seen"] for m in run_infos)
    run_info["soup"] = {
        "members": [
            {
                "path": str(run),
                "seed": m["train"]["seed"],
                "data": m["data"]["path"],
                "steps_done": m["steps_done"],
                "selected_step": m["selected_step"],
                "wall_seconds": m["wall_seconds"],
                "samples_seen": m["samples_seen"],
                "metrics": m["metrics"],
            }
            for run, m in zip(runs, run_infos, strict=True)
        ],
        "evaluated_on": str(data),
    }
    # run.json last: a directory with one is a finished soup (bootstrap resumes on it), never a half-written one
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, out / WEIGHTS_FILE)
    (out / MANIFEST_FILE).write_text(json.dumps(run_info, indent=2) + "\n")
    return run_info


def run(args: argparse.Namespace) -> int:
    try:
        m = make_soup(args.runs, args.out, args.workers)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    arms = ", ".join(f"{a['metrics']['spearman_reward']:.3f}" for a in m["soup"]["members"])
    t = m["metrics"]
    print(
        f"soup of {len(args.runs)} runs -> {args.out}: test Spearman R {t['spearman_reward']:.3f} (arms {arms}), "
        f"fidelity {t['spearman_fidelity']:.3f}, pair accuracy {t['pair_accuracy']:.3f}"
    )
    return 0
