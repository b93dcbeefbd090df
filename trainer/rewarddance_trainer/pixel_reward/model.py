"""The pixel reward model (v2): looks at the image itself and reads the prompt's token states.

    pixels (n, s, s, 3) uint8 -> conv stem (stride 2 per stage, then ``stem_blocks`` residual 3x3 blocks)
        -> patch tokens (g x g, no pooling) + positions
        -> ``image_layers`` transformer blocks (the image tower: it grows with the scale)
    MiniLM token states (n, 32, 384) -> LayerNorm + Linear + positions
    [4 component queries | prompt tokens | image tokens] -> ``fusion_layers`` blocks (words and patches attend to
        each other, so a colour word can bind to the patch that shows it) -> one head per query -> sigmoid
    R = components @ weights

Plain tensor ops with static shapes and a boolean key mask, so the whole thing, pixel scaling included, exports to
one ONNX graph with a dynamic batch axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from rewarddance.components.base import COMPONENTS
from rewarddance.components.composite import resolve_weights

from .config import PixelRewardConfig

WEIGHTS_FILE = "reward.safetensors"
MANIFEST_FILE = "run.json"
INIT_STD = 0.02
INIT_BT_SCALE = 10.0  # R differences between candidates are ~0.1, so logits start near +-1
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


class Block(nn.Module):
    """Pre-LN transformer block; ``keep`` (n, 1, 1, L) bool says which keys each query may attend to."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = round(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
        x = x + self.proj(attended.transpose(1, 2).reshape(n, length, width))
        return x + self.mlp(self.norm2(x))


