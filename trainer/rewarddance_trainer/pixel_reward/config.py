"""Pixel reward model (v2) settings without torch, so the CLI can build its --help cheaply.

``PixelRewardConfig`` is the architecture; each scale is one JSON file in ``configs/`` (a new scale is a new file,
not new code): the CPU ladder (``cpu-xs`` / ``cpu-s`` / ``cpu-m``) and the seed's ladder (``small`` / ``base`` /
``large``, ~2M / ~20M / ~200M trainable parameters). ``PixelTrainConfig`` holds the recipe's knobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rewarddance.components.base import COMPONENTS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class PixelRewardConfig:
    width: int  # token width of the image tower and the fusion transformer
    image_layers: int  # transformer blocks over the image's patch tokens alone (the part that sees the image)
    fusion_layers: int  # blocks over [component queries, prompt tokens, image tokens] together
    heads: int
    stem: tuple[int, ...] = (32, 64)  # channels of the stride-2 conv stages before the stride-2 patch conv
    # residual 3x3 conv blocks at the stem's last resolution, before the patch conv (shape is read there: an 8 x 8
    # pixel token sees the outline only through these); each starts as the identity
    stem_blocks: int = 0
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    image_size: int = 64
    prompt_tokens: int = 32  # MiniLM context length
    prompt_dim: int = 384  # MiniLM hidden size

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.image_size % self.patch:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of the stem's stride {self.patch}")
        object.__setattr__(self, "stem", tuple(self.stem))
        if self.stem_blocks < 0:
            raise ValueError(f"stem_blocks must be >= 0, got {self.stem_blocks}")

    @property
    def patch(self) -> int:
        """Pixels per image token side: every conv stage halves the resolution."""
        return 2 ** (len(self.stem) + 1)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch


def scales() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


def load_scale(name: str) -> PixelRewardConfig:
    from ..reward.config import load_config_file

    return load_config_file(CONFIG_DIR, name, PixelRewardConfig)


@dataclass(frozen=True)
class PixelTrainConfig:
    scale: str = "small"
    steps: int = 2000  # the budget rule of the ladders: every rung sees the same prompts, batches and steps
    prompts_per_batch: int = 12  # prompts per step, each with all its candidates (up to images_per_prompt)
    images_per_prompt: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    # loss = mse_weight * MSE(heads, mean ratings) + bt_weight * BT(pairs) + listwise_weight * ListNet(prompt's set)
    mse_weight: float = 10.0
    bt_weight: float = 1.0
    listwise_weight: float = 1.0
    listwise_temperature: float = 0.05  # softmax temperature on R and on the rated utility, both in [0, 1]
    # + component_listwise_weight * the same ListNet term for each head against its own mean rating (R's listwise
    # term ranks a prompt's candidates by the composite only; this asks each component to rank them too). 0: off.
    component_listwise_weight: float = 0.0
    # which heads that term ranks, comma-separated component names ("fidelity,composition"); empty: all four
    component_listwise_heads: str = ""
    # + swap_weight * softplus(F(image, another prompt) - F(image, its prompt)) on the fidelity logits, for
    # swap_images candidates of each prompt read with the next batch prompt's words: without it the fidelity head
    # learns to read the image alone (at step 500 of the first small run it scored an image the same for its own
    # prompt and a random one, 0.840 vs 0.843)
    swap_weight: float = 1.0
    swap_images: int = 4
    # + edit_swap_weight * softplus(F(image, its prompt with one colour/shape/position changed) - F(image, its
    # prompt)) for the swap_images candidates of each prompt rated most faithful: a hard negative that differs in
    # one word (edits.py; needs `rewarddance data prompt-states DATA --edited`). 0: off.
    edit_swap_weight: float = 0.0
    # blocks added to the --init model's image tower / fusion stack (after its own), each starting as the identity
    # (its two residual outputs zeroed), so the grown model scores exactly as the model it grows from until training
    # moves them: a larger model that keeps what the smaller one learned. 0: none (needs --init otherwise).
    grow_image_layers: int = 0
    grow_fusion_layers: int = 0
    grow_stem_blocks: int = 0  # likewise residual conv blocks appended to the stem (PixelRewardConfig.stem_blocks)
    # Gaussian noise on the prompt's MiniLM token states while training, as a fraction of each token's RMS: asks the
    # model to read the broad direction of a word's state rather than its exact vector, so that a synonym it never
    # saw (the shifted world's "orb", "ruby") lands where the known word does. 0: off.
    prompt_noise: float = 0.0
    eval_every: int = 250
    val_prompts: int = 300  # a fixed draw of val prompts selects the step (all their images)
    test_prompts: int = 1000  # a fixed draw (the same for every run) of test prompts for the final numbers; 0: all
    ckpt_every: int = 50
    workers: int = 1  # DataLoader processes decoding PNGs ahead of the step
    hold_out_style: str = ""  # leave-one-style-out: train and select without this style, test on all its prompts
    time_limit: float = 0.0  # seconds of training before stopping early (0: none); a safety bound, not the budget
    dropout: float | None = None  # overrides the scale's dropout
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_batch", "images_per_prompt", "eval_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.mse_weight, self.bt_weight, self.listwise_weight, self.component_listwise_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.mse_weight + self.bt_weight + self.listwise_weight == 0:
            raise ValueError("every loss weight is 0: nothing to train")
        unknown = set(self.listwise_heads) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"component_listwise_heads: unknown {sorted(unknown)}; choose from {list(COMPONENTS)}")
        if min(self.grow_image_layers, self.grow_fusion_layers, self.grow_stem_blocks) < 0:
            raise ValueError("grow_image_layers, grow_fusion_layers and grow_stem_blocks must be >= 0")
        if self.prompt_noise < 0:
            raise ValueError("prompt_noise must be >= 0")
        if self.edit_swap_weight < 0:
            raise ValueError("edit_swap_weight must be >= 0")
        if self.listwise_temperature <= 0:
            raise ValueError("listwise_temperature must be > 0")

    @property
    def listwise_heads(self) -> tuple[str, ...]:
        """The heads the per-head listwise term ranks, in the order named (all four when none are)."""
        names = tuple(n.strip() for n in self.component_listwise_heads.split(",") if n.strip())
        return names or COMPONENTS
