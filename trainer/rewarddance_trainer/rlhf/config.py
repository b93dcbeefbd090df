"""Settings of ``rewarddance train rlhf`` (every field is also a flag). Defaults are sized for 2 CPU cores at 32 px."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class RLHFConfig:
    steps: int = 40  # RL steps (one rollout batch + its PPO update each)
    prompts_per_step: int = 8  # distinct training prompts per rollout batch
    samples_per_prompt: int = 4  # samples per prompt (the group its advantages are normalised over)
    sample_steps: int = 10  # DDIM steps of the sampling chain (each stochastic step is one policy action)
    eta: float = 1.0  # DDIM eta: 1 gives DDPM-like Gaussian transitions
    min_sigma: float = 0.05  # steps with less noise than this are taken deterministically and are not actions
    guidance: float = 1.0  # classifier-free guidance of the policy (1 = conditional branch only, half the cost)
    lr: float = 3e-4
    lr_schedule: str = "constant"  # or "cosine": lr decays from --lr to 0 at --steps (late updates stay small)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_range: float = 1e-4  # PPO clip of the importance ratio (per-step ratios stay near 1; DDPO's value)
    adv_clip: float = 5.0  # normalised advantages are clipped to [-adv_clip, adv_clip]
    kl_coef: float = 0.01  # weight of the per-step Gaussian KL to the frozen base (DPOK)
    inner_epochs: int = 1  # PPO passes over each rollout batch
    minibatch: int = 16  # samples per gradient step of the update
    lora: bool = True  # LoRA adapters (peft) on the UNet attention; False fine-tunes the whole UNet
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = "attention"  # "attention" (q/k/v/out projections) or "all" (those + every convolution)
    # learning rate of the convolution adapters (lora_targets "all") as a multiple of --lr: they move the policy
    # ~70 times as far in KL per step as the attention adapters at the same rate
    conv_lr_scale: float = 1.0
    # "ppo": clipped policy gradient on scores (any reward, the gateway included); "reward-grad": the torch reward
    # model's gradient backpropagated through the last grad_steps DDIM steps (DRaFT-K; needs --reward-run)
    algorithm: str = "ppo"
    grad_steps: int = 2  # reward-grad: how many of the chain's last steps carry the reward's gradient
    reward_run: str = ""  # reward-grad: the pixel reward run directory whose torch model gives the gradient
    # (comma-separated directories: an ensemble, R = members' mean - reward_ensemble_penalty * their std)
    reward_ensemble_penalty: float = 0.0
    reward_weights: str = ""  # component weights sent with each request, e.g. "fidelity=1" (default: the model's)
    reward_model: str = ""  # model name to pin (default: the service's default model)
    reward_version: int = 0  # version to pin (0: the model's default version)
    eval_every: int = 10  # held-out evaluation every this many steps (and at the start and end)
    eval_prompts: int = 200  # first N prompts of the test split, one sample each at a fixed seed
    # first N prompts of the val split, sampled at every evaluation and scored by the proxy alone; the policy with the
    # best mean is kept in best/ (early stopping that needs neither the test prompts nor gold; 0: off)
    val_prompts: int = 0
    ckpt_every: int = 5
    split: str = "train"  # prompts the policy is trained on
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"--lr-schedule: expected constant or cosine, got {self.lr_schedule!r}")
        if self.lora_targets not in ("attention", "all"):
            raise ValueError(f"--lora-targets: expected attention or all, got {self.lora_targets!r}")
        if self.algorithm not in ("ppo", "reward-grad"):
            raise ValueError(f"--algorithm: expected ppo or reward-grad, got {self.algorithm!r}")
        if not 1 <= self.grad_steps <= self.sample_steps:
            raise ValueError(f"--grad-steps: expected 1 to --sample-steps ({self.sample_steps}), got {self.grad_steps}")
        if self.conv_lr_scale <= 0:
            raise ValueError(f"--conv-lr-scale: expected a positive multiple of --lr, got {self.conv_lr_scale}")
        if self.conv_lr_scale != 1.0 and self.lora_targets != "all":
            raise ValueError("--conv-lr-scale applies to the convolution adapters: it needs --lora-targets all")

    def lr_at(self, step: int) -> float:
        """The learning rate of RL step ``step`` (a pure function of the step, so a resumed run repeats it)."""
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))

    def weights(self) -> dict[str, float] | None:
        """``reward_weights`` as a dict ("fidelity=1,style=0.5" -> {...}); None for the model's defaults."""
        if not self.reward_weights.strip():
            return None
        out = {}
        for item in self.reward_weights.split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--reward-weights: expected name=value, got {item!r}")
            out[name.strip()] = float(value)
        return out
