"""The torch modules that become the repository's ONNX graphs, with their I/O contract.

Preprocessing goes inside the graphs where it can: the image graph takes the decoded, resized uint8 pixels
(n, s, s, 3) and does the scaling, mean/std and NCHW itself; the text graph takes token ids and derives the
padding mask itself. Both return L2-normalised embeddings, as ``Encoder`` does in training. What stays outside
(decode + resize, tokenization) is ``rewarddance.preprocess`` and ``rewarddance.scoring.tokenizer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rewarddance.repository import Tensor  # the graph's I/O as its manifest records it


@dataclass(frozen=True)
class GraphSpec:
    module: nn.Module
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


class ImageGraph(nn.Module):
    def __init__(self, visual: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = pixels.permute(0, 3, 1, 2).float() / 255.0
        pooled, tokens = self.visual((x - self.mean) / self.std)
        return nn.functional.normalize(pooled.float(), dim=-1), tokens


class TextGraph(nn.Module):
    def __init__(self, text: nn.Module, pad_token_id: int) -> None:
        super().__init__()
        self.text = text
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled, tokens = self.text(input_ids)
        return nn.functional.normalize(pooled.float(), dim=-1), tokens, input_ids != self.pad_token_id


def image_graph(encoder) -> GraphSpec:
    """``encoder``: a trainer ``Encoder`` (open_clip model with output_tokens on)."""
    spec = encoder.image_spec
    module = ImageGraph(encoder.model.visual, spec.mean, spec.std).eval()
    s = spec.size
    with torch.no_grad():
        pooled, tokens = module(torch.zeros(1, s, s, 3, dtype=torch.uint8))
    return GraphSpec(
        module,
        (Tensor("pixels", "uint8", (-1, s, s, 3)),),
        (Tensor("embedding", "float32", (-1, pooled.shape[1])), Tensor("tokens", "float32", (-1, *tokens.shape[1:]))),
    )


def text_graph(encoder) -> GraphSpec:
    text = encoder.model.text
    context = int(encoder.tokenize.context_length)
    module = TextGraph(text, int(text.config.pad_token_id)).eval()
    with torch.no_grad():
        pooled, tokens, _ = module(torch.zeros(1, context, dtype=torch.int64))
    return GraphSpec(
        module,
        (Tensor("input_ids", "int64", (-1, context)),),
        (
            Tensor("embedding", "float32", (-1, pooled.shape[1])),
            Tensor("tokens", "float32", (-1, *tokens.shape[1:])),
            Tensor("mask", "bool", (-1, context)),
        ),
    )


class RewardGraph(nn.Module):
    """The reward model with R as an (n, 1) column: Triton's batched dims cannot be empty."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prompt_tokens, prompt_mask, image_tokens, signals) -> tuple[torch.Tensor, torch.Tensor]:
        components, reward = self.model(prompt_tokens, prompt_mask, image_tokens, signals)
        return components, reward.unsqueeze(-1)


def reward_graph(model) -> GraphSpec:
    cfg = model.cfg
    return GraphSpec(
        RewardGraph(model).eval(),
        (
            Tensor("prompt_tokens", "float32", (-1, cfg.prompt_tokens, cfg.prompt_dim)),
            Tensor("prompt_mask", "bool", (-1, cfg.prompt_tokens)),
            Tensor("image_tokens", "float32", (-1, cfg.image_tokens, cfg.image_dim)),
            Tensor("signals", "float32", (-1, 4)),
        ),
        (Tensor("components", "float32", (-1, 4)), Tensor("reward", "float32", (-1, 1))),
    )
