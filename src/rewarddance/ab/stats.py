"""Percentile bootstrap intervals (numpy only: the evaluation suite and the A/B page share them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

N_BOOT = 2000


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over ``n_boot`` resamples (with replacement) of ``range(n)``.

    The statistic gets the resampled indices, so paired data (A and B of the same prompt) stays paired. NaN
    resamples (e.g. no decided vote in the draw) are dropped; (nan, nan) when none is finite or n is 0.
    """
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Mean of per-unit values with its 95% bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_interval(lambda i: float(values[i].mean()), len(values), n_boot, seed)
    return {"mean": float(values.mean()) if len(values) else float("nan"), "ci95": [low, high]}


def outcome_rates(outcomes: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Rates of 'b' (B preferred), 'tie' and 'a' in an array of outcomes, each with a 95% bootstrap interval, and
    B's win rate among decided outcomes (ties excluded)."""
    outcomes = np.asarray(outcomes)
    out: dict = {"n": len(outcomes)}
    for label, key in (("b", "b_preferred"), ("tie", "tie"), ("a", "a_preferred")):
        hit = (outcomes == label).astype(np.float64)
        out[key] = mean_interval(hit, n_boot, seed)

    def decided_b(i: np.ndarray) -> float:
        o = outcomes[i]
        decided = o != "tie"
        return float((o[decided] == "b").mean()) if decided.any() else float("nan")

    everything = np.arange(len(outcomes))
    out["b_win_rate_decided"] = {
        "mean": decided_b(everything) if len(outcomes) else float("nan"),
        "ci95": list(bootstrap_interval(decided_b, len(outcomes), n_boot, seed)),
    }
    return out
