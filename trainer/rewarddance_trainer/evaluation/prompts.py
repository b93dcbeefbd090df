"""Evaluation prompts and their reference images: held-out dataset prompts or fresh shapes-world prompts, and the
faithful renders of each prompt's scene (the real set of FID / KID)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..oracle.parse import parse_prompt
from ..shapes.candidates import realize
from ..shapes.prompts import describe, sample_spec
from ..shapes.render import render


def eval_prompts(n: int, data: Path | None = None, split: str = "test", seed: int = 0) -> list[str]:
    """``n`` prompts: a fixed draw of ``data``'s ``split`` (held out from generator training), or, without
    ``data``, fresh shapes-world prompts from ``seed``."""
    if n < 1:
        raise ValueError(f"--prompts must be >= 1, got {n}")
    if data is None:
        rng = np.random.default_rng([seed, 1616])
        return [describe(sample_spec(rng), rng) for _ in range(n)]
    import pandas as pd

    prompts = pd.read_parquet(Path(data) / "prompts.parquet", columns=["text", "split"])
    texts = prompts.text[prompts.split == split].to_numpy()
    if len(texts) < n:
        raise ValueError(f"{data} has {len(texts)} {split} prompts, fewer than the {n} asked for")
    return [str(t) for t in np.random.default_rng([seed, 1616]).choice(texts, n, replace=False)]


def reference_renders(prompts: list[str], n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (len(prompts) * n, size, size, 3), prompt-major: ``n`` faithful renders of each prompt's parsed scene
    (free attributes and placement drawn per render)."""
    out = []
    for p, text in enumerate(prompts):
        rng = np.random.default_rng([seed, 2727, p])
        spec = parse_prompt(text)
        out += [render(realize(spec, rng), size=size, seed=rng) for _ in range(n)]
    return np.stack(out)
