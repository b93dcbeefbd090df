"""Train the contrastive image encoder (LiT-style, frozen pretrained text tower); resumable.

Example: rewarddance train encoder --data data/shapes2k --out runs/encoder --steps 1500
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .config import EncoderTrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    for f in fields(EncoderTrainConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"(default {f.default})"
        )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--finalize",
        action="store_true",
        help="stop early: publish the run's last checkpoint as the encoder (same settings as the run)",
    )


def run(args: argparse.Namespace) -> int:
    from .train import finalize, train

    cfg = EncoderTrainConfig(**{f.name: getattr(args, f.name) for f in fields(EncoderTrainConfig)})
    if not (args.data / "prompts.parquet").exists():
        print(f"error: {args.data} is not a dataset directory (no prompts.parquet)", file=sys.stderr)
        return 2
    try:
        if args.finalize:
            meta = finalize(args.data, args.out, cfg)
        else:
            meta = train(args.data, args.out, cfg, progress=not args.no_progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    r = meta["test_retrieval"]
    print(
        f"held-out retrieval over {r['n']} prompts: image->text R@1 {r['i2t_r1']:.3f}, "
        f"text->image R@1 {r['t2i_r1']:.3f}; weights {args.out / 'encoder.safetensors'}"
    )
    return 0
