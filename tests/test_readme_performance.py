"""The README's Performance block is generated from the result files (issue 18): it must match them, and the
generator must notice when a result file changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "readme_performance.py"


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_readme_matches_result_files():
    done = _run("--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_block_carries_the_measured_numbers():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import readme_performance as rp
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    payload = {
        "row": {"model": "reward_small", "images_per_request": 8, "concurrency": 16},
        "results": {
            "before": {"images_per_s_mean": 100.0, "images_per_s": [99.0, 101.0]},
            "after": {"images_per_s_mean": 97.5, "images_per_s": [97.0, 98.0]},
        },
        "ratio": {"after": {"mean": 0.975, "min": 0.96, "max": 0.99}},
        "gateways": {"before": {"commit": "aaaaaaa111"}, "after": {"commit": "bbbbbbb222"}},
    }
    (line,) = [x for x in rp.hardening_section(payload) if x]
    assert "over 2 rounds" in line
    assert "before aaaaaaa, after bbbbbbb" in line
    assert "after 97.5 img/s (0.975x, rounds 0.960-0.990)" in line
    assert "before 100.0 img/s;" in line  # the baseline carries no ratio
