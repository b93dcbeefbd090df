"""Encode every image and prompt of a dataset once into a feature cache (resumable, with progress).

Example: rewarddance data embed --data data/shapes2k --encoder runs/encoder   # -> data/shapes2k/features/encoder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--encoder", type=Path, required=True, help="encoder run directory (rewarddance train encoder)")
    parser.add_argument("--out", type=Path, default=None, help="cache directory (default DATA/features/<encoder name>)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    for path, what in ((args.data / "prompts.parquet", "a dataset"), (args.encoder / "encoder.json", "an encoder run")):
        if not path.exists():
            print(f"error: {path.parent} is not {what} (no {path.name})", file=sys.stderr)
            return 2
    from .embed import embed_dataset

    out = args.out or args.data / "features" / args.encoder.resolve().name
    embed_dataset(args.data, args.encoder, out, batch=args.batch_size, progress_bar=not args.no_progress)
    print(f"feature cache: {out}")
    return 0
