"""N, novelty: distance from the training domain as the mean cosine distance to the k nearest neighbours in a
reference bank of training-domain image embeddings, mapped to [0, 1] by the bank's own distance distribution.

The map is the empirical CDF of the bank's leave-one-out kNN distances: 0.5 means "as far from its neighbours
as a typical training image", 1.0 "farther than any". The bank is built offline and stored with the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FeatureBatch, load_arrays, save_arrays

N_QUANTILES = 201


def knn_distance(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ bank.T
    top = np.partition(sims, -k, axis=1)[:, -k:]
    return 1.0 - top.mean(axis=1)


class NoveltyScorer:
    name = "novelty"

    def __init__(self, bank: np.ndarray, quantiles: np.ndarray, k: int = 10):
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.quantiles = np.asarray(quantiles, dtype=np.float64)
        self.k = int(k)

    @classmethod
    def build(cls, embeddings: np.ndarray, k: int = 10, max_bank: int = 20_000, seed: int = 0) -> NoveltyScorer:
        """Bank = (a random subset of at most ``max_bank``) training-domain embeddings."""
        rng = np.random.default_rng(seed)
        if len(embeddings) > max_bank:
            embeddings = embeddings[np.sort(rng.choice(len(embeddings), max_bank, replace=False))]
        bank = np.asarray(embeddings, dtype=np.float32)
        if len(bank) <= k:
            raise ValueError(f"the novelty bank needs more than k={k} embeddings, got {len(bank)}")
        own = _leave_one_out(bank, k)
        return cls(bank, np.quantile(own, np.linspace(0, 1, N_QUANTILES)), k)

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        return knn_distance(np.asarray(embeddings, dtype=np.float32), self.bank, self.k)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        batch.need("image_embeddings")
        d = self.distance(batch.image_embeddings)
        return np.interp(d, self.quantiles, np.linspace(0, 1, N_QUANTILES)).astype(np.float32)

    def save(self, directory: Path) -> None:
        save_arrays(directory, self.name, {"bank": self.bank, "quantiles": self.quantiles}, {"k": self.k})

    @classmethod
    def load(cls, directory: Path) -> NoveltyScorer:
        arrays, meta = load_arrays(directory, cls.name)
        return cls(arrays["bank"], arrays["quantiles"], meta["k"])


def _leave_one_out(bank: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """kNN distance of each bank member to the others (its own entry masked out)."""
    out = np.empty(len(bank))
    for start in range(0, len(bank), block):
        sims = bank[start : start + block] @ bank.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        out[start : start + block] = 1.0 - np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1)
    return out
