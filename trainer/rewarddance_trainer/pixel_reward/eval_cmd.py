"""Evaluate a trained pixel reward run on a dataset: Spearman vs mean ratings and vs gold, pair accuracy.

Examples:
  rewarddance eval reward --run runs/pixel-small --data data/shapes20k --split test
  rewarddance eval reward --run runs/pixel-small --data data/shapes-shifted --split all --out shifted.json
The prompt-state cache of DATA is built first when missing. Gold (the simulator's truth) is read here, for
reporting only; training never reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="finished pixel reward run (has run.json)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (gold/ is used when present)")
    parser.add_argument("--split", choices=("train", "val", "test", "all"), default="test")
    parser.add_argument("--max-prompts", type=int, default=0, help="a fixed draw of this many prompts (0: all)")
    parser.add_argument("--out", type=Path, default=None, help="also write the metrics here as JSON")
    parser.add_argument("--workers", type=int, default=1)


def evaluate_run(run: Path, data: Path, split: str = "test", max_prompts: int = 0, workers: int = 1) -> dict:
    import numpy as np

    from . import evaluate
    from .data import Tables
    from .model import load_model
    from .text import build_cache, load_cache
    from .train import fixed_draw

    model = load_model(run)
    build_cache(data, progress=False)
    tables = Tables.load(data)
    prompts = tables.prompt_rows(split)
    prompts = fixed_draw(prompts, max_prompts, 0)
    if len(prompts) == 0:
        raise ValueError(f"{data} has no prompts in split {split!r}")
    rows, c, r = evaluate.predict(model, tables, load_cache(data), prompts, workers)
    out = {"data": str(data), "split": split, "prompts": len(prompts)}
    out["in_domain"] = evaluate.metrics(tables, rows, c, r, model.weights.numpy())
    if (data / "gold" / "gold.parquet").exists():
        out["gold"] = evaluate.gold_metrics(data, tables.images.image_id.iloc[rows], c, r)
    card = json.loads((data / "card.json").read_text())
    out["noise_ceiling"] = card.get("noise_ceiling")
    out["world"] = card.get("world", "standard")
    out["mean_reward"] = float(np.mean(r))
    return out


def run(args: argparse.Namespace) -> int:
    if not (args.run / "run.json").exists():
        print(f"error: {args.run} is not a finished run (no run.json)", file=sys.stderr)
        return 2
    if not (args.data / "prompts.parquet").exists():
        print(f"error: {args.data} is not a dataset directory (no prompts.parquet)", file=sys.stderr)
        return 2
    try:
        result = evaluate_run(args.run, args.data, args.split, args.max_prompts, args.workers)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m, g = result["in_domain"], result.get("gold", {})
    print(
        f"{args.run} on {args.data} ({args.split}, {m['n_eval_images']} images): Spearman R {m['spearman_reward']:.3f}"
        f", pair accuracy {m['pair_accuracy']:.3f}"
    )
    for name in ("fidelity", "style", "composition", "novelty"):
        gold = f", vs gold {g[name]:.3f}" if name in g else ""
        print(f"  {name:<12} vs ratings {m[f'spearman_{name}']:.3f}{gold}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
