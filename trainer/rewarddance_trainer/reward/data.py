"""Training examples for the reward model, from the feature cache and the human tables only (never gold/).

A ``Split`` says which images train and which validate: by default the train split against the test split;
``cv_splits`` uses the dataset's ``fold`` column (grouped by prompt) and ``style_splits`` holds out one style at a
time. ``build_examples`` turns a split into ``Examples``: per image the Likert targets ((mean - 1) / 4, NaN when
unrated), the four baseline signals and the preference pairs inside each side.

Baseline signals come from component scorers fitted on the split's training rows only, so held-out rows never
reach a probe. The training rows' own signals are cross-fitted (scored by scorers fitted on the other
``SIGNAL_FOLDS - 1`` prompt groups): scored in-sample they would look better than held-out ones do (the novelty
bank would contain the image itself, the probes would have seen its rating), and the model would learn to trust
them more than it should.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewarddance.components.base import COMPONENTS
from rewarddance.components.bundle import ComponentSet
from rewarddance.components.style import StyleScorer

from ..components.fit import Table, component_signals, fit_components
from ..data import schema

SIGNAL_FOLDS = 5
PAIR_TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class Split:
    name: str  # run subdirectory for cv / leave-one-style-out ("fold-0", "style-oil")
    train_rows: np.ndarray  # image rows (images.parquet order)
    eval_rows: np.ndarray


def default_split(table: Table) -> Split:
    split = table.images.split.to_numpy()
    return Split("test", np.flatnonzero(split == "train"), np.flatnonzero(split == "test"))


def cv_splits(table: Table, k: int) -> list[Split]:
    folds = table.images.fold.to_numpy()
    present = sorted(set(folds.tolist()))
    if present != list(range(k)):
        raise ValueError(f"--cv {k} needs fold values 0..{k - 1} in prompts.parquet, the dataset has {present}")
    return [Split(f"fold-{f}", np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(k)]


def style_splits(table: Table) -> list[Split]:
    """Each named style in turn: train on the train split's other prompts (unstyled ones included), validate on
    every image of the held-out style (none of it was seen in training)."""
    styles = table.images["style"].to_numpy()
    train = table.images.split.to_numpy() == "train"
    named = sorted(set(styles[pd.notna(styles)].tolist()))
    if len(named) < 2:
        raise ValueError(f"--leave-one-style-out needs at least 2 styles in prompts.parquet, found {named}")
    return [Split(f"style-{s}", np.flatnonzero(train & (styles != s)), np.flatnonzero(styles == s)) for s in named]


@dataclass(frozen=True)
class Pairs:
    rows: np.ndarray  # (m, 2) image rows of image_a, image_b
    target: np.ndarray  # (m,) P(a preferred): 1 for a, 0 for b, 0.5 for a tie

    def within(self, rows: np.ndarray) -> Pairs:
        keep = np.isin(self.rows, rows).all(axis=1)
        return Pairs(self.rows[keep], self.target[keep])


def load_pairs(data: Path, table: Table) -> Pairs:
    pairs = pd.read_parquet(schema.Layout(data).table("pairs"), columns=["image_a", "image_b", "winner"])
    row_of = pd.Series(np.arange(len(table.images)), index=table.images.image_id)
    rows = np.stack([row_of.loc[pairs.image_a].to_numpy(), row_of.loc[pairs.image_b].to_numpy()], axis=1)
    return Pairs(rows, pairs.winner.map(PAIR_TARGET).to_numpy(dtype=np.float32))


def fit_scorers(table: Table, rows: np.ndarray, style: StyleScorer) -> ComponentSet:
    """Component scorers fitted on ``rows``; the style text embeddings come from ``style`` (they need the text
    tower, which the reward trainer never loads)."""
    return fit_components(table, rows, style.style_text, style.temperature, style.vocabulary)


def split_signals(table: Table, split: Split, style: StyleScorer) -> np.ndarray:
    """(n_images, 4): cross-fitted signals on the training rows, signals of scorers fitted on all training rows
    on the eval rows, NaN elsewhere."""
    out = np.full((len(table.images), len(COMPONENTS)), np.nan, dtype=np.float32)
    prompts = table.images.prompt_row.to_numpy()[split.train_rows]
    unique = np.unique(prompts)
    group_of_prompt = np.empty(unique.max() + 1, dtype=np.int64)
    group_of_prompt[np.random.default_rng(0).permutation(unique)] = np.arange(len(unique)) % SIGNAL_FOLDS
    group = group_of_prompt[prompts]
    for g in range(SIGNAL_FOLDS):
        scored = split.train_rows[group == g]
        out[scored] = component_signals(fit_scorers(table, split.train_rows[group != g], style), table, scored)
    out[split.eval_rows] = component_signals(fit_scorers(table, split.train_rows, style), table, split.eval_rows)
    return out


@dataclass
class Examples:
    """One split's model inputs and labels, indexed by image row; token arrays stay memory-mapped."""

    split: Split
    image_tokens: np.ndarray  # (n, t, w) float16
    prompt_tokens: np.ndarray  # (p, l, w) float16
    prompt_mask: np.ndarray  # (p, l) bool
    prompt_row: np.ndarray  # (n,) prompt of each image
    targets: np.ndarray  # (n, 4) mean rating mapped to [0, 1]; NaN where unrated
    signals: np.ndarray  # (n, 4) baseline signals; NaN outside the split
    train_pairs: Pairs
    eval_pairs: Pairs

    @property
    def rated_train_rows(self) -> np.ndarray:
        rows = self.split.train_rows
        return rows[~np.isnan(self.targets[rows]).all(axis=1)]

    def inputs(self, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Model inputs for image ``rows`` (any order, repeats allowed)."""
        prompts = self.prompt_row[rows]
        arrays = {
            "prompt_tokens": np.asarray(self.prompt_tokens[prompts], dtype=np.float32),
            "prompt_mask": np.asarray(self.prompt_mask[prompts]),
            "image_tokens": np.asarray(self.image_tokens[rows], dtype=np.float32),
            "signals": self.signals[rows],
        }
        return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}


def rating_targets(table: Table) -> np.ndarray:
    return np.stack([table.target(np.arange(len(table.images)), c) for c in COMPONENTS], axis=1).astype(np.float32)


def build_examples(table: Table, pairs: Pairs, split: Split, style: StyleScorer) -> Examples:
    cache = table.cache
    return Examples(
        split=split,
        image_tokens=cache.array("image_tokens"),
        prompt_tokens=cache.array("prompt_tokens"),
        prompt_mask=cache.array("prompt_mask"),
        prompt_row=table.images.prompt_row.to_numpy(),
        targets=rating_targets(table),
        signals=split_signals(table, split, style),
        train_pairs=pairs.within(split.train_rows),
        eval_pairs=pairs.within(split.eval_rows),
    )
