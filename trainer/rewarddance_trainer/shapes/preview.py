"""Write a contact sheet PNG of a dataset: images with their prompts, gold scores and perturbations.

Example: rewarddance data preview data/shapes --out sheet.png --prompts 8
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ..data import schema

TILE = 128
CAPTION = 30
HEADER = 34


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def contact_sheet(root: Path, out: Path, n_prompts: int = 8, per_prompt: int = 8) -> Path:
    """One row per prompt: the prompt text, then its first ``per_prompt`` images with gold scores when known."""
    layout = schema.Layout(Path(root))
    prompts = pd.read_parquet(layout.table("prompts")).head(n_prompts)
    images = pd.read_parquet(layout.table("images"))
    gold = _read(layout.gold_table("gold"))
    gold = gold.set_index("image_id") if gold is not None else None
    rows = [images[images.prompt_id == pid].head(per_prompt) for pid in prompts.prompt_id]
    cols = max((len(r) for r in rows), default=1)
    width = max(cols * TILE, 640)
    sheet = Image.new("RGB", (width, len(rows) * (HEADER + TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    small, text_font = _font(10), _font(12)
    y = 0
    for (_, prompt), row in zip(prompts.iterrows(), rows, strict=True):
        style = "no style" if pd.isna(prompt["style"]) else prompt["style"]
        header = f"{prompt.prompt_id} [{style}] {prompt.text}"
        draw.multiline_text((4, y + 2), "\n".join(textwrap.wrap(header, width // 7)[:2]), fill="black", font=text_font)
        y += HEADER
        for j, (_, img) in enumerate(row.iterrows()):
            tile = Image.open(layout.root / img.path).convert("RGB").resize((TILE, TILE), Image.NEAREST)
            sheet.paste(tile, (j * TILE, y))
            perturbations = json.loads(img.settings).get("perturbations", []) if img.settings else []
            caption = ",".join(p.replace("wrong_", "-").replace("_", " ") for p in perturbations) or "faithful"
            if gold is not None and img.image_id in gold.index:
                g = gold.loc[img.image_id]
                scores = f"P{g.fidelity:.2f} S{g['style']:.2f} C{g.composition:.2f} N{g.novelty:.2f}"
                caption = f"{scores}\n{caption[:24]}"
            draw.multiline_text((j * TILE + 2, y + TILE + 1), caption, fill="black", font=small)
        y += TILE + CAPTION
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--prompts", type=int, default=8, help="rows (prompts) in the sheet")
    parser.add_argument("--per-prompt", type=int, default=8, help="images per row")


def run(args: argparse.Namespace) -> int:
    if not schema.Layout(args.data).table("prompts").exists():
        print(f"error: {args.data} is not a dataset directory (no prompts.parquet)", file=sys.stderr)
        return 2
    print(contact_sheet(args.data, args.out, args.prompts, args.per_prompt))
    return 0
