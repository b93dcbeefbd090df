"""benchmarks/pixel_scaling.py's bookkeeping: seed rows fold into their rung's row (mean and spread of test R),
whether they were trained by the ladder or added as finished runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pixel_scaling.py"


@pytest.fixture(scope="module")
def scaling():
    return load_script("pixel_scaling")


def _row(name: str, r: float) -> dict:
    return {"name": name, "in_domain": {"spearman_reward": r}}


def test_seed_rows_fold_into_their_rung(scaling):
    rows = [
        _row("cpu-xs 2400 steps", 0.60),
        _row("cpu-s 2400 steps", 0.58),
        _row("cpu-xs 2400 steps seed 1", 0.56),
        _row("cpu-xs", 0.50),
    ]
    scaling.attach_seeds(rows)
    seeds = rows[0]["seeds"]
    assert seeds["per_seed"] == [0.60, 0.56]
    assert seeds["mean"] == pytest.approx(0.58) and seeds["std"] == pytest.approx(0.0282843, rel=1e-5)
    assert all("seeds" not in r for r in rows[1:])  # one seed only, or a seed row itself
