"""One DDIM step as a Gaussian policy: mean, standard deviation and log-probability of the sampled x_{t-1}.

DDIM with ``eta > 0`` moves from x_t to x_{t-1} ~ N(mu_theta(x_t, t), sigma_t^2 I) with

    x0    = clip((x_t - sqrt(1 - a_t) eps) / sqrt(a_t))
    sigma = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    mu    = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps

(a = the scheduler's cumulative alphas), which is what ``DDIMScheduler.step`` computes; here the mean and sigma are
returned so the log-probability of a recorded x_{t-1} and the KL between two policies at the same x_t are exact.
Log-probabilities and KLs are averaged over pixels (as DDPO does), so their scale does not grow with resolution.
With ``set_alpha_to_one`` the last step has a_prev = 1 and sigma = 0: it is deterministic and carries no action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepParams:
    a_t: float
    a_prev: float
    sigma: float  # 0 for a deterministic step

    @property
    def stochastic(self) -> bool:
        return self.sigma > 0


def step_params(scheduler, t: int, num_steps: int, eta: float) -> StepParams:
    prev_t = int(t) - scheduler.config.num_train_timesteps // num_steps
    acp = scheduler.alphas_cumprod
    a_t = float(acp[int(t)])
    a_prev = float(acp[prev_t]) if prev_t >= 0 else float(scheduler.final_alpha_cumprod)
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    return StepParams(a_t, a_prev, eta * math.sqrt(max(variance, 0.0)))


def step_mean(scheduler, eps: torch.Tensor, x: torch.Tensor, p: StepParams) -> torch.Tensor:
    x0 = (x - math.sqrt(1 - p.a_t) * eps) / math.sqrt(p.a_t)
    if scheduler.config.clip_sample:
        r = scheduler.config.clip_sample_range
        x0 = x0.clamp(-r, r)
    return math.sqrt(p.a_prev) * x0 + math.sqrt(max(1 - p.a_prev - p.sigma**2, 0.0)) * eps


def log_prob(x_prev: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-sample Gaussian log-density of x_prev under N(mean, sigma^2 I), averaged over pixels."""
    lp = -((x_prev.detach() - mean) ** 2) / (2 * sigma**2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).mean(1)


def gaussian_kl(mean: torch.Tensor, base_mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-sample KL(N(mean, s^2) || N(base_mean, s^2)) = |mean - base_mean|^2 / (2 s^2), averaged over pixels."""
    return ((mean - base_mean) ** 2).flatten(1).mean(1) / (2 * sigma**2)
