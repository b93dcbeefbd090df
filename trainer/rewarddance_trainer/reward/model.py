"""The reward model: a pre-LN transformer over [CLS] + prompt tokens + image tokens + the 4 baseline signals.

Inputs come straight from the feature cache: MiniLM prompt states (n, 32, 384) with their mask, ViT patch tokens
(n, 64, 192) and the four component scores of the baseline scorers (n, 4). Each input segment is layer-normed and
projected to the model width; prompt and image tokens get their own learned position tables (which also tell the
segments apart); each signal token is its scalar times a learned vector plus that signal's own learned embedding.
Four heads on the final [CLS] state give the components in [0, 1] (sigmoid) and R = components @ weights.

The forward pass is plain tensor ops with static shapes and a boolean key-padding mask, no data-dependent Python
control flow, so it exports to ONNX (the exporter's job) with a dynamic batch dimension.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from rewarddance.components.base import COMPONENTS
from rewarddance.components.composite import resolve_weights

from .config import RewardModelConfig

WEIGHTS_FILE = "reward.safetensors"
MANIFEST_FILE = "run.json"
INIT_STD = 0.02
INIT_BT_SCALE = 10.0  # R differences between candidates are ~0.1, so logits start near +-1


class RewardModel(nn.Module):
    def __init__(self, cfg: RewardModelConfig, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.prompt_in = nn.Sequential(nn.LayerNorm(cfg.prompt_dim), nn.Linear(cfg.prompt_dim, d))
        self.image_in = nn.Sequential(nn.LayerNorm(cfg.image_dim), nn.Linear(cfg.image_dim, d))
        self.cls = nn.Parameter(torch.randn(1, 1, d) * INIT_STD)
        self.prompt_position = nn.Parameter(torch.randn(1, cfg.prompt_tokens, d) * INIT_STD)
        self.image_position = nn.Parameter(torch.randn(1, cfg.pooled_image_tokens, d) * INIT_STD)
        self.signal_vector = nn.Parameter(torch.randn(1, len(COMPONENTS), d) * INIT_STD)
        self.signal_type = nn.Parameter(torch.randn(1, len(COMPONENTS), d) * INIT_STD)
        layer = nn.TransformerEncoderLayer(
            d,
            cfg.heads,
            dim_feedforward=round(d * cfg.mlp_ratio),
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors would make the eval path depend on the mask's values; export needs one static graph.
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        for block in self.encoder.layers:
            block.self_attn.in_proj_bias.register_hook(_drop_key_bias_grad)
        self.norm = nn.LayerNorm(d)
        self.heads = nn.Linear(d, len(COMPONENTS))
        # Bradley-Terry temperature: P(a beats b) = sigmoid(exp(bt_log_scale) * (R_a - R_b)); exp keeps it positive.
        self.bt_log_scale = nn.Parameter(torch.tensor(math.log(INIT_BT_SCALE)))
        # R's weights travel with the checkpoint; serving may still override them per request.
        self.register_buffer("weights", torch.tensor(resolve_weights(weights).vector, dtype=torch.float32))

    def pool_image(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """(n, g*g, w) row-major patch tokens -> (n, (g/p)^2, w) by p x p block means."""
        g, p, w = self.cfg.image_grid, self.cfg.image_pool, image_tokens.shape[-1]
        blocks = image_tokens.reshape(-1, g // p, p, g // p, p, w)
        return blocks.mean(dim=(2, 4)).reshape(-1, (g // p) ** 2, w)

    def forward(
        self, prompt_tokens: torch.Tensor, prompt_mask: torch.Tensor, image_tokens: torch.Tensor, signals: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """prompt_tokens (n, L, 384), prompt_mask (n, L) bool (True = real token), image_tokens (n, T, 192),
        signals (n, 4) in [0, 1] -> (components (n, 4) in [0, 1], reward (n,))."""
        n = prompt_tokens.shape[0]
        prompt = self.prompt_in(prompt_tokens) + self.prompt_position
        image = self.image_in(self.pool_image(image_tokens)) + self.image_position
        signal = signals.unsqueeze(-1) * self.signal_vector + self.signal_type
        tokens = torch.cat([self.cls.expand(n, -1, -1), prompt, image, signal], dim=1)
        keep_rest = prompt_mask.new_ones(n, self.cfg.pooled_image_tokens + len(COMPONENTS))
        keep = torch.cat([prompt_mask.new_ones(n, 1), prompt_mask, keep_rest], dim=1)
        hidden = self.encoder(tokens, src_key_padding_mask=~keep)
        components = torch.sigmoid(self.heads(self.norm(hidden[:, 0])))
        return components, components @ self.weights

    @property
    def bt_scale(self) -> torch.Tensor:
        return self.bt_log_scale.exp()


def _drop_key_bias_grad(grad: torch.Tensor) -> torch.Tensor:
    """Zero the key third of the packed q/k/v bias gradient.

    A key bias adds the same q.b to every logit of a query, which softmax ignores: its exact gradient is 0, but
    Adam would blow float round-off up into lr-sized steps, so runs would depend on summation order (a DDP run
    and a single-process run would drift apart there) for no effect on the outputs.
    """
    third = grad.shape[0] // 3
    keep = torch.ones_like(grad)
    keep[third : 2 * third] = 0
    return grad * keep


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_parameters(cfg: RewardModelConfig) -> int:
    """Exact count without allocating weights (the large scale is ~200M)."""
    with torch.device("meta"):
        return parameter_count(RewardModel(cfg))


def load_model(run: Path) -> RewardModel:
    """The trained model of a finished run directory (its manifest holds the architecture)."""
    run_json = json.loads((run / MANIFEST_FILE).read_text())
    model = RewardModel(RewardModelConfig(**run_json["model"]))
    model.load_state_dict(load_file(run / WEIGHTS_FILE))
    return model.eval()
