"""Sample images with the policy along a DDIM chain and record what the update needs.

For each stochastic step k: the state x_t, the sampled x_{t-1}, its log-probability under the sampling policy, and
the KL of the policy's step to the frozen base's at the same x_t (the base's mean is computed here, once, so the
update needs no second forward pass through the base).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..generator.pipeline import to_uint8
from .ddim import StepParams, gaussian_kl, log_prob, step_mean, step_params


@dataclass
class Rollout:
    states: torch.Tensor  # (n, K, c, h, w) x_t before each stochastic step
    next_states: torch.Tensor  # (n, K, c, h, w) the sampled x_{t-1}
    log_probs: torch.Tensor  # (n, K) under the sampling policy
    base_means: torch.Tensor  # (n, K, c, h, w) the frozen base's mean at each x_t
    timesteps: list[int]  # (K,) the stochastic steps' t
    params: list[StepParams]
    kl: torch.Tensor  # (n,) KL to the base summed over the chain's steps (pixel-averaged per step)
    images: np.ndarray  # (n, h, w, 3) uint8


@torch.no_grad()
def rollout(
    policy,
    cond: tuple[torch.Tensor, torch.Tensor],
    num_steps: int,
    eta: float,
    generator: torch.Generator,
    min_sigma: float = 0.0,
    with_base: bool = True,
) -> Rollout:
    """``cond`` holds one (states, mask) row per sample (prompts already repeated).

    Steps whose sigma is below ``min_sigma`` are taken at their mean: the last steps of a squared-cosine schedule
    have sigma ~0.006, where a log-probability ratio or KL would be dominated by a negligible amount of noise.
    ``with_base=False`` skips the base's forward pass (plain sampling: base_means and kl are then meaningless zeros).
    """
    scheduler = policy.pipe.scheduler
    unet = policy.unet
    n = cond[0].shape[0]
    size = unet.config.sample_size
    x = torch.randn((n, unet.config.in_channels, size, size), generator=generator) * scheduler.init_noise_sigma
    scheduler.set_timesteps(num_steps)
    states, nexts, lps, bases, ts, ps = [], [], [], [], [], []
    kl = torch.zeros(n)
    was_training = unet.training
    unet.eval()
    for t in scheduler.timesteps:
        p = step_params(scheduler, int(t), num_steps, eta)
        mean = step_mean(scheduler, policy.eps(x, t, cond), x, p)
        if p.sigma < max(min_sigma, 1e-12):
            x = mean
            continue
        base_mean = step_mean(scheduler, policy.base_eps(x, t, cond), x, p) if with_base else mean
        x_prev = mean + p.sigma * torch.randn(x.shape, generator=generator)
        states.append(x)
        nexts.append(x_prev)
        lps.append(log_prob(x_prev, mean, p.sigma))
        bases.append(base_mean)
        kl += gaussian_kl(mean, base_mean, p.sigma)
        ts.append(int(t))
        ps.append(p)
        x = x_prev
    unet.train(was_training)
    return Rollout(
        states=torch.stack(states, 1),
        next_states=torch.stack(nexts, 1),
        log_probs=torch.stack(lps, 1),
        base_means=torch.stack(bases, 1),
        timesteps=ts,
        params=ps,
        kl=kl,
        images=to_uint8(x),
    )
