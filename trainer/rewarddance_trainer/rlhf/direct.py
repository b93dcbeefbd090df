"""Reward-gradient fine-tuning (DRaFT-K / AlignProp style): the reward model's gradient with respect to the sampled
pixels, backpropagated through the last K steps of the same DDIM chain the PPO rollout samples, with DPOK's per-step
KL to the frozen base as the anchor:

    x_T ~ N(0, I),   x_{t-1} = mu_theta(x_t) + sigma_t z   (z fixed by the step's seed)
    L = -mean_i R(x_0^i, prompt_i) + beta * mean_i sum_k KL_k^i

The reward R is a differentiable torch model (``DifferentiableReward``: the pixel reward model of a training run,
the same weights the repository serves). Before the last K steps the state is detached: those steps get gradient
from their own KL term only (computed and backpropagated one step at a time, so memory holds one step's graph);
the last K steps (deterministic ones included) carry the reward's gradient back into the UNet. PPO needs a score
per sample and no more; this needs the reward's gradient, so it cannot go through the gateway: the served reward
still scores every batch for the record, beside the torch reward's own value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..generator.pipeline import to_uint8
from .ddim import gaussian_kl, step_mean, step_params

# (n, 3, h, w) float in [-1, 1], one prompt per image -> (n,) differentiable reward
GradRewardFn = Callable[[torch.Tensor, list[str]], torch.Tensor]


def _chain_with_grad(policy, cond, prompts, grad_reward: GradRewardFn, cfg, gen: torch.Generator):
    """Sample one chain; backpropagate beta * KL of each early step as it goes; return the loss still to
    backpropagate (the reward and the window's KL), the images and the chain's KL per sample (detached)."""
    scheduler = policy.pipe.scheduler
    unet = policy.unet
    n = cond[0].shape[0]
    size = unet.config.sample_size
    x = torch.randn((n, unet.config.in_channels, size, size), generator=gen) * scheduler.init_noise_sigma
    scheduler.set_timesteps(cfg.sample_steps)
    timesteps = list(scheduler.timesteps)
    window_from = len(timesteps) - cfg.grad_steps
    kl_total = torch.zeros(n)
    kl_window = torch.zeros(n)
    for i, t in enumerate(timesteps):
        p = step_params(scheduler, int(t), cfg.sample_steps, cfg.eta)
        in_window = i >= window_from
        stochastic = p.sigma >= max(cfg.min_sigma, 1e-12)
        needs_grad = in_window or (stochastic and cfg.kl_coef > 0)
        with torch.set_grad_enabled(needs_grad):
            x_in = x if in_window else x.detach()
            mean = step_mean(scheduler, policy.eps(x_in, t, cond), x_in, p)
            if not stochastic:
                x = mean
                continue
            base_mean = step_mean(scheduler, policy.base_eps(x_in.detach(), t, cond), x_in.detach(), p)
            kl = gaussian_kl(mean, base_mean, p.sigma)
            kl_total += kl.detach()
            noise = torch.randn(x.shape, generator=gen)
            if in_window:
                kl_window = kl_window + kl
                x = mean + p.sigma * noise
            else:
                if needs_grad:  # this step's KL gradient now; the state goes on without a graph
                    (cfg.kl_coef * kl.mean()).backward()
                x = (mean + p.sigma * noise).detach()
    reward = grad_reward(x.clamp(-1, 1), prompts)
    loss = -reward.mean() + cfg.kl_coef * kl_window.mean()
    return loss, to_uint8(x.detach()), kl_total, reward.detach()


def reward_grad_update(policy, opt, grad_reward: GradRewardFn, cond, prompts: list[str], cfg, gen) -> dict:
    """One RL step: the batch in minibatches of ``cfg.minibatch`` samples, each sampled by the current policy and
    followed by one optimiser step. Returns the images, their chain KL and reward, and the costs."""
    params = policy.parameters()
    n = cond[0].shape[0]
    images, kls, rewards, losses, norms = [], [], [], [], []
    seconds_forward = seconds_backward = 0.0
    was_training = policy.unet.training
    policy.unet.eval()  # the same network as sampling (no dropout); the adapters still train
    for i in range(0, n, cfg.minibatch):
        j = min(i + cfg.minibatch, n)
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        mb_cond = (cond[0][i:j], cond[1][i:j])
        loss, imgs, kl, reward = _chain_with_grad(policy, mb_cond, prompts[i:j], grad_reward, cfg, gen)
        t1 = time.perf_counter()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)))
        opt.step()
        seconds_forward += t1 - t0
        seconds_backward += time.perf_counter() - t1
        images.append(imgs)
        kls.append(kl)
        rewards.append(reward)
        losses.append(float(-reward.mean() + cfg.kl_coef * kl.mean()))  # the whole chain's KL, early steps too
    policy.unet.train(was_training)
    return {
        "images": np.concatenate(images),
        "kl": torch.cat(kls),
        "reward_grad": float(torch.cat(rewards).mean()),
        "loss": float(np.mean(losses)),
        "grad_norm": float(np.mean(norms)),
        "seconds_sampling": seconds_forward,  # the chain's forward passes (early steps' KL backward included)
        "seconds_update": seconds_backward,  # the reward's backward through the window and the optimiser step
    }
