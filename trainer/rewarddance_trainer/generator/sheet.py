"""Contact sheets: one row of images per prompt, the prompt written above its row."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def contact_sheet(
    rows: list[tuple[str, list[np.ndarray]]], path: Path | str, cell: int = 96, pad: int = 4, wrap: int = 0
) -> Path:
    """Write a PNG: for each (caption, images) a caption strip then the images upscaled to ``cell`` px (nearest)."""
    font = ImageFont.load_default()
    n_cols = max(len(images) for _, images in rows)
    width = pad + n_cols * (cell + pad)
    wrap = wrap or max(20, width // 6)
    captions = [textwrap.wrap(caption, wrap)[:3] or [""] for caption, _ in rows]
    height = pad + sum(12 * len(c) + 2 + cell + pad for c in captions)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for (_, images), lines in zip(rows, captions, strict=True):
        for line in lines:
            draw.text((pad, y), line, fill=(0, 0, 0), font=font)
            y += 12
        y += 2
        for j, img in enumerate(images):
            tile = Image.fromarray(np.asarray(img, dtype=np.uint8)).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (pad + j * (cell + pad), y))
        y += cell + pad
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
