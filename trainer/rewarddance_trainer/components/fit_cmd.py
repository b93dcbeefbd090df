"""Fit the component scorers (P calibration, style probe, composition probe, novelty bank) on the train split.

Example: rewarddance train components --data data/shapes2k --encoder runs/encoder   # -> runs/encoder/components
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--encoder", type=Path, required=True, help="encoder run directory")
    parser.add_argument("--features", type=Path, default=None, help="feature cache (default DATA/features/<encoder>)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default ENCODER/components)")


def run(args: argparse.Namespace) -> int:
    features = args.features or args.data / "features" / args.encoder.resolve().name
    if not (features / "meta.json").exists() or not json.loads((features / "meta.json").read_text()).get("complete"):
        print(f"error: no finished feature cache at {features}; run `rewarddance data embed` first", file=sys.stderr)
        return 2
    fit_and_save(args.data, features, args.encoder, args.out or args.encoder / "components")
    return 0


def fit_and_save(data: Path, features: Path, encoder_run: Path, out: Path) -> Path:
    """Fit the four scorers on the train split of ``data`` and save them to ``out``."""
    import numpy as np

    from ..encoders.model import Encoder
    from ..shapes.world import STYLE_WORDS
    from .fit import Table, fit_components, style_text_embeddings

    table = Table.load(data, features)
    encoder = Encoder.load(encoder_run)
    temperature = encoder.model.logit_scale.exp().clamp(max=100).item()
    rows = np.flatnonzero(table.images.split.to_numpy() == "train")
    components = fit_components(table, rows, style_text_embeddings(encoder, STYLE_WORDS), temperature)
    out.mkdir(parents=True, exist_ok=True)
    components.save(
        out,
        {
            "encoder": str(encoder_run),
            "features": str(features),
            "fit_rows": len(rows),
            "style_mode": components.style.mode,
        },
    )
    print(f"components fitted on {len(rows)} train images -> {out}")
    return out
