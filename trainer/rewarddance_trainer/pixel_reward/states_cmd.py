"""Compute the prompt-state cache (frozen MiniLM token states of every prompt) the pixel reward model trains on.

Example: rewarddance data prompt-states data/shapes20k   (writes DATA/prompt_states/minilm-l6/; resumable)
         rewarddance data prompt-states data/shapes20k --edited   (also each prompt's one-attribute edit, for
         training with --edit-swap-weight)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="dataset directory")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--edited", action="store_true", help="also the states of each prompt with one colour/shape/position changed"
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if not (args.data / "prompts.parquet").exists():
        print(f"error: {args.data} is not a dataset directory (no prompts.parquet)", file=sys.stderr)
        return 2
    from .text import build_cache

    out = build_cache(args.data, args.batch, progress=not args.no_progress)
    print(f"prompt states in {out}")
    if args.edited:
        print(f"edited prompt states in {build_cache(args.data, args.batch, not args.no_progress, edited=True)}")
    return 0
