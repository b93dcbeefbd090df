"""An open_clip model wrapped for our use: numpy in, normalised embeddings and token states out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rewarddance.preprocess import ImageSpec, normalize

from . import registry

WEIGHTS_FILE = "encoder.safetensors"
META_FILE = "encoder.json"


@dataclass
class TextFeatures:
    pooled: np.ndarray  # (n, embed_dim), L2-normalised
    tokens: np.ndarray  # (n, context, text_width): last hidden states of the text transformer
    mask: np.ndarray  # (n, context) bool, True for real tokens


class Encoder:
    def __init__(self, name: str, model: torch.nn.Module, preprocess_cfg: dict):
        self.name = name
        self.model = model.eval()
        self.model.visual.output_tokens = True
        self.model.text.output_tokens = True
        self.tokenize = registry.tokenizer(name)
        self.image_spec = ImageSpec(
            size=int(preprocess_cfg["size"][0]),
            mean=tuple(preprocess_cfg["mean"]),
            std=tuple(preprocess_cfg["std"]),
        )

    @classmethod
    def create(cls, name: str, pretrained: str | Path | None = None) -> Encoder:
        model, cfg = registry.create(name, pretrained)
        return cls(name, model, cfg)

    @classmethod
    def load(cls, run: Path) -> Encoder:
        """Load a trained encoder run directory (``encoder.json`` + ``encoder.safetensors``)."""
        meta = json.loads((Path(run) / META_FILE).read_text())
        return cls.create(meta["model"], Path(run) / WEIGHTS_FILE)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text.output_dim)

    def image_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(normalize(pixels, self.image_spec))

    @torch.no_grad()
    def encode_images(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (n, s, s, 3) -> (pooled (n, d) normalised, patch tokens (n, t, width))."""
        pooled, tokens = self.model.visual(self.image_tensor(pixels))
        return _unit(pooled).numpy(), tokens.numpy()

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> TextFeatures:
        ids = self.tokenize(texts)
        pooled, tokens = self.model.text(ids)
        mask = (ids != self.model.text.config.pad_token_id).numpy()
        return TextFeatures(_unit(pooled).numpy(), tokens.numpy(), mask)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)
