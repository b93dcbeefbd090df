"""benchmarks/pixel_scaling.py's bookkeeping: seed rows fold into their rung's row (mean and spread of test R),
whether they were trained by the ladder or added as finished runs."""

from __future__ import annotations

import json
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


def test_seeds_fold_within_their_ladder_with_the_shifted_world(scaling):
    def row(name, ladder, r, shifted):
        return _row(name, r) | {"ladder": ladder, "shifted": {"in_domain": {"spearman_reward": shifted}}}

    rows = [
        row("cpu-s", "cpu", 0.50, 0.20),
        row("cpu-s", "cpu-lr5e-4", 0.55, 0.30),
        row("cpu-s seed 1", "cpu-lr5e-4", 0.53, 0.26),  # added by a later call: merged rows fold all the same
    ]
    scaling.attach_seeds(rows)
    assert "seeds" not in rows[0]  # another ladder's seed is not this rung's
    seeds = rows[1]["seeds"]
    assert seeds["per_seed"] == [0.55, 0.53] and seeds["mean"] == pytest.approx(0.54)
    assert seeds["shifted_per_seed"] == [0.30, 0.26] and seeds["shifted_mean"] == pytest.approx(0.28)
    assert "0.280 ± 0.028, n=2" in scaling._shifted_seed_note(seeds)


def _run_json(steps: int, seen: int, wall: float, lr: float, seed: int, selected: int, init: dict | None = None):
    train = {"steps": steps, "prompts_per_batch": 12, "lr": lr, "seed": seed}
    run_json = {"steps_done": steps, "samples_seen": seen, "wall_seconds": wall, "selected_step": selected}
    return run_json | {"train": train, "torch_threads": 1} | ({"init": init} if init else {})


def test_a_staged_run_reports_the_whole_chain_as_its_budget(scaling):
    first = {"steps_done": 6000, "samples_seen": 720000, "wall_seconds": 3346.0, "lr": 1e-3, "seed": 0}
    second = first | {"steps_done": 5000, "samples_seen": 600000, "wall_seconds": 1908.0, "lr": 5e-4, "seed": 1}
    third = _run_json(5000, 600000, 2000.0, 5e-4, 2, 4500, init=second | {"init": first})
    b = scaling.budget_of(third)
    assert b["steps_done"] == b["steps_planned"] == 16000 and b["samples_seen"] == 1920000
    assert b["selected_step"] == 15500 and b["train_seconds"] == 3346.0 + 1908.0 + 2000.0
    assert [(s["steps_done"], s["lr"], s["seed"]) for s in b["stages"]] == [
        (6000, 1e-3, 0),
        (5000, 5e-4, 1),
        (5000, 5e-4, 2),
    ]
    plain = scaling.budget_of(_run_json(1200, 144000, 800.0, 1e-3, 0, 1000))
    assert plain["steps_done"] == 1200 and plain["selected_step"] == 1000 and "stages" not in plain


def test_a_later_stage_curve_counts_on_from_the_earlier_stages(scaling, tmp_path):
    lines = [{"step": 1, "images": 120}, {"step": 2, "images": 120, "val_spearman_reward": 0.51234}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert scaling.val_curve(tmp_path) == [[2, 240, 0.5123]]
    assert scaling.val_curve(tmp_path, 6000, 720000) == [[6002, 720240, 0.5123]]
