"""Encoder training settings (no torch import, so the CLI can build its --help cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderTrainConfig:
    model: str = "shapes-clip-minilm"
    steps: int = 1500
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 100
    eval_every: int = 250
    ckpt_every: int = 250
    min_fidelity_rating: float = 4.0
    # Optional: candidates of the same prompt rated unfaithful as extra negatives, to teach attribute binding
    # (colour, shape, size, position, count) that in-batch negatives of other prompts rarely test.
    hard_negatives: bool = False
    max_negative_rating: float = 3.0
    seed: int = 0
