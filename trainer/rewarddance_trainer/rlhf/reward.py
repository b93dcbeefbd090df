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

from rewarddance.components.base import COMPONENTS as COMPONENT_NAMES

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


def bicubic_matrix(n_in: int, n_out: int):
    """(n_out, n_in) torch matrix of PIL's bicubic resize along one axis (it is separable and linear before the
    rounding), read off PIL itself by resizing each basis vector as a float image."""
    import torch
    from PIL import Image

    cols = []
    for i in range(n_in):
        e = np.zeros((1, n_in), np.float32)
        e[0, i] = 1.0
        cols.append(np.asarray(Image.fromarray(e, mode="F").resize((n_out, 1), Image.BICUBIC))[0])
    return torch.from_numpy(np.stack(cols, 1))


class DifferentiableReward:
    """The pixel reward model (torch) of a training run directory, differentiable in the pixels, for
    ``--algorithm reward-grad``: (n, 3, h, w) in [-1, 1] -> (n,) R with the given component weights (the model's own
    by default). Images are resized to the model's size with PIL's bicubic kernel as the gateway does (as a matrix,
    so the gradient passes); the served value differs only by the gateway's rounding to uint8 (the RL loop logs
    both).

    Several runs (``"RUN_A,RUN_B,..."``) make an ensemble: R is the members' mean minus ``penalty`` times their
    standard deviation, so the policy gains only where the members agree (a conservative reward against hacking:
    an image that fools one member rarely fools them all)."""

    def __init__(self, run: str | Path, weights: dict | None = None, penalty: float = 0.0):
        import torch

        from rewarddance.components.composite import resolve_weights

        from ..pixel_reward.model import load_model
        from ..pixel_reward.text import PromptStates

        runs = [Path(r.strip()) for r in str(run).split(",") if r.strip()]
        if not runs:
            raise FileNotFoundError("--reward-run: no run directory given")
        for r in runs:
            if not (r / "run.json").exists():
                raise FileNotFoundError(f"--reward-run {r}: not a pixel reward run directory (no run.json)")
        if penalty < 0 or (penalty and len(runs) < 2):
            raise ValueError("--reward-ensemble-penalty needs two or more --reward-run directories and a value >= 0")
        self.run = ",".join(str(r) for r in runs)
        self.models = [load_model(r).requires_grad_(False) for r in runs]
        self.model = self.models[0]
        self.penalty = float(penalty)
        self.text = PromptStates()
        default = dict(zip(COMPONENT_NAMES, self.model.weights.tolist(), strict=True))
        self.resolved = resolve_weights(weights, default)
        self.w = torch.tensor(self.resolved.vector, dtype=torch.float32)
        self.cache: dict[str, tuple] = {}
        self.resize: dict[tuple[int, int], object] = {}  # (input size, model size) -> its bicubic matrix, built once

    def _prompts(self, prompts: list[str]):
        import torch

        new = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if new:
            states, mask = self.text.encode(new)
            for k, p in enumerate(new):
                self.cache[p] = (torch.from_numpy(states[k]), torch.from_numpy(mask[k]))
        return torch.stack([self.cache[p][0] for p in prompts]), torch.stack([self.cache[p][1] for p in prompts])

    def _member(self, model, x, states, mask):
        pixels = (x + 1) * 127.5  # [0, 255], as the model's uint8 input but continuous
        size, n = model.cfg.image_size, x.shape[-1]
        if n != size:
            if (n, size) not in self.resize:
                self.resize[(n, size)] = bicubic_matrix(n, size)
            m = self.resize[(n, size)]
            pixels = (m @ pixels @ m.T).clamp(0, 255)  # bicubic overshoots; PIL clips to uint8
        components, _ = model(pixels.permute(0, 2, 3, 1), states, mask)
        return components @ self.w

    def __call__(self, x, prompts: list[str]):
        import torch

        states, mask = self._prompts(list(prompts))
        rewards = torch.stack([self._member(m, x, states, mask) for m in self.models])
        if len(self.models) == 1:
            return rewards[0]
        return rewards.mean(0) - self.penalty * rewards.std(0)

    def describe(self) -> dict:
        out = {"kind": "torch (gradient)", "run": self.run, "weights": self.resolved.weights}
        if len(self.models) > 1:
            out |= {"ensemble": len(self.models), "penalty": self.penalty}
        return out


def make_reward(spec: str, weights: dict | None = None, model: str | None = None, version: int | None = None):
    """``http://...`` / ``https://...`` / ``grpc://...`` -> ServiceReward; ``repo:PATH`` -> InProcessReward."""
    if spec.startswith(("http://", "https://", "grpc://", "grpcs://")):
        return ServiceReward(spec, weights, model, version)
    if spec.startswith("repo:"):
        return InProcessReward(spec[len("repo:") :], weights, model, version)
    raise ValueError(f"--reward must be http://HOST:PORT, grpc://HOST:PORT or repo:PATH, got {spec!r}")
