"""Simulated human raters: Likert ratings from gold scores, Bradley-Terry preferences, and the noise ceiling.

Rater r turns a gold score g in [0, 1] into a rating ``clip(round(3 + 4 * s_r * (g - 0.5) + b_r + e), 1, 5)``
with a personal bias ``b_r``, scale ``s_r`` and noise ``e ~ N(0, sigma_r)``. Preferences between two images of
one prompt follow the Davidson extension of Bradley-Terry (ties allowed) over the hidden utility U = w . gold:
``P(a) ~ exp(U_a / t)``, ``P(b) ~ exp(U_b / t)``, ``P(tie) ~ nu * sqrt(P(a) P(b))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass(frozen=True)
class RaterConfig:
    pool_size: int = 60
    per_image: int = 3
    bias_sd: float = 0.25  # Likert points
    scale_sd: float = 0.15  # log-normal spread of the personal scale
    noise_min: float = 0.3  # per-rater noise sd is uniform in [noise_min, noise_max] * noise
    noise_max: float = 0.6
    noise: float = 1.0  # global multiplier: 0 gives noiseless raters
    temperature: float = 0.04  # Bradley-Terry temperature on the utility scale
    tie_strength: float = 0.3  # Davidson nu


@dataclass(frozen=True)
class RaterPool:
    bias: np.ndarray
    scale: np.ndarray
    noise: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [f"r{i:03d}" for i in range(len(self.bias))]


def make_pool(config: RaterConfig, rng: np.random.Generator) -> RaterPool:
    n = config.pool_size
    return RaterPool(
        bias=rng.normal(0, config.bias_sd, n),
        scale=np.exp(rng.normal(0, config.scale_sd, n)),
        noise=rng.uniform(config.noise_min, config.noise_max, n) * config.noise,
    )


def likert(gold: np.ndarray, raters: np.ndarray, pool: RaterPool, rng: np.random.Generator) -> np.ndarray:
    """Ratings (int8, 1..5) for gold scores of shape (n, 4) by rater indices of shape (n, k) -> (n, k, 4)."""
    latent = 3 + 4 * pool.scale[raters][..., None] * (gold[:, None, :] - 0.5) + pool.bias[raters][..., None]
    latent = latent + rng.normal(size=latent.shape) * pool.noise[raters][..., None]
    return np.clip(np.round(latent), 1, 5).astype(np.int8)


def davidson_probabilities(u_a: np.ndarray, u_b: np.ndarray, config: RaterConfig) -> np.ndarray:
    """(n, 3) probabilities of a wins, b wins, tie."""
    d = (u_a - u_b) / config.temperature
    # Work relative to the mean log-strength so exp never overflows.
    pa, pb = np.exp(d / 2), np.exp(-d / 2)
    pt = config.tie_strength * np.ones_like(d)
    total = pa + pb + pt
    return np.stack([pa / total, pb / total, pt / total], axis=1)


def sample_pairs(n_images: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct unordered pairs of image indices (as many as exist, up to n_pairs), shape (m, 2)."""
    all_pairs = np.array([(i, j) for i in range(n_images) for j in range(i + 1, n_images)])
    if len(all_pairs) == 0:
        return np.zeros((0, 2), dtype=int)
    pick = rng.choice(len(all_pairs), size=min(n_pairs, len(all_pairs)), replace=False)
    pairs = all_pairs[np.sort(pick)]
    flip = rng.random(len(pairs)) < 0.5  # random presentation order
    pairs[flip] = pairs[flip][:, ::-1]
    return pairs


def preferences(u_a: np.ndarray, u_b: np.ndarray, config: RaterConfig, rng: np.random.Generator) -> np.ndarray:
    """Winner labels 'a' | 'b' | 'tie' drawn from the Davidson-Bradley-Terry model."""
    probs = davidson_probabilities(u_a, u_b, config)
    draws = (rng.random(len(probs))[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return np.array(["a", "b", "tie"])[np.minimum(draws, 2)]


def noise_ceiling(
    gold: np.ndarray,
    mean_ratings: np.ndarray,
    utility: np.ndarray,
    weights: np.ndarray,
    pair_utilities: tuple[np.ndarray, np.ndarray],
    winners: np.ndarray,
    config: RaterConfig,
) -> dict:
    """Best scores any model can reach against these noisy labels.

    A model that knew the gold scores exactly would still only reach the Spearman between gold and the noisy
    mean ratings, and could only predict the higher-utility image of a pair, which the labels contradict at
    the rate the Bradley-Terry noise implies. Both the empirical and the model-implied pair accuracy are given.
    """
    names = ("fidelity", "style", "composition", "novelty")
    spearman = {n: float(spearmanr(gold[:, i], mean_ratings[:, i])[0]) for i, n in enumerate(names)}
    composite = mean_ratings @ (weights / weights.sum())
    spearman["reward"] = float(spearmanr(utility, composite)[0])
    u_a, u_b = pair_utilities
    decided = winners != "tie"
    distinct = u_a != u_b
    mask = decided & distinct
    agree = np.where(u_a > u_b, winners == "a", winners == "b")
    probs = davidson_probabilities(u_a, u_b, config)
    p_higher = np.where(u_a > u_b, probs[:, 0], probs[:, 1])
    p_decided = probs[:, 0] + probs[:, 1]
    return {
        "spearman_vs_mean_rating": spearman,
        "pairwise_accuracy": float(agree[mask].mean()) if mask.any() else float("nan"),
        "pairwise_accuracy_expected": float(p_higher[distinct].sum() / p_decided[distinct].sum())
        if distinct.any()
        else float("nan"),
        "tie_rate": float(1 - decided.mean()) if len(winners) else float("nan"),
        "n_pairs_scored": int(mask.sum()),
    }
