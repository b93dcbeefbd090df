"""Training examples for the reward model, from the feature cache and the human tables only (never gold/).

A ``Split`` says which images train, which select the model (``val_rows``) and which are held out for the final
test (``eval_rows``): by default the dataset's train / val / test splits; ``cv_splits`` uses the ``fold`` column
(grouped by prompt: fold k is tested, fold k+1 mod K selects, the rest train) and ``style_splits`` holds out one
style at a time (the val split's prompts of the other styles select). ``build_examples`` turns a split into
``Examples``: per image the Likert targets ((mean - 1) / 4, NaN when unrated), the four baseline signals and the
preference pairs inside each side.

Baseline signals come from component scorers fitted on the split's training rows only, so held-out rows never
reach a probe. The training rows' own signals are cross-fitted (scored by scorers fitted on the other
``SIGNAL_FOLDS - 1`` prompt groups): scored in-sample they would look better than held-out ones do (the novelty
bank would contain the image itself, the probes would have seen its rating), and the model would learn to trust
them more than it should. Val and test rows are scored by one ``ComponentSet`` fitted on all training rows; it is
kept in ``Examples.components`` so the trainer can save it beside the model (serving must use the same scorers).
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
VAL_FRACTION = 0.2  # share of training prompts set aside for model selection where a split has no val rows
PAIR_TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class Split:
    name: str  # run subdirectory for cv / leave-one-style-out ("fold-0", "style-oil")
    train_rows: np.ndarray  # image rows (images.parquet order)
    eval_rows: np.ndarray  # held out: the selected model is tested here once, at the end
    val_rows: np.ndarray  # model selection (best step) and early stopping; disjoint from both others


def carve_val(table: Table, train_rows: np.ndarray, fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): ``fraction`` of the training rows' prompts (a fixed seeded draw) with all their images."""
    prompts = table.images.prompt_row.to_numpy()[train_rows]
    unique = np.unique(prompts)
    chosen = np.random.default_rng(1).permutation(unique)[: max(1, round(fraction * len(unique)))]
    held = np.isin(prompts, chosen)
    return train_rows[~held], train_rows[held]


def _with_val(table: Table, name: str, train: np.ndarray, test: np.ndarray, val: np.ndarray) -> Split:
    """The split, its val rows carved from the training rows when the dataset offers none."""
    if len(val) == 0:
        train, val = carve_val(table, train)
    return Split(name, train, test, val)


def default_split(table: Table) -> Split:
    split = table.images.split.to_numpy()
    rows = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    return _with_val(table, "test", rows["train"], rows["test"], rows["val"])


def cv_splits(table: Table, k: int) -> list[Split]:
    """Fold f is tested, fold (f + 1) mod k selects the model, the other k - 2 folds train (all grouped by prompt)."""
    folds = table.images.fold.to_numpy()
    present = sorted(set(folds.tolist()))
    if k < 3 or present != list(range(k)):
        raise ValueError(f"--cv {k} needs k >= 3 and fold values 0..{k - 1} in prompts.parquet, found {present}")
    return [
        Split(
            f"fold-{f}",
            np.flatnonzero((folds != f) & (folds != (f + 1) % k)),
            np.flatnonzero(folds == f),
            np.flatnonzero(folds == (f + 1) % k),
        )
        for f in range(k)
    ]


def style_splits(table: Table) -> list[Split]:
    """Each named style in turn: train on the train split's other prompts (unstyled ones included), select on the
    val split's other prompts, test on every image of the held-out style (none of it was seen in training or
    selection)."""
    styles = table.images["style"].to_numpy()
    split = table.images.split.to_numpy()
    named = sorted(set(styles[pd.notna(styles)].tolist()))
    if len(named) < 2:
        raise ValueError(f"--leave-one-style-out needs at least 2 styles in prompts.parquet, found {named}")
    return [
        _with_val(
            table,
            f"style-{s}",
            np.flatnonzero((split == "train") & (styles != s)),
            np.flatnonzero(styles == s),
            np.flatnonzero((split == "val") & (styles != s)),
        )
        for s in named
    ]


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


def split_signals(table: Table, split: Split, style: StyleScorer) -> tuple[np.ndarray, ComponentSet]:
    """(signals (n_images, 4), scorers): cross-fitted signals on the training rows, signals of the scorers fitted
    on all training rows (returned too) on the val and eval rows, NaN elsewhere."""
    out = np.full((len(table.images), len(COMPONENTS)), np.nan, dtype=np.float32)
    prompts = table.images.prompt_row.to_numpy()[split.train_rows]
    unique = np.unique(prompts)
    group_of_prompt = np.empty(unique.max() + 1, dtype=np.int64)
    group_of_prompt[np.random.default_rng(0).permutation(unique)] = np.arange(len(unique)) % SIGNAL_FOLDS
    group = group_of_prompt[prompts]
    for g in range(SIGNAL_FOLDS):
        scored = split.train_rows[group == g]
        out[scored] = component_signals(fit_scorers(table, split.train_rows[group != g], style), table, scored)
    scorers = fit_scorers(table, split.train_rows, style)
    for rows in (split.val_rows, split.eval_rows):
        out[rows] = component_signals(scorers, table, rows)
    return out, scorers


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
    eval_pairs: Pairs  # inside the test (eval) rows
    val_pairs: Pairs
    components: ComponentSet  # fitted on all training rows: the scorers behind the val / eval rows' signals

    def held_out(self, part: str) -> tuple[np.ndarray, Pairs]:
        """(image rows, pairs) of ``part``: "val" (model selection) or "test" (the final, held-out evaluation)."""
        if part == "val":
            return self.split.val_rows, self.val_pairs
        if part == "test":
            return self.split.eval_rows, self.eval_pairs
        raise ValueError(f"unknown part {part!r}; expected 'val' or 'test'")

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
    signals, components = split_signals(table, split, style)
    return Examples(
        split=split,
        image_tokens=cache.array("image_tokens"),
        prompt_tokens=cache.array("prompt_tokens"),
        prompt_mask=cache.array("prompt_mask"),
        prompt_row=table.images.prompt_row.to_numpy(),
        targets=rating_targets(table),
        signals=signals,
        train_pairs=pairs.within(split.train_rows),
        eval_pairs=pairs.within(split.eval_rows),
        val_pairs=pairs.within(split.val_rows),
        components=components,
    )
