"""How well reward models rank the generator's own samples, against the oracle's gold (evaluation only).

A reward model is trained on rendered shapes-world images; RLHF and best-of-N ask it to rank what the generator
draws. This scores the samples ``rlhf_study.py`` keeps, with each reward run's torch model (the same path as the
RL gradient: 32 px samples resized to the model's size with the gateway's bicubic kernel):

- best-of-N samples (``RUNS/bon_samples_PxN.npy`` with their gold ``bon_gold_PxN.npy``): Spearman of R with gold
  within each prompt's N samples (what best-of-N and the per-prompt RL signal need), averaged over prompts, and the
  gold that best-of-4 / best-of-16 by this reward picks, against the oracle's own best (the ceiling of choosing);
- held-out RL evaluation samples (``--held-out RUN/eval/step_00000.npy``, the first prompts of the test split):
  Spearman of R with gold across prompts;
- for contrast, rendered test images (``--rendered`` prompts of the fixed test draw, all their candidates) squeezed
  to the generator's 32 px and scored by the same oracle: what the reward does at that size on the images it was
  trained on.

    python benchmarks/reward_on_samples.py --bon runs/rg-ens --held-out runs/rg-full/reward_cpu-xs-v10 \
        --run v10=exporter/rewarddance_exporter/default_model

Writes benchmarks/results/reward_on_samples.{json,md}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.generator.data import load_image
from rewarddance_trainer.pixel_reward.data import Tables
from rewarddance_trainer.pixel_reward.train import fixed_draw
from rewarddance_trainer.rlhf.gold import GoldScorer
from rewarddance_trainer.rlhf.reward import DifferentiableReward
from rewarddance_trainer.rlhf.train_cmd import split_prompts
from scipy.stats import spearmanr


@torch.no_grad()
def rewards(reward: DifferentiableReward, images: np.ndarray, prompts: list[str], batch: int = 64) -> np.ndarray:
    """R of each uint8 (n, h, w, 3) image for its prompt (one reward run: its own R)."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(reward(x, prompts[i : i + batch]).numpy())
    return np.concatenate(out)


def within_prompt_spearman(r: np.ndarray, gold: np.ndarray) -> float:
    """Mean over prompts (rows) of Spearman(R, gold) over that prompt's samples; prompts with constant gold skipped."""
    rhos = [spearmanr(r[i], gold[i])[0] for i in range(len(r)) if np.ptp(gold[i]) > 0 and np.ptp(r[i]) > 0]
    return float(np.mean(rhos))


def best_of(r: np.ndarray, gold: np.ndarray, n: int) -> float:
    """Mean gold of the sample this reward ranks first among each prompt's first ``n``."""
    return float(gold[np.arange(len(r)), r[:, :n].argmax(1)].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/shapes20k"))
    parser.add_argument("--bon", type=Path, required=True, help="an rlhf_study runs folder with bon_samples_*.npy")
    parser.add_argument("--held-out", type=Path, help="an RL run whose eval/step_00000.npy holds base samples")
    parser.add_argument("--rendered", type=int, default=200, help="test prompts of rendered images (0: skip)")
    parser.add_argument("--run", action="append", required=True, help="NAME=REWARD_RUN (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(1)

    test = split_prompts(args.data, "test")
    samples_path = next(args.bon.glob("bon_samples_*x*.npy"))
    samples = np.load(samples_path)
    n_prompts, n = samples.shape[:2]
    gold = np.load(args.bon / samples_path.name.replace("samples", "gold"))
    bon_prompts = [p for p in test[:n_prompts] for _ in range(n)]
    held = held_gold = None
    if args.held_out:
        held = np.load(args.held_out / "eval" / "step_00000.npy")
        held_gold = GoldScorer()(held, test[: len(held)])["utility"]
    rendered = rendered_gold = None
    if args.rendered:
        tables = Tables.load(args.data)
        image_rows = tables.image_rows_of(fixed_draw(tables.prompt_rows("test"), args.rendered, 0))
        size = samples.shape[2]
        rendered = np.stack([load_image(args.data / p, size) for p in tables.images.path.to_numpy()[image_rows]])
        rendered_prompts = list(tables.images.text.to_numpy()[image_rows])
        rendered_gold = GoldScorer()(rendered, rendered_prompts)["utility"]

    rows = []
    for item in args.run:
        name, _, path = item.partition("=")
        reward = DifferentiableReward(path)
        r = rewards(reward, samples.reshape(-1, *samples.shape[2:]), bon_prompts).reshape(n_prompts, n)
        row = {
            "name": name,
            "run": path,
            "within_prompt_spearman": within_prompt_spearman(r, gold),
            "pooled_spearman": float(spearmanr(r.ravel(), gold.ravel())[0]),
            "best_of_4_gold": best_of(r, gold, 4),
            "best_of_16_gold": best_of(r, gold, min(16, n)),
        }
        if held is not None:
            row["held_out_spearman"] = float(spearmanr(rewards(reward, held, test[: len(held)]), held_gold)[0])
        if rendered is not None:
            rendered_r = rewards(reward, rendered, rendered_prompts)
            row["rendered_spearman"] = float(spearmanr(rendered_r, rendered_gold)[0])
        rows.append(row)
        print(row, flush=True)

    load_end = [round(x, 2) for x in os.getloadavg()]
    payload = {
        "bon_samples": str(samples_path),
        "prompts": n_prompts,
        "samples_per_prompt": n,
        "first_sample_gold": float(gold[:, 0].mean()),
        "oracle_best_of_16_gold": float(gold[:, :16].max(1).mean()),
        "held_out": str(args.held_out) if args.held_out else None,
        "rendered_images": 0 if rendered is None else len(rendered),
        "rows": rows,
        "machine": machine(),
        "command": command(),
        "load_average": {"start": load_start, "end": load_end},
    }
    table = markdown_table(
        [
            "reward run",
            "within-prompt rho",
            "pooled rho",
            "held-out rho",
            "best-of-4 gold",
            "best-of-16 gold",
            "rendered at 32 px: rho",
        ],
        [
            [
                r["name"],
                f"{r['within_prompt_spearman']:.3f}",
                f"{r['pooled_spearman']:.3f}",
                f"{r.get('held_out_spearman', float('nan')):.3f}",
                f"{r['best_of_4_gold']:.3f}",
                f"{r['best_of_16_gold']:.3f}",
                f"{r.get('rendered_spearman', float('nan')):.3f}",
            ]
            for r in rows
        ],
    )
    md = "\n\n".join(
        [
            "# Reward models on the generator's own samples",
            f"{n_prompts} test prompts x {n} base-generator samples (`{samples_path}`); Spearman of R with the "
            f"oracle's gold utility. First sample's gold {payload['first_sample_gold']:.3f}; the oracle's own best "
            f"of 16 {payload['oracle_best_of_16_gold']:.3f} (the ceiling of choosing). Held-out: one sample of "
            f"each of the first {0 if held is None else len(held)} test prompts, across prompts. Rendered: "
            f"{payload['rendered_images']} rendered test images at the samples' size, the same oracle's gold.",
            table,
            f"Command `{command()}`; load {load_start} / {load_end}.",
        ]
    )
    write_result("reward_on_samples", payload, md, args.out_dir)
    print(md)


if __name__ == "__main__":
    main()
