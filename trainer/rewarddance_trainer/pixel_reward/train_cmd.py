"""Train the pixel reward model (v2: looks at the pixels, reads the prompt's MiniLM token states); resumable.

Examples:
  rewarddance data prompt-states data/shapes20k
  rewarddance train pixel-reward --data data/shapes20k --scale small --out runs/pixel-small --steps 2000

Every flag below the first three comes from ``PixelTrainConfig`` (its defaults are the recipe's). Rerun the same
command to resume from the last checkpoint. The run keeps the step with the best val Spearman R and tests it once
on the test split; ``rewarddance export --run RUN`` turns it into one ONNX graph from pixels to components and R.
``--init RUN`` fine-tunes from that run's weights, e.g. on people's votes (``rewarddance data import ab-votes``): a
dataset with pairs only trains on the Bradley-Terry term (and the label-free prompt-swap term), and selects the
step by val pair accuracy.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .config import PixelTrainConfig, scales


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--init", type=Path, default=None, help="start from this run's weights (fine-tuning)")
    for f in fields(PixelTrainConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "scale":
            parser.add_argument(flag, choices=scales(), default=f.default, help=f"configs/<scale>.json ({f.default})")
        elif f.name == "dropout":
            parser.add_argument(flag, type=float, default=None, help="override the scale's dropout")
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f"(default {f.default})")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = PixelTrainConfig(**{f.name: getattr(args, f.name) for f in fields(PixelTrainConfig)})
        if not (args.data / "prompts.parquet").exists():
            raise ValueError(f"{args.data} is not a dataset directory (no prompts.parquet)")
        from .train import train

        m = train(args.data, args.out, cfg, progress=not args.no_progress, init=args.init)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t, ceiling = m["metrics"], (m.get("noise_ceiling") or {}).get("spearman_vs_mean_rating", {})
    limit = ceiling.get("reward", float("nan"))
    print(
        f"{m['parameters']:,} parameters, {m['steps_done']} steps in {m['wall_seconds']:.0f} s, selected step "
        f"{m['selected_step']}: test Spearman R {t['spearman_reward']:.3f} (ceiling {limit:.3f}), "
        f"fidelity {t['spearman_fidelity']:.3f}, pair accuracy {t['pair_accuracy']:.3f}; weights {args.out}"
    )
    return 0
