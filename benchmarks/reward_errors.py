"""Which mistakes does a pixel reward model notice? For each kind of flaw the shapes world injects (wrong colour,
wrong shape, missing object, style drift, ...), the share of (clean, flawed) candidate pairs of the same test prompt
in which the model gives the clean candidate the higher score, beside the same share for gold (the simulator's
truth: where gold does not prefer the clean image either, the flaw does not touch that component).

    python benchmarks/reward_errors.py --data data/shapes20k --run default=exporter/rewarddance_exporter/default_model \
        --run 6k=runs/long/cpu-xs-6k-seed0

Pairs compare a candidate whose only flaws include the kind against the prompt's unflawed candidates, on a fixed
draw of test prompts (the same draw training's test metrics use). Writes benchmarks/results/reward_errors.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.pixel_reward import evaluate
from rewarddance_trainer.pixel_reward.data import Tables
from rewarddance_trainer.pixel_reward.model import load_model
from rewarddance_trainer.pixel_reward.text import load_cache
from rewarddance_trainer.pixel_reward.train import fixed_draw

SCORES = ("reward", "fidelity", "style", "composition", "novelty")


def flaw_pairs(tables: Tables, rows: np.ndarray) -> pd.DataFrame:
    """(clean row, flawed row, kind) for every flawed candidate, each kind it carries, and each clean candidate of
    the same prompt among ``rows``."""
    images = pd.read_parquet(tables.root / "images.parquet", columns=["image_id", "settings"]).set_index("image_id")
    ids = tables.images.image_id.to_numpy()[rows]
    flaws = [json.loads(s)["perturbations"] for s in images.loc[ids, "settings"]]
    prompt = tables.images.prompt_row.to_numpy()[rows]
    frame = pd.DataFrame({"row": rows, "prompt": prompt, "flaws": flaws})
    clean = frame[frame.flaws.str.len() == 0]
    flawed = frame[frame.flaws.str.len() > 0].explode("flaws").rename(columns={"flaws": "kind", "row": "flawed"})
    pairs = flawed.merge(clean[["prompt", "row"]].rename(columns={"row": "clean"}), on="prompt")
    return pairs[["clean", "flawed", "kind"]]


def noticed(scores: dict[str, np.ndarray], pairs: pd.DataFrame, position: np.ndarray) -> dict[str, dict[str, float]]:
    """Per kind and score: the share of pairs where the clean candidate scores strictly higher (ties count half)."""
    out: dict[str, dict[str, float]] = {}
    for kind, group in pairs.groupby("kind"):
        a, b = position[group.clean.to_numpy()], position[group.flawed.to_numpy()]
        out[kind] = {"pairs": len(group)}
        for name, s in scores.items():
            d = s[a] - s[b]
            out[kind][name] = float(np.mean((d > 0) + 0.5 * (d == 0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (repeatable)")
    parser.add_argument("--prompts", type=int, default=1000, help="test prompts (fixed draw)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    tables, states = Tables.load(args.data), load_cache(args.data)
    prompts = fixed_draw(tables.prompt_rows("test"), args.prompts, 0)
    gold = pd.read_parquet(args.data / "gold" / "gold.parquet").set_index("image_id")
    results = {}
    for spec in args.run:
        name, _, run = spec.partition("=")
        model = load_model(Path(run))
        rows, components, reward = evaluate.predict(model, tables, states, prompts)
        position = np.full(len(tables.images), -1)
        position[rows] = np.arange(len(rows))
        pairs = flaw_pairs(tables, rows)
        model_scores = {"reward": reward} | {c: components[:, i] for i, c in enumerate(SCORES[1:])}
        g = gold.loc[tables.images.image_id.to_numpy()[rows]]
        gold_scores = {"reward": g["utility"].to_numpy()} | {c: g[c].to_numpy() for c in SCORES[1:]}
        results[name] = {
            "run": run,
            "model": noticed(model_scores, pairs, position),
            "gold": noticed(gold_scores, pairs, position),
        }
    kinds = sorted(next(iter(results.values()))["model"])
    headers = ["flaw", "pairs", "gold R", *[f"{n}: R" for n in results], *[f"{n}: fidelity" for n in results]]
    first = next(iter(results.values()))
    body = [
        [
            k,
            first["model"][k]["pairs"],
            f"{first['gold'][k]['reward']:.2f}",
            *[f"{r['model'][k]['reward']:.2f}" for r in results.values()],
            *[f"{r['model'][k]['fidelity']:.2f}" for r in results.values()],
        ]
        for k in kinds
    ]
    md = "\n".join(
        [
            "# Which flaws the reward model notices",
            "",
            "Share of (clean, flawed) candidate pairs of the same test prompt in which the clean one scores higher "
            f"({args.prompts} test prompts; ties count half). Gold R: the simulator's utility on the same pairs "
            "(below 1 where the flaw can leave the utility unchanged or where another flaw of the clean image wins).",
            "",
            markdown_table(headers, body),
            "",
            f"Command `{command()}`; load {load_start} / {[round(x, 2) for x in os.getloadavg()]}.",
        ]
    )
    payload = {"machine": machine(), "command": command(), "load_start": load_start, "results": results}
    write_result("reward_errors", payload, md, args.out_dir)
    plot(results, kinds, args.out_dir / "reward_errors.png")
    print(md)


def plot(results: dict, kinds: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = np.arange(len(kinds))
    width = 0.8 / (len(results) + 1)
    first = next(iter(results.values()))
    ax.bar(x, [first["gold"][k]["reward"] for k in kinds], width, color="grey", label="gold utility")
    for i, (name, r) in enumerate(results.items(), start=1):
        ax.bar(x + i * width, [r["model"][k]["reward"] for k in kinds], width, label=f"{name}: R")
    ax.axhline(0.5, color="black", lw=0.6, ls=":")
    ax.set_xticks(x + width * len(results) / 2, kinds, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="clean scored above flawed", ylim=(0, 1), title="Which flaws the reward model notices (test prompts)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
