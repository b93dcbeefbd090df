"""P, prompt fidelity: image-text cosine similarity, calibrated to [0, 1] against human fidelity ratings.

Calibration is Platt scaling, ``sigmoid(a * cos + b)``, fitted by maximum likelihood with the mean rating mapped
to [0, 1] as a soft target. Unfitted, ``a = 10, b = 0`` (a monotone map of the raw similarity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FeatureBatch, load_arrays, save_arrays


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def cosine(batch: FeatureBatch) -> np.ndarray:
    batch.need("image_embeddings", "prompt_embeddings")
    return np.einsum("nd,nd->n", batch.image_embeddings, batch.prompt_embeddings)


class FidelityScorer:
    name = "fidelity"

    def __init__(self, a: float = 10.0, b: float = 0.0):
        self.a, self.b = float(a), float(b)

    def fit(self, batch: FeatureBatch, targets: np.ndarray, iterations: int = 200) -> FidelityScorer:
        """Newton steps on the soft-target logistic likelihood (2 parameters, converges in a few steps)."""
        x, t = cosine(batch).astype(np.float64), np.clip(targets, 0, 1)
        a, b = 1.0, 0.0
        design = np.stack([x, np.ones_like(x)], axis=1)
        for _ in range(iterations):
            p = _sigmoid(a * x + b)
            grad = design.T @ (p - t)
            hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            a, b = a - step[0], b - step[1]
            if np.abs(step).max() < 1e-9:
                break
        self.a, self.b = float(a), float(b)
        return self

    def score(self, batch: FeatureBatch) -> np.ndarray:
        return _sigmoid(self.a * cosine(batch) + self.b).astype(np.float32)

    def save(self, directory: Path) -> None:
        save_arrays(directory, self.name, {}, {"a": self.a, "b": self.b})

    @classmethod
    def load(cls, directory: Path) -> FidelityScorer:
        _, meta = load_arrays(directory, cls.name)
        return cls(meta["a"], meta["b"])
