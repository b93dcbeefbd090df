"""The one interface every component scorer shares: features in, scores in [0, 1] out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

COMPONENTS = ("fidelity", "style", "composition", "novelty")


@dataclass
class FeatureBatch:
    """Per-image inputs; a scorer uses the fields it needs and says which in ``requires``.

    Embeddings are L2-normalised rows. ``pixels`` are the images as decoded for the encoder (uint8 RGB).
    """

    image_embeddings: np.ndarray | None = None  # (n, d)
    prompt_embeddings: np.ndarray | None = None  # (n, d): the prompt of each image, repeated as needed
    pixels: np.ndarray | None = None  # (n, h, w, 3) uint8
    prompts: list[str] | None = None
    target_styles: list[str | None] | None = None  # from the request; None -> recognised in the prompt

    def __len__(self) -> int:
        for value in (self.image_embeddings, self.pixels, self.prompts):
            if value is not None:
                return len(value)
        return 0

    def need(self, *fields: str) -> None:
        missing = [f for f in fields if getattr(self, f) is None]
        if missing:
            raise ValueError(f"this scorer needs {', '.join(missing)} in the feature batch")


class ComponentScorer(Protocol):
    name: str

    def score(self, batch: FeatureBatch) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...


def save_arrays(directory: Path, name: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """A scorer's fitted state: ``<name>.npz`` for arrays and ``<name>.json`` for everything else."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"{name}.npz", **arrays)
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_arrays(directory: Path, name: str) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(directory / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((directory / f"{name}.json").read_text())
