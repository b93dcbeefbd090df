"""Would averaging the stages of a staged run beat its last stage? Each stage alone, the mean of the last k stages'
outputs (a snapshot ensemble: k times the serving cost) and their weights averaged (one model, no extra cost), on a
held-out split, with the raters' own agreement with gold as the bar for each component.

    python benchmarks/stage_ensembles.py --data data/shapes20k --run runs/long/cpu-xs-6k-seed0 \
        --run runs/long/cpu-xs-cont-seed1 --run runs/long/cpu-xs-cont2-seed2 --run runs/long/cpu-xs-cont3-seed3

Runs are given in training order (each the ``--init`` of the next). Predictions are cached in ``--cache`` so a rerun
with one more stage scores only the new models. Writes benchmarks/results/stage_ensembles.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.pixel_reward import evaluate
from rewarddance_trainer.pixel_reward.data import Tables
from rewarddance_trainer.pixel_reward.model import PixelRewardModel, load_model
from rewarddance_trainer.pixel_reward.text import load_cache

from rewarddance.components.base import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]


def weight_average(models: list[PixelRewardModel]) -> PixelRewardModel:
    """One model whose floating-point parameters and buffers (batch-norm statistics included) are the mean of
    ``models``' (same architecture); integer buffers are the last model's."""
    out = PixelRewardModel(models[-1].cfg)
    state = models[-1].state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.stack([m.state_dict()[key] for m in models]).mean(0)
    out.load_state_dict(state)
    return out.eval()


def scores(tables: Tables, data: Path, rows: np.ndarray, c: np.ndarray, r: np.ndarray, w: np.ndarray) -> dict:
    m = evaluate.metrics(tables, rows, c, r, w)
    g = evaluate.gold_metrics(data, tables.images.image_id.iloc[rows], c, r)
    return {"spearman_reward": m["spearman_reward"], "pair_accuracy": m["pair_accuracy"], "gold": g}


def rater_agreement(tables: Tables, data: Path, rows: np.ndarray, w: np.ndarray) -> dict:
    """Spearman of the mean human rating with gold, per component and for R: what the labels themselves carry."""
    targets = tables.targets[rows]
    return evaluate.gold_metrics(data, tables.images.image_id.iloc[rows], targets, targets @ w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, action="append", required=True, help="a stage's run dir, in training order")
    ap.add_argument("--split", default="test")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs/stage-ensembles")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if len(args.run) < 2:
        raise SystemExit("--run: give at least two stages")
    torch.set_num_threads(args.threads)
    tables, states = Tables.load(args.data), load_cache(args.data)
    prompts = tables.prompt_rows(args.split)
    args.cache.mkdir(parents=True, exist_ok=True)

    def predict(model: PixelRewardModel, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        path = args.cache / f"{args.data.name}-{args.split}-{tag}.npz"
        if not path.exists():
            start = time.time()
            rows, c, r = evaluate.predict(model, tables, states, prompts)
            np.savez(path, rows=rows, c=c, r=r)
            print(f"{tag}: {time.time() - start:.0f} s", flush=True)
        z = np.load(path)
        return z["rows"], z["c"], z["r"]

    models = [load_model(run) for run in args.run]
    tags = [str(run.resolve()).strip("/").replace("/", "_") for run in args.run]
    preds = [predict(m, t) for m, t in zip(models, tags, strict=True)]
    rows, w = preds[0][0], models[-1].weights.numpy()
    if any((p[0] != rows).any() for p in preds):
        raise SystemExit("predictions cover different images; delete --cache and rerun")
    table = []
    for i, (_, c, r) in enumerate(preds):
        table.append(
            {"name": f"stage {i + 1} alone", "run": str(args.run[i])} | scores(tables, args.data, rows, c, r, w)
        )
    for k in range(2, len(preds) + 1):
        last = preds[-k:]
        c, r = np.mean([p[1] for p in last], 0), np.mean([p[2] for p in last], 0)
        table.append({"name": f"mean of the last {k} stages' outputs"} | scores(tables, args.data, rows, c, r, w))
        _, c, r = predict(
            weight_average(models[-k:]), "avg-" + hashlib.sha1("+".join(tags[-k:]).encode()).hexdigest()[:16]
        )
        table.append({"name": f"last {k} stages' weights averaged"} | scores(tables, args.data, rows, c, r, w))
    payload = {
        "machine": machine(),
        "command": command(),
        "load": os.getloadavg(),
        "data": str(args.data),
        "split": args.split,
        "images": len(rows),
        "rows": table,
        "raters_vs_gold": rater_agreement(tables, args.data, rows, w),
    }
    head = ["model", "R (test)", "pair acc.", *(f"{c} vs gold" for c in COMPONENTS), "R vs gold"]
    body = [
        [t["name"], f"{t['spearman_reward']:.4f}", f"{t['pair_accuracy']:.4f}"]
        + [f"{t['gold'][c]:.3f}" for c in (*COMPONENTS, "reward")]
        for t in table
    ]
    agree = payload["raters_vs_gold"]
    body.append(["mean human rating (the labels)", "", ""] + [f"{agree[c]:.3f}" for c in (*COMPONENTS, "reward")])
    md = "\n".join(
        [
            "# Averaging the stages of a staged run",
            "",
            f"`{args.data}`, split `{args.split}` ({len(rows)} images, every prompt of the split). Stages in training"
            " order: " + ", ".join(f"`{run}`" for run in args.run) + ".",
            "",
            markdown_table(head, body),
            "",
            f"Machine: {payload['machine']}; load {payload['load']}; command `{payload['command']}`.",
        ]
    )
    write_result("stage_ensembles", payload, md, RESULTS)
    print(md)


if __name__ == "__main__":
    main()
