"""Where the fidelity head falls short of gold, and one test-time fix that does not work.

Two measurements on the same fixed draw of test prompts:

1. How well the *labels* could teach fidelity: Spearman of the raters' mean score with gold, per component. The
   model learns from these means only, so this is what a perfect learner of the human tables would reach vs gold.
2. Contrastive scoring (pointwise mutual information): score each image with its own prompt and with K other
   prompts of the batch, and subtract alpha times the mean of the latter, so that what the image scores under any
   prompt (its prompt-independent part) cancels. If the fidelity head leaned on image-only cues, this would rank
   better against gold; it costs K + 1 forward passes per image at serving time.

    cd benchmarks && python fidelity_contrast.py --data ../data/shapes20k \
        --run ../exporter/rewarddance_exporter/default_model

Writes benchmarks/results/fidelity_contrast.{json,md}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.pixel_reward import evaluate
from rewarddance_trainer.pixel_reward.data import PromptGroups, Tables, collate
from rewarddance_trainer.pixel_reward.model import load_model
from rewarddance_trainer.pixel_reward.text import load_cache
from rewarddance_trainer.pixel_reward.train import fixed_draw
from rewarddance_trainer.reward.evaluate import spearman

from rewarddance.components.base import COMPONENTS

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def own_and_other_scores(model, tables: Tables, states, prompts: np.ndarray, others: int):
    """(image rows, components under their own prompt (n, 4), under ``others`` other prompts (n, others, 4)).

    Batches hold whole prompt groups of equal size, so rolling the prompt inputs by k groups hands every image the
    states of the k-th next prompt in its batch (never its own, as long as ``others`` < prompts per batch)."""
    model.eval()
    tokens, mask = states
    groups = PromptGroups(tables, prompts, model.cfg.image_size, max_images=10**9, seed=0)
    batches = torch.utils.data.DataLoader(groups, batch_size=32, num_workers=1, collate_fn=collate)
    rows_out, own_out, other_out = [], [], []
    for rows, pixels, _ in batches:
        t, m = evaluate.prompt_inputs(tables, tokens, mask, rows, trim=False)
        sizes = np.unique(tables.images.prompt_row.to_numpy()[rows], return_counts=True)[1]
        if len(set(sizes)) != 1 or len(sizes) <= others:
            raise ValueError("contrastive scoring needs batches of more than `others` prompts with equal image counts")
        x = torch.from_numpy(pixels)
        own, _ = model(x, t, m)
        other = [
            model(x, torch.roll(t, int(sizes[0]) * k, 0), torch.roll(m, int(sizes[0]) * k, 0))[0]
            for k in range(1, others + 1)
        ]
        rows_out.append(rows)
        own_out.append(own.numpy())
        other_out.append(torch.stack(other, 1).numpy())
    return np.concatenate(rows_out), np.concatenate(own_out), np.concatenate(other_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="a pixel reward run (or the default model folder)")
    parser.add_argument("--prompts", type=int, default=1000, help="test prompts (the fixed draw training tests on)")
    parser.add_argument("--others", type=int, default=6, help="other prompts each image is scored with")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(1)

    model = load_model(args.run)
    tables = Tables.load(args.data)
    prompts = fixed_draw(tables.prompt_rows("test"), args.prompts, 0)
    rows, own, other = own_and_other_scores(model, tables, load_cache(args.data), prompts, args.others)
    ids = tables.images.image_id.to_numpy()[rows]
    gold = pd.read_parquet(args.data / "gold" / "gold.parquet").set_index("image_id").loc[ids]
    human = tables.targets[rows]
    weights = model.weights.numpy()

    labels = {c: spearman(human[:, i], gold[c].to_numpy()) for i, c in enumerate(COMPONENTS)}
    labels["reward"] = spearman(human @ weights, gold["utility"].to_numpy())
    model_now = {c: spearman(own[:, i], gold[c].to_numpy()) for i, c in enumerate(COMPONENTS)}
    model_now["reward"] = spearman(own @ weights, gold["utility"].to_numpy())

    contrast = []
    for alpha in ALPHAS:
        row = {"alpha": alpha}
        for i, c in enumerate(COMPONENTS):
            score = own[:, i] - alpha * other[:, :, i].mean(1)
            row[c] = {"gold": spearman(score, gold[c].to_numpy()), "human": spearman(score, human[:, i])}
        adjusted = own.copy()
        adjusted[:, 0] -= alpha * other[:, :, 0].mean(1)  # fidelity only: the head the prompt should drive
        reward = adjusted @ weights
        row["reward_fidelity_contrasted"] = {
            "gold": spearman(reward, gold["utility"].to_numpy()),
            "human": spearman(reward, human @ weights),
            "pair_accuracy": evaluate.pair_accuracy(tables, rows, reward),
        }
        contrast.append(row)

    load_end = [round(x, 2) for x in os.getloadavg()]
    payload = {
        "run": str(args.run),
        "data": str(args.data),
        "prompts": len(prompts),
        "images": len(rows),
        "others": args.others,
        "labels_vs_gold": labels,
        "model_vs_gold": model_now,
        "contrast": contrast,
        "machine": machine(),
        "command": command(),
        "load_average": {"start": load_start, "end": load_end},
    }
    head = ["source", *COMPONENTS, "R"]
    first = [
        [name, *[f"{source[c]:.3f}" for c in (*COMPONENTS, "reward")]]
        for name, source in (
            ("raters' mean score (the training labels)", labels),
            (f"model ({args.run.name})", model_now),
        )
    ]
    second = [
        [
            f"{r['alpha']:.2f}",
            *[f"{r[c]['gold']:.3f}" for c in COMPONENTS],
            f"{r['reward_fidelity_contrasted']['gold']:.3f}",
            f"{r['reward_fidelity_contrasted']['pair_accuracy']:.3f}",
        ]
        for r in contrast
    ]
    md = "\n\n".join(
        [
            "# Fidelity against gold: what the labels allow, and contrastive scoring",
            f"{len(rows):,} images of {len(prompts):,} test prompts. Spearman against the simulator's gold score.",
            markdown_table(head, first),
            f"Contrastive scoring: each head's score minus alpha x its mean under {args.others} other prompts; "
            "R with only fidelity contrasted (and its pair accuracy vs human preferences).",
            markdown_table(["alpha", *COMPONENTS, "R (fidelity contrasted)", "pair acc."], second),
            f"Command `{command()}`; load {load_start} / {load_end}.",
        ]
    )
    write_result("fidelity_contrast", payload, md, args.out_dir)
    print(md)


if __name__ == "__main__":
    main()
