"""Where the proxy reward comes from: the gateway through our SDK, or the same serving pipeline in-process.

``--reward http://HOST:PORT`` or ``grpc://HOST:PORT``: one ``score`` request per prompt (its group of samples), with
the component weights and the model / version pinned as asked, so RLHF is an ordinary client of the service.
``--reward repo:PATH``: ``rewarddance.scoring.RewardPipeline`` on onnxruntime in this process (the gateway's model
path without the network), images decoded and resized by the gateway's own ``rewarddance.preprocess``.
Both return R per image, in input order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RewardFn = Callable[[np.ndarray, list[str]], np.ndarray]  # uint8 (n, h, w, 3), one prompt per image -> (n,) R


class ServiceReward:
    """Scores through ``rewarddance_client`` (HTTP or gRPC by the URL's scheme)."""

    def __init__(self, url: str, weights: dict | None = None, model: str | None = None, version: int | None = None):
        from rewarddance_client import RewardClient

        self.client = RewardClient(url, timeout=60.0)
        self.weights, self.model, self.version = weights, model or None, version or None
        self.seconds = 0.0

    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        out = np.zeros(len(images), np.float64)
        for prompt in dict.fromkeys(prompts):
            idx = [i for i, p in enumerate(prompts) if p == prompt]
            res = self.client.score(
                prompt, [images[i] for i in idx], weights=self.weights, model=self.model, version=self.version
            )
            out[idx] = [r.reward for r in res.results]
        self.seconds += time.perf_counter() - start
        return out

    def describe(self) -> dict:
        return {"kind": "service", "model": self.model, "version": self.version, "weights": self.weights}


class InProcessReward:
    """The serving pipeline (onnxruntime) of a model repository, loaded in this process."""

    def __init__(self, repo: str | Path, weights: dict | None = None, model: str | None = None, version=None):
        from rewarddance.components.composite import resolve_weights
        from rewarddance.repository import REWARD_KIND, ModelRepository
        from rewarddance.scoring.pipeline import RewardPipeline

        repository = ModelRepository(repo)
        if not model:
            names = repository.models(REWARD_KIND)
            if not names:
                raise FileNotFoundError(f"{repo} holds no reward model")
            model = names[0]
        self.pipeline = RewardPipeline(repository, model, version or None).load()
        self.resolved = resolve_weights(weights, self.pipeline.default_weights)
        self.seconds = 0.0

    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        from rewarddance.components.composite import composite
        from rewarddance.preprocess import load_pixels

        start = time.perf_counter()
        pixels = load_pixels(list(images), self.pipeline.image_size)
        scores = self.pipeline.score(pixels, list(prompts))
        out = composite(scores.components, self.resolved)
        self.seconds += time.perf_counter() - start
        return np.asarray(out, np.float64)

    def describe(self) -> dict:
        p = self.pipeline
        return {"kind": "in-process", "model": p.name, "version": p.version, "weights": self.resolved.weights}


def make_reward(spec: str, weights: dict | None = None, model: str | None = None, version: int | None = None):
    """``http://...`` / ``https://...`` / ``grpc://...`` -> ServiceReward; ``repo:PATH`` -> InProcessReward."""
    if spec.startswith(("http://", "https://", "grpc://", "grpcs://")):
        return ServiceReward(spec, weights, model, version)
    if spec.startswith("repo:"):
        return InProcessReward(spec[len("repo:") :], weights, model, version)
    raise ValueError(f"--reward must be http://HOST:PORT, grpc://HOST:PORT or repo:PATH, got {spec!r}")
