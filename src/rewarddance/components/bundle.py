"""All four fitted component scorers, saved side by side in one directory and loaded together."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import COMPONENTS, FeatureBatch
from .composition import CompositionScorer
from .fidelity import FidelityScorer
from .novelty import NoveltyScorer
from .style import StyleScorer

MANIFEST = "components.json"


@dataclass
class ComponentSet:
    fidelity: FidelityScorer
    style: StyleScorer
    composition: CompositionScorer
    novelty: NoveltyScorer

    def score(self, batch: FeatureBatch) -> np.ndarray:
        """(n, 4) scores in COMPONENTS order."""
        return np.stack([getattr(self, name).score(batch) for name in COMPONENTS], axis=1)

    def signals(self, batch: FeatureBatch, pixel_features: np.ndarray) -> np.ndarray:
        """(n, 4) float32 scores in COMPONENTS order, composition from precomputed pixel features.

        The one definition of the reward model's baseline signals: the trainer's feature cache and the gateway
        both call it, so the model sees the same inputs in training and serving."""
        scores = {
            "fidelity": self.fidelity.score(batch),
            "style": self.style.score(batch),
            "composition": self.composition.predict_features(pixel_features),
            "novelty": self.novelty.score(batch),
        }
        return np.stack([scores[c] for c in COMPONENTS], axis=1).astype(np.float32)

    def save(self, directory: Path, manifest: dict) -> None:
        for name in COMPONENTS:
            getattr(self, name).save(directory)
        (directory / MANIFEST).write_text(json.dumps({"components": list(COMPONENTS), **manifest}, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ComponentSet:
        directory = Path(directory)
        return cls(
            FidelityScorer.load(directory),
            StyleScorer.load(directory),
            CompositionScorer.load(directory),
            NoveltyScorer.load(directory),
        )
