"""Training images and prompt states for the generator.

From a reward dataset: the images the simulator rendered without errors (``settings.perturbations == []``; the
generator should learn faithful images, not the controlled errors) of the prompts in the chosen splits (default
``train`` and ``val``; ``test`` stays held out for the quality benchmark). Optionally ``synthetic`` extra prompts
rendered directly by the shapes renderer from a separate seed (more prompt variety for the same budget). Only
``prompts.parquet``, ``images.parquet`` and the image files are read, never ``gold/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass
class TrainSet:
    pixels: torch.Tensor  # (n, 3, s, s) uint8
    prompt_index: torch.Tensor  # (n,) int64 into prompts
    prompts: list[str]
    states: torch.Tensor  # (p, L, d) float32 MiniLM token states
    mask: torch.Tensor  # (p, L) bool
    null_states: torch.Tensor  # (L, d): the empty prompt
    null_mask: torch.Tensor  # (L,)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def load_image(path: Path, size: int) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BOX if img.size[0] % size == 0 else Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def dataset_examples(data: Path, splits: tuple[str, ...], size: int) -> tuple[list[np.ndarray], list[str]]:
    import pandas as pd

    prompts = pd.read_parquet(data / "prompts.parquet")
    images = pd.read_parquet(data / "images.parquet")
    keep = prompts[prompts["split"].isin(splits)].set_index("prompt_id")["text"]
    images = images[images["prompt_id"].isin(keep.index)]
    clean = images["settings"].map(lambda s: not json.loads(s or "{}").get("perturbations"))
    images = images[clean]
    if images.empty:
        raise ValueError(f"no error-free images of splits {splits} in {data}")
    pixels = [load_image(data / p, size) for p in images["path"]]
    return pixels, [str(keep[pid]) for pid in images["prompt_id"]]


def synthetic_examples(n_prompts: int, size: int, seed: int, per_prompt: int = 2) -> tuple[list[np.ndarray], list[str]]:
    from ..shapes.candidates import realize
    from ..shapes.prompts import describe, sample_spec
    from ..shapes.render import render

    rng = np.random.default_rng([seed, 8008])
    pixels, texts = [], []
    for _ in range(n_prompts):
        spec = sample_spec(rng)
        text = describe(spec, rng)
        for _ in range(per_prompt):
            pixels.append(render(realize(spec, rng), size=size, seed=rng))
            texts.append(text)
    return pixels, texts


def build_trainset(
    data: Path | None,
    size: int,
    splits: tuple[str, ...] = ("train", "val"),
    synthetic: int = 0,
    seed: int = 0,
    text=None,
) -> TrainSet:
    from .text import encode_prompts, load_minilm

    pixels, texts = [], []
    if data is not None:
        pixels, texts = dataset_examples(Path(data), splits, size)
    if synthetic:
        p, t = synthetic_examples(synthetic, size, seed)
        pixels += p
        texts += t
    if not pixels:
        raise ValueError("no training images: give --data and/or --synthetic")
    unique = sorted(set(texts))
    index = {t: i for i, t in enumerate(unique)}
    model, tokenizer = text or load_minilm()
    states, mask = encode_prompts(model, tokenizer, [*unique, ""])
    return TrainSet(
        pixels=torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(),
        prompt_index=torch.tensor([index[t] for t in texts]),
        prompts=unique,
        states=states[:-1],
        mask=mask[:-1],
        null_states=states[-1],
        null_mask=mask[-1],
    )
