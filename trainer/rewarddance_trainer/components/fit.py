"""Fit the learned parts of the four component scorers from a feature cache and human ratings (never gold).

- P: Platt calibration of image-prompt cosine against mean fidelity ratings;
- S: style text embeddings for zero-shot, and a linear probe on images whose prompt names a style and whose
  mean style rating is at least ``STYLE_LABEL_MIN_RATING``;
- C: ridge probe from pixel features to mean composition ratings;
- N: the reference bank of training-domain image embeddings.
Only rows selected by ``mask`` (by default the train split) are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rewarddance.components.base import COMPONENTS, FeatureBatch
from rewarddance.components.bundle import ComponentSet
from rewarddance.components.composition import CompositionScorer
from rewarddance.components.fidelity import FidelityScorer
from rewarddance.components.novelty import NoveltyScorer
from rewarddance.components.style import StyleScorer

from ..data import schema
from ..encoders.embed import FeatureCache
from ..shapes.world import STYLE_WORDS

STYLE_LABEL_MIN_RATING = 4.0
STYLE_TEMPLATES = ("{}", "an image, {}", "a picture in {} style")


@dataclass
class Table:
    """One row per image: its prompt, split and mean human ratings, aligned with the feature cache."""

    images: pd.DataFrame  # image_id, prompt_id, prompt_row, text, style, split, fold, <component>_rating (1..5)
    cache: FeatureCache

    @classmethod
    def load(cls, data: Path, cache_dir: Path) -> Table:
        layout = schema.Layout(data)
        cache = FeatureCache(cache_dir)
        images = pd.read_parquet(layout.table("images"), columns=["image_id", "prompt_id"])
        if cache.ids("image") != images.image_id.tolist():
            raise ValueError(f"{cache_dir} was not built from {data} (image ids differ); rerun data embed")
        prompts = pd.read_parquet(layout.table("prompts")).reset_index(drop=True)
        prompts["prompt_row"] = prompts.index
        ratings = pd.read_parquet(layout.table("ratings")).groupby("image_id")[list(COMPONENTS)].mean()
        ratings = ratings.add_suffix("_rating")
        images = images.merge(prompts, on="prompt_id", how="left").join(ratings, on="image_id")
        return cls(images, cache)

    def batch(self, rows: np.ndarray) -> FeatureBatch:
        image = np.asarray(self.cache.array("image_pooled")[rows])
        prompt = np.asarray(self.cache.array("prompt_pooled"))[self.images.prompt_row.to_numpy()[rows]]
        return FeatureBatch(
            image_embeddings=image, prompt_embeddings=prompt, prompts=self.images.text.iloc[rows].tolist()
        )

    def target(self, rows: np.ndarray, component: str) -> np.ndarray:
        return ((self.images[f"{component}_rating"].to_numpy()[rows] - 1) / 4).astype(np.float64)


def component_signals(components: ComponentSet, table: Table, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 4) baseline scores in COMPONENTS order, from cached features (composition from pixel features)."""
    return components.signals(table.batch(rows), np.asarray(table.cache.array("pixel_features")[rows]))


def style_text_embeddings(encoder, vocabulary: dict[str, tuple[str, ...]]) -> np.ndarray:
    rows = []
    for phrases in vocabulary.values():
        texts = [t.format(p) for p in phrases for t in STYLE_TEMPLATES]
        mean = encoder.encode_texts(texts).pooled.mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    return np.stack(rows)


def fit_components(
    table: Table,
    rows: np.ndarray,
    style_text: np.ndarray,
    temperature: float,
    vocabulary: dict[str, tuple[str, ...]] = STYLE_WORDS,
) -> ComponentSet:
    batch = table.batch(rows)
    rated = ~np.isnan(table.target(rows, "fidelity"))
    fidelity = FidelityScorer().fit(
        FeatureBatch(image_embeddings=batch.image_embeddings[rated], prompt_embeddings=batch.prompt_embeddings[rated]),
        table.target(rows, "fidelity")[rated],
    )
    style = StyleScorer({k: list(v) for k, v in vocabulary.items()}, style_text, temperature)
    styles = table.images["style"].to_numpy()[rows]
    labelled = pd.notna(styles) & (np.nan_to_num(table.target(rows, "style")) >= (STYLE_LABEL_MIN_RATING - 1) / 4)
    if len(set(styles[labelled])) == len(vocabulary):
        style.fit_probe(batch.image_embeddings[labelled], list(styles[labelled]))
    composition = CompositionScorer().fit_features(
        np.asarray(table.cache.array("pixel_features")[rows])[rated], table.target(rows, "composition")[rated]
    )
    novelty = NoveltyScorer.build(batch.image_embeddings)
    return ComponentSet(fidelity, style, composition, novelty)
