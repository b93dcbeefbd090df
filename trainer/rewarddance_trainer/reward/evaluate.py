"""Validation of a reward model on held-out rows (the val rows that select the model, or the test rows that
evaluate the selected one), set against the dataset's noise ceiling.

- Spearman of each component head with the mean human rating, and of R with the same weighted mean of ratings;
- pairwise accuracy on held-out preference pairs (ties excluded);
- both beside ``card.json``'s ``noise_ceiling`` (what a model that knew the simulator's truth would score);
- a calibration plot (predicted head against mean rating, equal-count bins, per component).
``gold_spearman`` reads the simulator's ground truth and exists for benchmarks only: training never calls it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from rewarddance.components.base import COMPONENTS

from .data import Examples, Pairs
from .model import RewardModel

CALIBRATION_BINS = 10


@torch.no_grad()
def predict(
    model: RewardModel, examples: Examples, rows: np.ndarray, device: torch.device, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(components (len(rows), 4), reward (len(rows),)) in eval mode."""
    model.eval()
    components, rewards = [], []
    for start in range(0, len(rows), batch):
        c, r = model(**examples.inputs(rows[start : start + batch], device))
        components.append(c.float().cpu().numpy())
        rewards.append(r.float().cpu().numpy())
    return np.concatenate(components), np.concatenate(rewards)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman over the rows where both are finite (NaN when fewer than 3 or either is constant)."""
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(spearmanr(a[keep], b[keep])[0])


def pair_accuracy(reward_by_row: np.ndarray, pairs: Pairs) -> float:
    """Share of decided pairs (ties excluded) whose winner gets the higher R."""
    decided = pairs.target != 0.5
    if not decided.any():
        return float("nan")
    a, b = reward_by_row[pairs.rows[decided, 0]], reward_by_row[pairs.rows[decided, 1]]
    return float(((a > b) == (pairs.target[decided] == 1.0)).mean())


def metrics(
    examples: Examples,
    rows: np.ndarray,
    components: np.ndarray,
    reward: np.ndarray,
    weights: np.ndarray,
    pairs: Pairs | None = None,
) -> dict[str, float]:
    """Metrics of predictions on image ``rows``; pair accuracy on ``pairs`` (default: the test rows' pairs)."""
    pairs = examples.eval_pairs if pairs is None else pairs
    targets = examples.targets[rows]
    out = {f"spearman_{c}": spearman(components[:, i], targets[:, i]) for i, c in enumerate(COMPONENTS)}
    out["spearman_reward"] = spearman(reward, targets @ weights)  # NaN unless all four are rated
    reward_by_row = np.full(len(examples.targets), np.nan)
    reward_by_row[rows] = reward
    out["pair_accuracy"] = pair_accuracy(reward_by_row, pairs)
    out["n_eval_images"] = len(rows)
    out["n_eval_pairs"] = int((pairs.target != 0.5).sum())
    return out


def validate(model: RewardModel, examples: Examples, device: torch.device, part: str = "test") -> dict[str, float]:
    """Metrics on the ``part`` ("val" or "test") rows of ``examples``."""
    rows, pairs = examples.held_out(part)
    components, reward = predict(model, examples, rows, device)
    return metrics(examples, rows, components, reward, model.weights.cpu().numpy(), pairs)


def against_ceiling(values: dict[str, float], ceiling: dict | None) -> dict[str, dict[str, float]]:
    """Each headline metric beside the noise ceiling and its share of it (empty when the card has no ceiling)."""
    if not ceiling:
        return {}
    rho = ceiling["spearman_vs_mean_rating"]
    pairs = {f"spearman_{k}": v for k, v in rho.items()} | {"pair_accuracy": ceiling["pairwise_accuracy"]}
    return {
        name: {"model": values[name], "ceiling": limit, "share": values[name] / limit}
        for name, limit in pairs.items()
        if name in values
    }


def plot_calibration(components: np.ndarray, targets: np.ndarray, path: Path) -> None:
    """Per component: mean predicted head against mean human rating in equal-count bins of the prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(COMPONENTS), figsize=(3.2 * len(COMPONENTS), 3.2))
    for i, (ax, name) in enumerate(zip(axes, COMPONENTS, strict=True)):
        rated = ~np.isnan(targets[:, i])
        pred, rating = components[rated, i] * 4 + 1, targets[rated, i] * 4 + 1  # both on the 1..5 Likert scale
        bins = np.array_split(np.argsort(pred), min(CALIBRATION_BINS, max(1, len(pred))))
        ax.plot([1, 5], [1, 5], color="grey", lw=0.8, ls="--")
        ax.plot([pred[b].mean() for b in bins], [rating[b].mean() for b in bins], marker="o")
        ax.set(xlim=(1, 5), ylim=(1, 5), xlabel="predicted (1..5)", title=f"{name}  rho={spearman(pred, rating):.2f}")
    axes[0].set_ylabel("mean human rating")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gold_spearman(data: Path, image_ids: pd.Series, components: np.ndarray, reward: np.ndarray) -> dict[str, float]:
    """Spearman of each head with its gold score and of R with the gold utility (benchmarks only)."""
    gold = pd.read_parquet(data / "gold" / "gold.parquet").set_index("image_id").loc[image_ids.to_numpy()]
    out = {c: spearman(components[:, i], gold[c].to_numpy()) for i, c in enumerate(COMPONENTS)}
    out["reward"] = spearman(reward, gold["utility"].to_numpy())
    return out
