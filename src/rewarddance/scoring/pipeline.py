"""Decoded pixels and prompts in, component scores and R out: the gateway's whole model path.

A pixel reward model (v2, manifest ``architecture: "pixel"``) is one graph after the prompt encoder:

    prompts --tokenizer--> ids --prompt_encoder--> MiniLM token states, mask --+
    pixels (n, s, s, 3) uint8 -------------------------------------------------+--> reward model -> components, R

A feature reward model (v1) runs two encoders and the numpy component scorers first:

    pixels (n, s, s, 3) uint8 --image_encoder--> embedding, patch tokens --+
    prompts --tokenizer--> ids --text_encoder--> embedding, token states --+--> component scorers (numpy) -> signals
                                                                            +--> reward model -> components, R

Prompt features are cached (LRU by text): ranking N images of one prompt encodes it once, and repeat prompts
across requests cost nothing. The encoders and the reward model run on whatever backend is given (embedded
onnxruntime by default, Triton in the gateway), each as a batch over every image of the call.

The gateway calls :meth:`RewardPipeline.score_requests`: one prompt and style per request, a count of images
each, so the Python work of a batch grows with its requests, not its images (a pixel model's batch is one cache
lookup per request, one ``np.repeat`` and one onnxruntime call).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..components.base import COMPONENTS, FeatureBatch
from ..components.bundle import ComponentSet
from ..components.composition import composition_features
from ..repository import ModelRepository, ModelVersion, RepositoryError, RewardManifest
from .backend import InferenceBackend, OnnxRuntimeBackend
from .tokenizer import PromptTokenizer


@dataclass(frozen=True)
class PromptFeatures:
    embedding: np.ndarray | None  # (d,) unit norm (v1 text encoders; a pixel model's prompt encoder has none)
    tokens: np.ndarray  # (L, w) text token states
    mask: np.ndarray  # (L,) bool, True for real tokens


@dataclass(frozen=True)
class Scores:
    components: np.ndarray  # (n, 4) in COMPONENTS order, each in [0, 1]
    reward: np.ndarray  # (n,) R with the model's default weights
    signals: np.ndarray | None  # (n, 4) the baseline scorers' inputs to a v1 reward model; None for pixel models


class RewardPipeline:
    def __init__(
        self,
        repository: ModelRepository | str | Path,
        name: str,
        version: int | None = None,
        backend: InferenceBackend | None = None,
        prompt_cache_size: int = 4096,
        model: ModelVersion | None = None,
    ) -> None:
        """``model`` overrides the lookup of ``name``/``version`` (the exporter scores a version before publishing)."""
        self.repository = repository if isinstance(repository, ModelRepository) else ModelRepository(repository)
        self.model = model or self.repository.get(name, version)
        self.manifest = manifest = self.model.manifest
        if not isinstance(manifest, RewardManifest):
            raise RepositoryError(f"{name} v{self.model.version} is a {manifest.kind}, not a reward model")
        self.backend = backend or OnnxRuntimeBackend()
        self.pixel = manifest.pixel
        text, image = manifest.encoders["text"], manifest.encoders.get("image")
        self.text_encoder = self.repository.get(text.name, text.version)
        self.image_size = manifest.image.image_size
        self.resize = manifest.image.resize  # how a non-square upload becomes square (rewarddance.preprocess)
        prep = manifest.text
        self.tokenizer = PromptTokenizer(self.model.path / prep.tokenizer, prep.context_length, prep.pad_token_id)
        if self.pixel:
            self.image_encoder, self.scorers = None, None
            self._styles = list(manifest.styles)
        else:
            self.image_encoder = self.repository.get(image.name, image.version)
            self.scorers = ComponentSet.load(self.model.path / manifest.component_scorers)
            self._styles = list(self.scorers.style.styles)
        self.components = manifest.components
        if self.components != COMPONENTS:
            raise RepositoryError(f"{name} v{self.version} has components {self.components}, expected {COMPONENTS}")
        self.default_weights = dict(manifest.default_weights)
        self.bt_scale = manifest.bt_scale
        self._cache: OrderedDict[str, PromptFeatures] = OrderedDict()
        self._cache_size = prompt_cache_size
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    # -- identity -------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int:
        return self.model.version

    @property
    def styles(self) -> list[str]:
        return list(self._styles)

    def versions(self) -> list[ModelVersion]:
        return [v for v in (self.image_encoder, self.text_encoder, self.model) if v is not None]

    def load(self) -> RewardPipeline:
        for version in self.versions():
            self.backend.load(version)
        return self

    def warmup(self, batch_sizes: tuple[int, ...] = (1, 8)) -> None:
        """Run each graph once per batch size so the first real request pays no allocation or load cost."""
        rng = np.random.default_rng(0)
        for n in batch_sizes:
            pixels = rng.integers(0, 256, (n, self.image_size, self.image_size, 3), dtype=np.uint8)
            self.score(pixels, [f"warm-up prompt {i}" for i in range(n)], use_cache=False)

    def unload(self) -> None:
        for version in self.versions():
            self.backend.unload(version)

    # -- prompts --------------------------------------------------------------------------------------------------
    def prompt_features(self, prompts: list[str], use_cache: bool = True) -> list[PromptFeatures]:
        """One entry per prompt; every distinct uncached text is encoded once, in one batch."""
        found: dict[str, PromptFeatures] = {}
        with self._lock:  # two inference workers may look up and count at once
            if use_cache:
                for text in prompts:
                    hit = self._cache.get(text)
                    if hit is not None:
                        self._cache.move_to_end(text)
                        found[text] = hit
            missing = list(dict.fromkeys(t for t in prompts if t not in found))
            self.cache_hits += len(prompts) - len(missing)  # every prompt not encoded by this call
            self.cache_misses += len(missing)
        if missing:
            out = self.backend.infer(self.text_encoder, {"input_ids": self.tokenizer(missing)})
            embeddings = out.get("embedding")
            for i, text in enumerate(missing):
                embedding = None if embeddings is None else embeddings[i]
                found[text] = PromptFeatures(embedding, out["tokens"][i], out["mask"][i].astype(bool))
            if use_cache:
                with self._lock:
                    for text in missing:
                        self._cache[text] = found[text]
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return [found[t] for t in prompts]

    def check_style(self, style: str | None) -> None:
        if style is not None and style not in self.styles:
            raise ValueError(f"unknown style {style!r}; known styles: {', '.join(self.styles)}")

    # -- scoring --------------------------------------------------------------------------------------------------
    def score(
        self,
        pixels: np.ndarray,
        prompts: list[str],
        styles: list[str | None] | None = None,
        use_cache: bool = True,
    ) -> Scores:
        """pixels (n, s, s, 3) uint8 (decoded and resized by ``rewarddance.preprocess``), one prompt per image."""
        if len(prompts) != len(pixels):
            raise ValueError(f"{len(pixels)} images but {len(prompts)} prompts")
        return self.score_requests(pixels, prompts, [1] * len(prompts), styles, use_cache)

    def score_requests(
        self,
        pixels: np.ndarray,
        prompts: list[str],
        counts: list[int],
        styles: list[str | None] | None = None,
        use_cache: bool = True,
    ) -> Scores:
        """pixels (n, s, s, 3) uint8 of several requests back to back: request i has ``counts[i]`` images, all for
        ``prompts[i]`` (and ``styles[i]``)."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        n = len(pixels)
        if pixels.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"pixels must be (n, {self.image_size}, {self.image_size}, 3), got {pixels.shape}")
        if len(prompts) != len(counts) or (styles is not None and len(styles) != len(counts)):
            raise ValueError(f"{len(counts)} requests but {len(prompts)} prompts")
        if sum(counts) != n:
            raise ValueError(f"{n} images but the requests hold {sum(counts)}")
        if self.pixel:
            return self._score_pixels(pixels, prompts, counts, styles, use_cache)
        repeat = np.asarray(counts)
        prompts = np.repeat(np.asarray(prompts, dtype=object), repeat).tolist()
        if styles is not None:
            styles = np.repeat(np.asarray(styles, dtype=object), repeat).tolist()
        features = self.prompt_features(prompts, use_cache)
        image = self.backend.infer(self.image_encoder, {"pixels": pixels})
        batch = FeatureBatch(
            image_embeddings=image["embedding"],
            prompt_embeddings=np.stack([f.embedding for f in features]),
            prompts=list(prompts),
            target_styles=list(styles) if styles is not None else None,
        )
        signals = self.scorers.signals(batch, composition_features(pixels))
        out = self.backend.infer(
            self.model,
            {
                "prompt_tokens": np.stack([f.tokens for f in features], dtype=np.float32),
                "prompt_mask": np.stack([f.mask for f in features]),
                "image_tokens": image["tokens"].astype(np.float32, copy=False),
                "signals": signals,
            },
        )
        reward = out["reward"].reshape(n).astype(np.float32)
        return Scores(out["components"].astype(np.float32), reward, signals)

    def _score_pixels(
        self,
        pixels: np.ndarray,
        prompts: list[str],
        counts: list[int],
        styles: list[str | None] | None,
        use_cache: bool,
    ) -> Scores:
        """The pixel model reads the style from the prompt's words: a requested style is appended to the prompt
        the way the shapes world's prompts name one ("<prompt>, <style>"). Per request, not per image."""
        if styles is not None:
            prompts = [p if s is None else f"{p}, {s}" for p, s in zip(prompts, styles, strict=True)]
        features = self.prompt_features(prompts, use_cache)
        tokens = np.stack([f.tokens for f in features], dtype=np.float32)
        mask = np.stack([f.mask for f in features])
        if len(counts) != len(pixels):  # several images per request: each request's prompt once per image
            tokens, mask = np.repeat(tokens, counts, axis=0), np.repeat(mask, counts, axis=0)
        out = self.backend.infer(self.model, {"pixels": pixels, "prompt_tokens": tokens, "prompt_mask": mask})
        reward = out["reward"].reshape(len(pixels)).astype(np.float32)
        return Scores(out["components"].astype(np.float32), reward, None)

    def preference_probability(self, reward_a: float, reward_b: float) -> float:
        """P(a beats b) under the model's Bradley-Terry scale."""
        return float(1.0 / (1.0 + np.exp(-self.bt_scale * (reward_a - reward_b))))
