"""One RL run's held-out samples over its evaluations, side by side: where the real gain ends and the hacking starts.

Each row is a held-out prompt; its columns are the same sample (same noise) at each evaluated step, captioned with
the step and the oracle's gold utility of all the held-out samples at that step (from the run's metrics.jsonl).

    python benchmarks/rlhf_steps_sheet.py runs/rlhf-reward-grad/reward_cpu-xs-v10 --steps 0 10 15 20 30 \\
        --out benchmarks/results/rlhf_reward_grad_steps.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rewarddance_trainer.generator.sheet import contact_sheet
from rewarddance_trainer.rlhf.train import read_metrics
from rewarddance_trainer.rlhf.train_cmd import split_prompts

ROOT = Path(__file__).resolve().parents[1]


def steps_sheet(run: Path, steps: list[int], prompts: list[str], out: Path) -> Path:
    evals = {r["step"]: r for r in read_metrics(run) if r["kind"] == "eval"}
    missing = [s for s in steps if s not in evals or not (run / "eval" / f"step_{s:05d}.npy").exists()]
    if missing:
        raise SystemExit(f"{run}: no held-out samples at steps {missing} (evaluated: {sorted(evals)})")
    columns = [np.load(run / "eval" / f"step_{s:05d}.npy") for s in steps]

    def joined(key: str) -> str:
        return " / ".join(f"{evals[s][key]:.3f}" for s in steps)

    head = f"steps {' / '.join(map(str, steps))}: gold {joined('gold_utility')}; proxy {joined('proxy')}."
    rows = [(f"{head} {p}" if i == 0 else p, [c[i] for c in columns]) for i, p in enumerate(prompts)]
    return contact_sheet(rows, out, cell=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="an RL run directory (its metrics.jsonl and eval/)")
    ap.add_argument("--steps", type=int, nargs="+", required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "data/shapes20k", help="the dataset (its test prompts)")
    ap.add_argument("--prompts", type=int, default=8, help="the first this many held-out prompts")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    prompts = split_prompts(args.data, "test")[: args.prompts]
    print(steps_sheet(args.run, args.steps, prompts, args.out))


if __name__ == "__main__":
    main()
