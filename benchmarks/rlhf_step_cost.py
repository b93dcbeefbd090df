"""Seconds per RL step, PPO against reward-grad, in one process one after the other (same base generator, reward
model, batch, adapters and thread count), by part: sampling, scoring, gold, update. Run it on an idle machine.

    python benchmarks/rlhf_step_cost.py --repo /tmp/rlhf-repo-b --model reward_cpu-xs@10 \\
        --reward-run exporter/rewarddance_exporter/default_model --steps 4

Writes benchmarks/results/rlhf_step_cost.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.rlhf.config import RLHFConfig
from rewarddance_trainer.rlhf.gold import GoldScorer
from rewarddance_trainer.rlhf.reward import DifferentiableReward, InProcessReward
from rewarddance_trainer.rlhf.train import read_metrics, train
from rewarddance_trainer.rlhf.train_cmd import split_prompts

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("sampling", "scoring", "gold", "update")
# the recipes of docs/rlhf.md that the cost is quoted for (both with the convolution adapters at a fifth of the rate)
RECIPES = {
    "ppo": {"lr": 5e-3},
    "reward-grad": {"lr": 1e-3, "algorithm": "reward-grad", "grad_steps": 2, "kl_coef": 0.2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, default=ROOT / "runs/generator-base")
    ap.add_argument("--data", type=Path, default=ROOT / "data/shapes20k")
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--model", default="reward_cpu-xs@10", help="name@version in --repo")
    ap.add_argument("--reward-run", type=Path, required=True, help="the torch weights of --model (reward-grad)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    name, _, version = args.model.partition("@")
    reward = InProcessReward(args.repo, None, name, int(version or 1))
    grad = DifferentiableReward(args.reward_run)
    prompts = split_prompts(args.data, "train")
    held_out = split_prompts(args.data, "test")[:4]  # the evaluations are not what is timed
    load_before = os.getloadavg()
    out = {}
    for algo, settings in RECIPES.items():
        cfg = RLHFConfig(steps=args.steps, eval_every=10_000, lora_targets="all", conv_lr_scale=0.2, **settings)
        with tempfile.TemporaryDirectory() as run:
            train(
                args.generator,
                reward,
                Path(run),
                cfg,
                prompts,
                held_out,
                GoldScorer(),
                progress=False,
                grad_reward=grad,
            )
            rows = [r for r in read_metrics(Path(run)) if r["kind"] == "train"]
        parts = {p: float(np.median([r[f"seconds_{p}"] for r in rows])) for p in PARTS}
        out[algo] = {"seconds_median": parts, "total": sum(parts.values()), "steps": len(rows)}
        print(algo, out[algo], flush=True)
    ratio = out["ppo"]["total"] / out["reward-grad"]["total"]
    payload = {
        "machine": machine(),
        "command": command(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "threads": args.threads,
        "batch": "8 prompts x 4 samples, minibatch 16, 10 DDIM steps, LoRA on attention and convolutions (x0.2)",
        "recipes": RECIPES,
        "results": out,
        "ppo_over_reward_grad": ratio,
    }
    table = markdown_table(
        ["algorithm", *[f"{p} (s)" for p in PARTS], "total (s)"],
        [[a, *[f"{r['seconds_median'][p]:.2f}" for p in PARTS], f"{r['total']:.2f}"] for a, r in out.items()],
    )
    md = (
        f"# Seconds per RL step, PPO vs reward-grad (median of {args.steps} steps each, one run)\n\n{table}\n\n"
        f"PPO / reward-grad: **{ratio:.2f}x**. {payload['batch']}; {args.threads} thread(s).\n\n"
        f"Machine {payload['machine']}; load before {load_before}, after {payload['load_after']}; "
        f"command `{payload['command']}`."
    )
    write_result("rlhf_step_cost", payload, md)
    plot(out, RESULTS / "rlhf_step_cost.png")
    print(md)


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    for y, r in enumerate(out.values()):
        left = 0.0
        for p in PARTS:
            v = r["seconds_median"][p]
            ax.barh(y, v, left=left, color=f"C{PARTS.index(p)}", label=p if y == 0 else None)
            left += v
    ax.set_yticks(range(len(out)), list(out))
    ax.set_xlabel("seconds per RL step (32 samples)")
    ax.legend(fontsize=7, ncols=4, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
