"""Train the transformer reward model (MSE on the component ratings + Bradley-Terry on preferences); resumable.

Examples:
  rewarddance train reward --data data/shapes2k --scale small --out runs/reward-small --steps 3000 --warmup 100 \
      --eval-every 100 --patience 5
  rewarddance train reward --data data/shapes2k --scale small --out runs/reward-small-cv --cv 5
  torchrun --standalone --nproc_per_node 2 -m rewarddance.cli train reward --data data/shapes2k --out runs/r2
The feature cache defaults to the only one under DATA/features/; the component scorers (for the style text
embeddings) default to the ``components/`` folder of the encoder run that built the cache. The run keeps the step
with the best val Spearman R (evaluated every ``--eval-every`` steps) and tests it once on the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .config import RewardTrainConfig, scales

DEFAULTS = RewardTrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--features", type=Path, default=None, help="feature cache (default: the one in DATA/features)")
    parser.add_argument("--components", type=Path, default=None, help="fitted components (default ENCODER/components)")
    parser.add_argument("--scale", choices=scales(), default=DEFAULTS.scale, help="architecture (configs/<scale>.json)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="rated images and pairs per step")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    parser.add_argument("--warmup", type=int, default=DEFAULTS.warmup, help="linear warmup steps before the cosine")
    parser.add_argument("--no-mse", dest="mse", action="store_false", help="switch off the MSE loss on the heads")
    parser.add_argument("--no-bt", dest="bt", action="store_false", help="switch off the Bradley-Terry loss on R")
    parser.add_argument("--mse-weight", type=float, default=DEFAULTS.mse_weight, help="loss = w * MSE + BT")
    parser.add_argument(
        "--eval-every", type=int, default=DEFAULTS.eval_every, help="steps between val evaluations (model selection)"
    )
    parser.add_argument(
        "--patience", type=int, default=DEFAULTS.patience, help="stop after N evals without a better val R; 0 = never"
    )
    parser.add_argument("--ckpt-every", type=int, default=DEFAULTS.ckpt_every)
    parser.add_argument("--time-limit", type=float, default=DEFAULTS.time_limit, help="seconds; 0 = no limit")
    parser.add_argument("--dropout", type=float, default=None, help="override the scale's dropout")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    folds = parser.add_mutually_exclusive_group()
    folds.add_argument("--cv", type=int, default=None, metavar="K", help="K-fold cross-validation on the fold column")
    folds.add_argument("--leave-one-style-out", action="store_true", help="hold out each style in turn")
    parser.add_argument("--no-progress", action="store_true")


def _feature_cache(args: argparse.Namespace) -> Path:
    if args.features is not None:
        return args.features
    caches = sorted(p for p in (args.data / "features").glob("*") if (p / "meta.json").exists())
    if len(caches) != 1:
        found = ", ".join(str(p) for p in caches) or "none"
        raise ValueError(f"pass --features: {args.data / 'features'} must hold exactly one cache, found {found}")
    return caches[0]


def _inputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(feature cache, components dir), each checked to exist with a message saying which command makes it."""
    if not (args.data / "prompts.parquet").exists():
        raise ValueError(f"{args.data} is not a dataset directory (no prompts.parquet)")
    features = _feature_cache(args)
    meta = features / "meta.json"
    if not meta.exists() or not json.loads(meta.read_text()).get("complete"):
        raise ValueError(f"no finished feature cache at {features}; run `rewarddance data embed` first")
    components = args.components or Path(json.loads(meta.read_text())["identity"]["encoder"]) / "components"
    if not (components / "style.npz").exists():
        raise ValueError(
            f"no fitted components at {components}; run `rewarddance train components` or pass --components"
        )
    return features, components


def run(args: argparse.Namespace) -> int:
    try:
        cfg = RewardTrainConfig(**{f.name: getattr(args, f.name) for f in fields(RewardTrainConfig)})
        features, components = _inputs(args)
        from .train import train

        result = train(
            args.data,
            features,
            components,
            args.out,
            cfg,
            cv=args.cv,
            leave_one_style_out=args.leave_one_style_out,
            progress=not args.no_progress,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result:
        print(_report(result, args.out))
    return 0


def _report(result: dict, out: Path) -> str:
    if "folds" in result:
        mean, std = result["mean"], result["std"]
        return (
            f"{result['kind']} over {len(result['folds'])} folds: Spearman R {mean['spearman_reward']:.3f} ± "
            f"{std['spearman_reward']:.3f}, pair accuracy {mean['pair_accuracy']:.3f} ± {std['pair_accuracy']:.3f}; "
            f"table {out / (result['kind'] + '.md')}"
        )
    m, v = result["metrics"], result["val_metrics"]
    line = (
        f"{result['parameters']:,} parameters, {result['steps_done']} steps, selected step {result['selected_step']} "
        f"(val Spearman R {v['spearman_reward']:.3f}): test Spearman R {m['spearman_reward']:.3f}, "
        f"pair accuracy {m['pair_accuracy']:.3f}"
    )
    ceiling = result["vs_noise_ceiling"]
    if ceiling:
        line += (
            f" (noise ceiling {ceiling['spearman_reward']['ceiling']:.3f} / {ceiling['pair_accuracy']['ceiling']:.3f})"
        )
    return line + f"; weights {out / 'reward.safetensors'}"