def conv_stem(channels: tuple[int, ...], width: int) -> nn.Sequential:
    """3x3 stride-2 convolutions with batch norm and GELU, then a 2x2 stride-2 patch projection to the token width.
    (Without the norms a from-scratch stem learns several times slower here: composition barely moves in 500 steps.)"""
    layers: list[nn.Module] = []
    previous = 3
    for c in channels:
        layers += [nn.Conv2d(previous, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.GELU()]
        previous = c
    layers.append(nn.Conv2d(previous, width, 2, stride=2))
    return nn.Sequential(*layers)


class StemBlock(nn.Module):
    """Residual 3x3 conv block at the stem's last resolution: x + conv(GELU(BN(conv(x)))). The second conv starts at
    zero, so a new block is the identity until training moves it (as ``identity_block_`` does for transformer
    blocks): a model grown by stem blocks scores exactly as the one it grew from."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.norm(self.conv1(x))))


class PixelRewardModel(nn.Module):
    def __init__(self, cfg: PixelRewardConfig, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d, n_comp = cfg.width, len(COMPONENTS)
        self.stem = conv_stem(cfg.stem, d)
        self.stem_blocks = nn.ModuleList(StemBlock(cfg.stem[-1]) for _ in range(cfg.stem_blocks))
        self.stem_norm = nn.LayerNorm(d)
        self.image_position = nn.Parameter(torch.randn(1, cfg.grid * cfg.grid, d) * INIT_STD)
        self.image_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.image_layers)
        )
        self.prompt_in = nn.Sequential(nn.LayerNorm(cfg.prompt_dim), nn.Linear(cfg.prompt_dim, d))
        self.prompt_position = nn.Parameter(torch.randn(1, cfg.prompt_tokens, d) * INIT_STD)
        self.queries = nn.Parameter(torch.randn(1, n_comp, d) * INIT_STD)
        self.fusion_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.fusion_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head_weight = nn.Parameter(torch.randn(n_comp, d) * INIT_STD)  # one linear head per component query
        self.head_bias = nn.Parameter(torch.zeros(n_comp))
        # Bradley-Terry temperature: P(a beats b) = sigmoid(exp(bt_log_scale) * (R_a - R_b)); exp keeps it positive.
        self.bt_log_scale = nn.Parameter(torch.tensor(math.log(INIT_BT_SCALE)))
        # R's weights travel with the checkpoint; serving may still override them per request.
        self.register_buffer("weights", torch.tensor(resolve_weights(weights).vector, dtype=torch.float32))

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, s, s, 3) uint8 -> (n, g*g, width) contextualised patch tokens."""
        x = (pixels.permute(0, 3, 1, 2).float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
        *convs, patchify = self.stem
        for layer in convs:
            x = layer(x)
        for block in self.stem_blocks:
            x = block(x)
        tokens = self.stem_norm(patchify(x).flatten(2).transpose(1, 2)) + self.image_position
        for block in self.image_blocks:
            tokens = block(tokens)
        return tokens

    def forward(
        self, pixels: torch.Tensor, prompt_tokens: torch.Tensor, prompt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (n, s, s, 3) uint8, prompt_tokens (n, L, 384) MiniLM states, prompt_mask (n, L) bool (True = a
        real token) -> (components (n, 4) in [0, 1], reward (n,))."""
        components = torch.sigmoid(self.fuse(self.image_tokens(pixels), prompt_tokens, prompt_mask))
        return components, components @ self.weights

    def fuse(self, image: torch.Tensor, prompt_tokens: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """Image tokens (n, g*g, width) read together with a prompt -> component logits (n, 4). Training fuses the
        same image tokens with another prompt too (the prompt-swap term), without recomputing the image tower."""
        n = image.shape[0]
        prompt = self.prompt_in(prompt_tokens) + self.prompt_position[:, : prompt_tokens.shape[1]]
        queries = self.queries.expand(n, -1, -1)
        tokens = torch.cat([queries, prompt, image], dim=1)
        keep = torch.cat(
            [prompt_mask.new_ones(n, queries.shape[1]), prompt_mask, prompt_mask.new_ones(n, image.shape[1])], dim=1
        )
        keep = keep[:, None, None, :]
        for block in self.fusion_blocks:
            tokens = block(tokens, keep)
        read = self.norm(tokens[:, : queries.shape[1]])
        return (read * self.head_weight).sum(-1) + self.head_bias

    @property
    def bt_scale(self) -> torch.Tensor:
        return self.bt_log_scale.exp()


def identity_block_(block: Block) -> Block:
    """Zero a block's two residual outputs (the attention projection and the MLP's last layer): it maps x to x exactly,
    and training moves it from there (the gradients of those two layers are not zero)."""
    for layer in (block.proj, block.mlp[2]):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return block


def load_grown(
    model: PixelRewardModel, state: Mapping[str, torch.Tensor], image_from: int, fusion_from: int, stem_from: int = 0
) -> None:
    """Load a smaller model's weights into ``model``, whose image blocks from ``image_from``, fusion blocks from
    ``fusion_from`` and stem blocks from ``stem_from`` on are new: those start as the identity, so ``model`` scores
    exactly as the smaller one did."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    new = {f"image_blocks.{i}." for i in range(image_from, len(model.image_blocks))}
    new |= {f"fusion_blocks.{i}." for i in range(fusion_from, len(model.fusion_blocks))}
    new |= {f"stem_blocks.{i}." for i in range(stem_from, len(model.stem_blocks))}
    stray = [k for k in missing if not any(k.startswith(p) for p in new)]
    if unexpected or stray:
        raise ValueError(f"the weights do not fit this architecture: unexpected {unexpected}, missing {stray}")
    for block in list(model.image_blocks)[image_from:] + list(model.fusion_blocks)[fusion_from:]:
        identity_block_(block)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_parameters(cfg: PixelRewardConfig) -> int:
    """Exact trainable count without allocating weights (the large scale is ~200M)."""
    with torch.device("meta"):
        return parameter_count(PixelRewardModel(cfg))


def model_from(run_json: dict, state: dict[str, torch.Tensor]) -> PixelRewardModel:
    """The model a run.json describes (architecture, R weights), holding ``state``, in eval mode."""
    model = PixelRewardModel(PixelRewardConfig(**run_json["model"]), run_json.get("weights"))
    model.load_state_dict(state)
    return model.eval()


def load_model(run: Path) -> PixelRewardModel:
    """The trained model of a finished run directory (its run.json holds the architecture)."""
    return model_from(json.loads((run / MANIFEST_FILE).read_text()), load_file(run / WEIGHTS_FILE))
