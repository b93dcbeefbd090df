"""Tune the generator against a served reward model: PPO over the DDIM chain with a KL penalty to the base; resumable.

Examples:
  rewarddance train rlhf --generator runs/generator-base --reward http://127.0.0.1:8000 --data data/shapes20k \
      --out runs/rlhf --steps 40
  rewarddance train rlhf --generator runs/generator-base --reward repo:model_repository --reward-model reward_cpu-xs \
      --reward-version 2 --reward-weights fidelity=1 --data data/shapes20k --out runs/rlhf-fidelity

--reward is the gateway (http:// or grpc://, through the Python SDK, with the weights and model/version pinned per
request) or repo:PATH (the same serving pipeline on onnxruntime, in this process). Every sampled batch is also scored
by the gold oracle (recorded, never used for the update); the first --eval-prompts prompts of the test split are
sampled every --eval-every steps at fixed seeds; with --val-prompts N the val split's first N are sampled too and the
policy with the best proxy on them is kept in best/ (best.json names its step). The run holds metrics.jsonl,
curves.png, eval/ (held-out samples and sheets), checkpoint.pt (rerun the command to resume) and pipeline/
(``rewarddance generate`` loads the run; ``--generator RUN/best`` the selected policy). ``--algorithm reward-grad
--reward-run RUN`` follows the torch reward model's gradient through the chain's last --grad-steps steps instead
(DRaFT-K; --reward still scores every batch for the record). See docs/rlhf.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .config import RLHFConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", type=Path, required=True, help="base generator run or diffusers pipeline")
    parser.add_argument("--reward", required=True, help="http://HOST:PORT, grpc://HOST:PORT or repo:PATH")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (its prompt splits)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    for f in fields(RLHFConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default
            )
        else:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=f"(default {f.default!r})"
            )
    parser.add_argument("--no-gold", action="store_true", help="skip the oracle on training batches and evaluations")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")


def split_prompts(data: Path, split: str) -> list[str]:
    """The dataset's prompts of one split, in prompt_id order."""
    import pandas as pd

    table = pd.read_parquet(data / "prompts.parquet", columns=["prompt_id", "text", "split"])
    rows = table[table["split"] == split].sort_values("prompt_id")
    if rows.empty:
        raise ValueError(f"{data} has no prompts in split {split!r}")
    return rows["text"].tolist()


def run(args: argparse.Namespace) -> int:
    import torch

    from .gold import GoldScorer
    from .reward import DifferentiableReward, make_reward
    from .train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RLHFConfig(**{f.name: getattr(args, f.name) for f in fields(RLHFConfig)})
    if not (args.data / "prompts.parquet").exists():
        print(f"error: {args.data} is not a dataset directory (no prompts.parquet)", file=sys.stderr)
        return 2
    try:
        reward = make_reward(args.reward, cfg.weights(), cfg.reward_model or None, cfg.reward_version or None)
        train_prompts = split_prompts(args.data, cfg.split)
        eval_prompts = split_prompts(args.data, "test")[: cfg.eval_prompts]
        val_prompts = split_prompts(args.data, "val")[: cfg.val_prompts] if cfg.val_prompts else None
        meta = {"reward": args.reward, "reward_source": reward.describe(), "data": str(args.data)}
        grad_reward = None
        if cfg.algorithm == "reward-grad":
            if not cfg.reward_run:
                raise ValueError("--algorithm reward-grad needs --reward-run (a pixel reward run directory)")
            grad_reward = DifferentiableReward(cfg.reward_run, cfg.weights(), cfg.reward_ensemble_penalty)
            meta["grad_reward"] = grad_reward.describe()
        info = train(
            args.generator,
            reward,
            args.out,
            cfg,
            train_prompts,
            eval_prompts,
            gold=None if args.no_gold else GoldScorer(),
            progress=not args.no_progress,
            meta=meta,
            val_prompts=val_prompts,
            grad_reward=grad_reward,
        )
    except (ValueError, FileNotFoundError, LookupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: info[k] for k in ("steps_completed", "wall_seconds_this_session")}))
    print(f"tuned pipeline in {args.out / 'pipeline'}; curves in {args.out / 'curves.png'}")
    return 0
