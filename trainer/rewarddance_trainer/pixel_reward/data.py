"""Training data for the pixel reward model, from the human tables only (never gold/), streamed from disk.

A step's batch is ``prompts_per_batch`` prompts with all their candidates (up to ``images_per_prompt``), so the
within-prompt ranking (most of the utility's variance) is in every batch: the listwise and Bradley-Terry terms
compare candidates of the same prompt. ``PromptGroups`` is a map-style dataset over prompts whose items decode
that prompt's PNGs; a ``DataLoader`` with worker processes reads them ahead of the training step, so no image is
held in memory beyond the batches in flight. Prompt token states come from the memory-mapped prompt-state cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewarddance.components.base import COMPONENTS
from rewarddance.preprocess import load_pixels

from ..data import schema

PAIR_TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5}


@dataclass
class Tables:
    """Images (in images.parquet order) with their prompt, split and mean ratings; pairs as image rows."""

    root: Path
    images: pd.DataFrame  # image_id, prompt_id, path, prompt_row, text, style, split, <component>_rating
    prompts: pd.DataFrame  # prompt_id, text, style, split (prompts.parquet order = prompt_row)
    pair_rows: np.ndarray  # (m, 2) image rows of image_a, image_b
    pair_target: np.ndarray  # (m,) P(a preferred)

    @classmethod
    def load(cls, data: Path) -> Tables:
        layout = schema.Layout(data)
        prompts = pd.read_parquet(layout.table("prompts")).reset_index(drop=True)
        prompts["prompt_row"] = prompts.index
        images = pd.read_parquet(layout.table("images"), columns=["image_id", "prompt_id", "path"])
        ratings = pd.read_parquet(layout.table("ratings")).groupby("image_id")[list(COMPONENTS)].mean()
        images = images.merge(prompts, on="prompt_id", how="left").join(ratings.add_suffix("_rating"), on="image_id")
        pairs = pd.read_parquet(layout.table("pairs"), columns=["image_a", "image_b", "winner"])
        row_of = pd.Series(np.arange(len(images)), index=images.image_id)
        rows = np.stack([row_of.loc[pairs.image_a].to_numpy(), row_of.loc[pairs.image_b].to_numpy()], axis=1)
        target = pairs.winner.map(PAIR_TARGET).to_numpy(dtype=np.float32)
        return cls(data, images, prompts, rows.reshape(-1, 2), target)

    @cached_property
    def targets(self) -> np.ndarray:
        """(n, 4) mean rating mapped to [0, 1]; NaN where unrated."""
        cols = [f"{c}_rating" for c in COMPONENTS]
        return ((self.images[cols].to_numpy(dtype=np.float64) - 1) / 4).astype(np.float32)

    def prompt_rows(self, split: str, hold_out_style: str = "") -> np.ndarray:
        """Prompts of ``split`` ("all" for every split); with ``hold_out_style`` the test part is every prompt of
        that style and the other parts are the split's prompts of the other styles (unstyled ones included)."""
        styles = self.prompts["style"].fillna("").to_numpy()
        chosen = np.ones(len(self.prompts), bool) if split == "all" else (self.prompts.split == split).to_numpy()
        if hold_out_style:
            if hold_out_style not in set(styles):
                raise ValueError(f"no prompt has style {hold_out_style!r}; styles: {sorted(set(styles) - {''})}")
            chosen = (styles == hold_out_style) if split == "test" else chosen & (styles != hold_out_style)
        return self.prompts.prompt_row.to_numpy()[chosen]

    def image_rows_of(self, prompt_rows: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.images.prompt_row.to_numpy(), prompt_rows))


class PromptGroups(torch.utils.data.Dataset):
    """Item i: the decoded candidates of prompt ``prompt_rows[i]`` (at most ``max_images``, a seeded draw)."""

    def __init__(self, tables: Tables, prompt_rows: np.ndarray, image_size: int, max_images: int, seed: int) -> None:
        self.root, self.image_size, self.max_images, self.seed = tables.root, image_size, max_images, seed
        self.prompt_rows = np.asarray(prompt_rows)
        by_prompt = pd.Series(np.arange(len(tables.images))).groupby(tables.images.prompt_row.to_numpy())
        self.members = {int(p): rows.to_numpy() for p, rows in by_prompt}
        self.paths = tables.images.path.to_numpy()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.prompt_rows)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.members.get(int(self.prompt_rows[i]), np.zeros(0, dtype=np.int64))
        if len(rows) > self.max_images:
            rng = np.random.default_rng([self.seed, self.epoch, int(self.prompt_rows[i])])
            rows = np.sort(rng.choice(rows, self.max_images, replace=False))
        return rows, load_pixels([self.root / p for p in self.paths[rows]], self.image_size)


def collate(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image rows, pixels, group index of each image)."""
    rows = np.concatenate([r for r, _ in items])
    group = np.concatenate([np.full(len(r), g) for g, (r, _) in enumerate(items)])
    return rows, np.concatenate([p for _, p in items]), group


class PairIndex:
    """Preference pairs looked up by the image rows present in a batch."""

    def __init__(self, pair_rows: np.ndarray, pair_target: np.ndarray, n_images: int) -> None:
        self.rows, self.target = pair_rows, pair_target
        order = np.argsort(pair_rows[:, 0], kind="stable")
        self._sorted_a = pair_rows[order, 0]
        self._order = order
        self.n_images = n_images

    def within(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(batch position of a, batch position of b, target) for every pair whose two images are in ``rows``."""
        position = np.full(self.n_images, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        lo = np.searchsorted(self._sorted_a, rows, "left")
        hi = np.searchsorted(self._sorted_a, rows, "right")
        candidates = self._order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)] or [[]])]
        candidates = candidates.astype(np.int64)
        pa, pb = position[self.rows[candidates, 0]], position[self.rows[candidates, 1]]
        keep = (pa >= 0) & (pb >= 0)
        return pa[keep], pb[keep], self.target[candidates[keep]]
