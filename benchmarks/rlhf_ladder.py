"""RLHF gain against reward-model accuracy: one recipe's rows of ``rlhf.json``, seeds pooled per reward model.

    python benchmarks/rlhf_ladder.py [--lr-label "1e-3 reward-grad K2 lora-all conv x0.2 beta 0.2"] [--steps 20 30]

Prints, per reward model (by its test Spearman R) and step, the held-out gold gain and the hacking gap (relative proxy
gain minus relative gold gain) as mean ± sd over seeds, beside best-of-16 of the same reward model, and draws both
against test R in ``benchmarks/results/rlhf_ladder.png``: the RewardDance question (does a more accurate reward
model give more real gain and less hacking?) for one recipe, with its seed spread visible.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import RESULTS, markdown_table

RECIPE = "1e-3 reward-grad K2 lora-all conv x0.2 beta 0.2"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def ladder(rows: list[dict], lr_label: str, steps: list[int]) -> list[dict]:
    """One entry per (reward model, step) of the recipe's RL rows: gold gain and hacking gap (mean, sd) over seeds,
    the seeds, and best-of-16's gold gain for that reward model (None when the study has none); sorted by test R."""
    bon16 = {r["reward_model"]: r["gold_gain_rel"] for r in rows if r["method"] == "best_of_n" and r.get("n") == 16}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] == "rlhf" and r.get("lr") == lr_label and r["steps"] in steps:
            groups.setdefault((r["reward_model"], r["steps"]), []).append(r)
    out = []
    for (model, step), rs in groups.items():
        out.append(
            {
                "reward_model": model,
                "test_R": rs[0].get("test_spearman_R"),
                "steps": step,
                "seeds": sorted(r.get("seed", 0) for r in rs),
                "gold_gain": _mean_sd([r["gold_gain_rel"] for r in rs]),
                "hacking_gap": _mean_sd([r["hacking_gap"] for r in rs]),
                "gold_tuned": statistics.mean(r["gold_tuned"] for r in rs),
                "kl": statistics.mean(r["kl"] for r in rs),
                "bon16_gold_gain": bon16.get(model),
            }
        )
    return sorted(out, key=lambda e: (e["steps"], e["test_R"] or 0.0))


def table(entries: list[dict]) -> str:
    headers = ["reward model", "test R", "steps", "seeds", "gold gain", "hacking gap", "gold tuned", "KL"]
    rows = []
    for e in entries:
        g, h = e["gold_gain"], e["hacking_gap"]
        bon = "" if e["bon16_gold_gain"] is None else f"{100 * e['bon16_gold_gain']:+.1f}%"
        rows.append(
            [
                e["reward_model"],
                f"{e['test_R']:.3f}",
                e["steps"],
                len(e["seeds"]),
                f"{100 * g[0]:+.1f}% ± {100 * g[1]:.1f}",
                f"{100 * h[0]:+.1f} ± {100 * h[1]:.1f} pts",
                f"{e['gold_tuned']:.3f}",
                f"{e['kl']:.3f}",
                bon,
            ]
        )
    return markdown_table([*headers, "best-of-16 gold gain (48 prompts)"], rows)


def plot(entries: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, step in enumerate(sorted({e["steps"] for e in entries})):
        es = [e for e in entries if e["steps"] == step]
        x = [e["test_R"] + 0.003 * k for e in es]  # a small offset so the steps' error bars do not overlap
        for ax, key in ((a1, "gold_gain"), (a2, "hacking_gap")):
            y = [100 * e[key][0] for e in es]
            err = [100 * e[key][1] for e in es]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"RL, {step} steps (mean ± sd over seeds)")
    bon = sorted({(e["test_R"], e["bon16_gold_gain"]) for e in entries if e["bon16_gold_gain"] is not None})
    if bon:
        a1.plot(
            [b[0] for b in bon],
            [100 * b[1] for b in bon],
            "k--",
            marker="x",
            label="best-of-16 (first 48 held-out prompts)",
        )
    a1.axhline(50, color="grey", lw=0.8, ls=":")
    a1.set_title("held-out oracle gold gain, % over the base")
    a2.axhline(0, color="grey", lw=0.8)
    a2.set_title("hacking gap (proxy gain - gold gain), points")
    for ax in (a1, a2):
        ax.set_xlabel("reward model's test Spearman R")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS / "rlhf.json")
    ap.add_argument("--lr-label", default=RECIPE, help="the RL rows' `lr` label (one recipe)")
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 30])
    ap.add_argument("--out", type=Path, default=RESULTS / "rlhf_ladder.png")
    args = ap.parse_args()
    entries = ladder(json.loads(args.results.read_text())["rows"], args.lr_label, args.steps)
    if not entries:
        raise SystemExit(f"no RL rows labelled {args.lr_label!r} at steps {args.steps} in {args.results}")
    print(table(entries))
    plot(entries, args.out, f"{args.lr_label}; {args.results.name}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
