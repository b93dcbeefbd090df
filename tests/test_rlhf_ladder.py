"""benchmarks/rlhf_ladder.py: one recipe's RL rows pooled over seeds per reward model, beside its best-of-16."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def ladder():
    return load_script("rlhf_ladder")


def _rl(model: str, r: float, seed: int, step: int, gain: float, gap: float, lr: str = "1e-3 recipe") -> dict:
    return {
        "reward_model": model,
        "test_spearman_R": r,
        "method": "rlhf",
        "lr": lr,
        "seed": seed,
        "steps": step,
        "gold_gain_rel": gain,
        "hacking_gap": gap,
        "gold_tuned": 0.2 * (1 + gain),
        "kl": 0.02,
    }


def test_seeds_are_pooled_per_reward_model_and_other_recipes_left_out(ladder, tmp_path):
    rows = [
        _rl("m v10", 0.82, 0, 20, 0.40, -0.2),
        _rl("m v10", 0.82, 1, 20, 0.30, -0.1),
        _rl("m v10", 0.82, 2, 20, 0.50, -0.3),
        _rl("m v1", 0.56, 0, 20, 0.20, 0.1),
        _rl("m v1", 0.56, 0, 10, 0.90, 0.0),  # another step: not asked for
        _rl("m v10", 0.82, 3, 20, 0.99, 0.0, lr="another recipe"),
        {"reward_model": "m v10", "method": "best_of_n", "n": 16, "gold_gain_rel": 0.11},
        {"reward_model": "m v10", "method": "best_of_n", "n": 4, "gold_gain_rel": 0.01},
    ]
    entries = ladder.ladder(rows, "1e-3 recipe", [20])
    assert [e["reward_model"] for e in entries] == ["m v1", "m v10"]  # sorted by test R
    v1, v10 = entries
    assert v10["seeds"] == [0, 1, 2]
    assert v10["gold_gain"] == pytest.approx((0.40, 0.10))  # mean and sample sd of 0.3 / 0.4 / 0.5
    assert v10["hacking_gap"] == pytest.approx((-0.2, 0.1))
    assert v10["bon16_gold_gain"] == pytest.approx(0.11)
    assert v1["gold_gain"] == (pytest.approx(0.20), 0.0) and v1["bon16_gold_gain"] is None
    text = ladder.table(entries)
    assert "| m v10 | 0.820 | 20 | 3 | +40.0% ± 10.0 | -20.0 ± 10.0 pts |" in text
    ladder.plot(entries, tmp_path / "ladder.png", "t")
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
