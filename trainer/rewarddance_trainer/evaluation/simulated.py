"""Simulated A/B: the shapes world's raters judge each (A, B) pair from the oracle's reading of both images, and
the served reward's order is checked against their votes (on generated images, not rendered ones).

Each pair gets ``raters`` independent Davidson-Bradley-Terry draws over the oracle's utility
``U = w . (fidelity, style, composition, novelty)`` (``shapes/raters.py``: temperature 0.04, tie strength 0.3, the
dataset defaults). Intervals are bootstrap over prompts (all votes of a prompt resampled together).
"""

from __future__ import annotations

import numpy as np

from rewarddance.ab.stats import bootstrap_interval

from ..shapes.raters import RaterConfig, preferences


def simulated_votes(u_a: np.ndarray, u_b: np.ndarray, raters: int, seed: int = 0) -> np.ndarray:
    """(pairs, raters) outcomes 'a' | 'b' | 'tie' (B is the second argument of the rater model)."""
    rng = np.random.default_rng([seed, 4242])
    a, b = np.repeat(u_a, raters), np.repeat(u_b, raters)
    return preferences(a, b, RaterConfig(), rng).reshape(len(u_a), raters)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, n_boot: int, seed: int) -> dict:
    """sum(num) / sum(den) over prompts, with its bootstrap interval over prompts."""
    stat = lambda i: float(numerator[i].sum() / denominator[i].sum()) if denominator[i].sum() else float("nan")  # noqa: E731
    return {
        "mean": stat(np.arange(len(numerator))),
        "ci95": list(bootstrap_interval(stat, len(numerator), n_boot, seed)),
        "n": int(denominator.sum()),
    }


def simulated_ab(
    u_a: np.ndarray,
    u_b: np.ndarray,
    reward_a: np.ndarray,
    reward_b: np.ndarray,
    n_per_prompt: int,
    raters: int = 3,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Win / tie / loss of B against A and the reward model's agreement with the simulated votes.

    Inputs are per pair, prompt-major (``n_per_prompt`` pairs per prompt)."""
    votes = simulated_votes(u_a, u_b, raters, seed)
    per_prompt = votes.reshape(-1, n_per_prompt * raters)
    total = np.full(len(per_prompt), float(per_prompt.shape[1]))
    count = {label: (per_prompt == label).sum(1).astype(float) for label in ("a", "b", "tie")}
    decided = count["a"] + count["b"]
    b_over_a = np.repeat(reward_b > reward_a, raters).reshape(per_prompt.shape)
    comparable = np.repeat(reward_b != reward_a, raters).reshape(per_prompt.shape) & (per_prompt != "tie")
    agree = (comparable & (b_over_a == (per_prompt == "b"))).sum(1).astype(float)
    u_over = np.repeat(u_b > u_a, raters).reshape(per_prompt.shape)
    u_comparable = np.repeat(u_b != u_a, raters).reshape(per_prompt.shape) & (per_prompt != "tie")
    u_agree = (u_comparable & (u_over == (per_prompt == "b"))).sum(1).astype(float)
    return {
        "raters_per_pair": raters,
        "pairs": len(u_a),
        "votes": int(votes.size),
        "b_preferred": _ratio(count["b"], total, n_boot, seed),
        "tie": _ratio(count["tie"], total, n_boot, seed),
        "a_preferred": _ratio(count["a"], total, n_boot, seed),
        "b_win_rate_decided": _ratio(count["b"], decided, n_boot, seed),
        "reward_agrees_with_raters": _ratio(agree, comparable.sum(1).astype(float), n_boot, seed),
        # the same votes against the oracle utility they were drawn from: the best any scorer can agree
        "oracle_utility_agrees_with_raters": _ratio(u_agree, u_comparable.sum(1).astype(float), n_boot, seed),
        "votes_by_pair": votes.tolist(),
    }
