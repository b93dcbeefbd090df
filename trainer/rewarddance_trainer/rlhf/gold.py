"""Gold for RLHF: the independent oracle's components and utility of sampled images (never used for the update)."""

from __future__ import annotations

from functools import cache

import numpy as np

from ..shapes.gold import DEFAULT_WEIGHTS


@cache
def _spec(prompt: str):
    from ..oracle.parse import parse_prompt

    return parse_prompt(prompt)


class GoldScorer:
    def __init__(self, oracle=None):
        from ..oracle.oracle import Oracle

        self.oracle = oracle or Oracle.load()

    def __call__(self, images: np.ndarray, prompts: list[str]) -> dict[str, np.ndarray]:
        """{"fidelity", "style", "composition", "novelty": (n,), "utility": (n,) with the default weights}."""
        comps = self.oracle.score(list(images), [_spec(p) for p in prompts])
        w = np.asarray(DEFAULT_WEIGHTS) / np.sum(DEFAULT_WEIGHTS)
        names = ("fidelity", "style", "composition", "novelty")
        return {name: comps[:, i] for i, name in enumerate(names)} | {"utility": comps @ w}
