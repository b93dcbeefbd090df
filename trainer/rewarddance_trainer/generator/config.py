"""Training settings of the generator (every field is also a ``rewarddance train generator`` flag)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Named prompts of the periodic sample grids and of the contact sheets in docs and benchmarks.
DEMO_PROMPTS = (
    "a large red circle in the center",
    "a small blue square near the top left",
    "a green triangle on the right, watercolor",
    "a big yellow star at the bottom, glowing neon sign",
    "a purple hexagon and an orange diamond, flat vector illustration",
    "a cyan circle on a black background, pixel art",
)


@dataclass
class GeneratorTrainConfig:
    steps: int = 4000
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cond_drop: float = 0.1  # probability of replacing the prompt by the empty prompt (classifier-free guidance)
    image_size: int = 32
    width: int = 32  # UNet base channels (block widths width, 2x, 4x)
    num_train_timesteps: int = 1000
    synthetic: int = 0  # extra prompts rendered by the shapes renderer (2 images each)
    splits: str = "train,val"  # dataset splits whose error-free images are trained on
    sample_every: int = 500
    ckpt_every: int = 250
    sample_steps: int = 25
    sample_guidance: float = 3.0
    seed: int = 0
    # LoRA fine-tuning of a user's diffusers pipeline (--base): rank and alpha of the adapters on the UNet attention.
    lora_rank: int = 8
    lora_alpha: float = 8.0

    def to_dict(self) -> dict:
        return asdict(self)
