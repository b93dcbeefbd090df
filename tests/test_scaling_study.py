"""benchmarks/scaling_study.py: the runs it plans (seeds, LOSO budgets) and, end to end on the tiny fixture, the
table it writes from concurrently trained runs."""

from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from benchmark_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scaling_study.py"


@pytest.fixture(scope="module")
def study():
    return load_script("scaling_study")


def _args(study, **overrides) -> Namespace:
    scales = ["small", "large"]
    values = {
        "data": Path("d"),
        "features": Path("f"),
        "components": Path("c"),
        "scales": scales,
        "steps": study.per_scale(["small=1200", "large=300"], scales, int, 2000),
        "loso_steps": study.per_scale(["small=600", "large=0"], scales, int, 0),
        "time_limit": study.per_scale(["large=400"], scales, float, 0.0),
        "loso_time_limit": study.per_scale(["30"], scales, float, 0.0),
        "lr": study.per_scale(["small=5e-4"], scales, float, 1e-4),
        "seeds": study.per_scale(["small=3"], scales, int, 1),
        "warmup": 1000,
        "evals": 10,
        "loso": True,
        "runs": Path("runs/s"),
        "parallel": 4,
    }
    return Namespace(**(values | overrides))


def test_jobs_cover_seeds_and_loso_with_their_own_budgets(study) -> None:
    args = _args(study)
    jobs = {job.out.name: job for job in study.jobs(args)}

    assert list(jobs) == ["small", "small-seed1", "small-seed2", "small-loso", "large"]  # large LOSO: 0 steps = off
    small, seed2, loso, large = (jobs[k].command(args) for k in ("small", "small-seed2", "small-loso", "large"))

    def flag(cmd: list[str], name: str) -> str:
        return cmd[cmd.index(name) + 1]

    assert flag(small, "--steps") == "1200" and flag(small, "--warmup") == "120" and flag(small, "--lr") == "0.0005"
    assert flag(small, "--eval-every") == "120" and "--seed" not in small
    assert flag(seed2, "--seed") == "2" and flag(seed2, "--out") == str(Path("runs/s/small-seed2"))
    assert "--leave-one-style-out" in loso and flag(loso, "--steps") == "600"
    assert flag(loso, "--time-limit") == "30.0" and flag(small, "--time-limit") == "0.0"  # per style vs per run
    assert flag(large, "--time-limit") == "400.0" and flag(large, "--lr") == "0.0001"


def test_per_scale_rejects_an_unknown_scale(study) -> None:
    with pytest.raises(SystemExit, match="base"):
        study.per_scale(["base=5"], ["small"], int, 0)


def test_seed_summary_is_mean_and_sample_std(study) -> None:
    runs = {
        k: {"metrics": {"spearman_reward": r, "pair_accuracy": 0.7}, "selected_step": 10}
        for k, r in enumerate((0.6, 0.62, 0.64))
    }
    summary = study._seed_summary(runs)
    assert summary["mean"]["spearman_reward"] == pytest.approx(0.62)
    assert summary["std"]["spearman_reward"] == pytest.approx(0.02)  # ddof=1
    assert study._seed_cell({"seeds": summary}) == " (seeds 0-2: 0.620 ± 0.020)"


def test_study_end_to_end_on_tiny(tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tiny["data"]), "--scales", "tiny", "--steps", "tiny=4"]
    cmd += ["--lr", "1e-3", "--evals", "2", "--seeds", "tiny=2", "--parallel", "2", "--no-loso"]
    cmd += ["--runs", str(tmp_path / "runs"), "--out-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    payload = json.loads((out / "scaling.json").read_text())
    row = next(r for r in payload["rows"] if r["name"] == "tiny")
    per_seed = row["seeds"]["per_seed"]
    assert set(per_seed) == {"0", "1"}
    seed_runs = [json.loads((tmp_path / "runs" / name / "run.json").read_text()) for name in ("tiny", "tiny-seed1")]
    assert [r["train"]["seed"] for r in seed_runs] == [0, 1]
    assert [per_seed[k]["spearman_reward"] for k in ("0", "1")] == [r["metrics"]["spearman_reward"] for r in seed_runs]
    assert per_seed["0"]["spearman_reward"] != per_seed["1"]["spearman_reward"]  # the seed reaches the training
    assert row["budget"]["steps_done"] == 4 and "2 runs at a time, 1 CPU thread(s) each" in row["budget"]["hardware"]
    assert (tmp_path / "runs" / "tiny-seed1.log").exists()  # concurrent runs log to files
    assert "seeds 0-1" in (out / "scaling.md").read_text() and (out / "scaling.png").stat().st_size > 0
