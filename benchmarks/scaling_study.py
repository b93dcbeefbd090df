"""Scaling study: the reward model at each scale beside two baselines, in-domain and leave-one-style-out, with
training time, peak memory and inference latency.

    python benchmarks/scaling_study.py --data data/shapes2k --steps small=20000 base=5000 large=500 \\
        --time-limit large=7200 --runs runs/scaling

Each scale trains through ``rewarddance train reward`` in its own process (so peak RSS is that run's alone): once
on the train split, with the best step picked on the val split (evaluated ``--evals`` times) and that model tested
once on the test split, and (unless ``--no-loso``) once per held-out style. Budgets are
flags and every row states its own (steps done, samples seen, hardware); a time limit stops a run early and the
row says so. Rerunning resumes or reuses finished runs. Baselines, on the same splits:
- zero-shot composite: R = default-weighted composite of the four component scorers (fitted on the training rows);
- ridge: per component, closed-form ridge on [image_pooled, prompt_pooled, image * prompt, the 4 signals].
Spearman with gold (the simulator's truth) is reported here only; training never reads it.
Results: benchmarks/results/scaling.md, scaling.json and scaling.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.components.fit import Table
from rewarddance_trainer.reward import evaluate
from rewarddance_trainer.reward.data import (
    Examples,
    build_examples,
    default_split,
    load_pairs,
    style_splits,
)
from rewarddance_trainer.reward.model import load_model

from rewarddance.components.base import COMPONENTS
from rewarddance.components.composite import resolve_weights
from rewarddance.components.style import StyleScorer

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
LATENCY_REPEATS = {1: 50, 32: 20}


def per_scale(values: list[str], scales: list[str], kind: type, default) -> dict:
    """``["small=3000", "large=100"]`` or ``["500"]`` (all scales) -> {scale: value}."""
    out = dict.fromkeys(scales, default)
    for item in values:
        name, _, value = item.rpartition("=")
        for scale in [name] if name else scales:
            if scale not in out:
                raise SystemExit(f"error: {item!r} names a scale not in --scales {scales}")
            out[scale] = kind(value)
    return out


# --- the reward model, trained by the CLI ----------------------------------------------------------------------


def train_run(args: argparse.Namespace, scale: str, steps: int, time_limit: float, out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "rewarddance.cli", "train", "reward", "--data", str(args.data), "--scale", scale]
    cmd += ["--features", str(args.features), "--components", str(args.components), "--out", str(out)]
    cmd += ["--steps", str(steps), "--warmup", str(min(args.warmup, steps // 10)), "--lr", str(args.lr[scale])]
    cmd += ["--eval-every", str(max(1, steps // args.evals)), "--time-limit", str(time_limit), *extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


@torch.no_grad()
def latency_ms(run: Path, examples: Examples, device: torch.device) -> dict[str, float]:
    """Median forward time of the trained model at batch 1 and 32 (real inputs, after warm-up)."""
    model = load_model(run).to(device)
    out = {}
    for batch, repeats in LATENCY_REPEATS.items():
        inputs = examples.inputs(examples.split.eval_rows[:batch], device)
        times = []
        for i in range(repeats + 3):
            started = time.perf_counter()
            model(**inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - started)
        out[f"batch_{batch}"] = round(1000 * float(np.median(times)), 2)
    return out


def scale_row(args: argparse.Namespace, scale: str, examples: Examples, table: Table, device: torch.device) -> dict:
    run = args.runs / scale
    train_run(args, scale, args.steps[scale], args.time_limit[scale], run)
    manifest = json.loads((run / "run.json").read_text())
    model = load_model(run).to(device)
    rows = examples.split.eval_rows
    components, reward = evaluate.predict(model, examples, rows, device)
    row = {
        "name": scale,
        "parameters": manifest["parameters"],
        "in_domain": manifest["metrics"],
        "val": manifest["val_metrics"],
        "gold": evaluate.gold_spearman(args.data, table.images.image_id.iloc[rows], components, reward),
        "budget": {
            "steps_done": manifest["steps_done"],
            "steps_planned": manifest["train"]["steps"],
            "stopped_by_time_limit": manifest["stopped_by_time_limit"],
            "selected_step": manifest["selected_step"],
            "samples_seen": manifest["samples_seen"],
            "hardware": f"{manifest['device']} x{manifest['world_size']}, {torch.get_num_threads()} threads",
        },
        "train_seconds": manifest["wall_seconds"],
        "seconds_per_step": manifest["seconds_per_step"],
        "peak_rss_mb": manifest["peak_rss_mb"],
        "max_cuda_memory_mb": manifest.get("max_cuda_memory_mb"),
        "latency_ms": latency_ms(run, examples, device),
    }
    if args.loso and args.loso_steps[scale] > 0:  # 0 skips it where the budget cannot cover 7 runs
        loso = args.runs / f"{scale}-loso"
        train_run(args, scale, args.loso_steps[scale], args.time_limit[scale], loso, "--leave-one-style-out")
        row["loso"] = json.loads((loso / "loso.json").read_text())
    return row


# --- baselines -------------------------------------------------------------------------------------------------


def zero_shot(examples: Examples, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    components = examples.signals[rows]
    return components, components @ weights


def pooled_features(table: Table, examples: Examples, rows: np.ndarray) -> np.ndarray:
    image = np.asarray(table.cache.array("image_pooled")[rows])
    prompt = np.asarray(table.cache.array("prompt_pooled"))[table.images.prompt_row.to_numpy()[rows]]
    return np.concatenate([image, prompt, image * prompt, examples.signals[rows]], axis=1).astype(np.float64)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return coef, float(mean_y - mean_x @ coef)


def ridge(table: Table, examples: Examples, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per component: standardized ridge fitted on the rated training rows, alpha picked on every 5th prompt."""
    train = examples.split.train_rows
    x_train, x_eval = pooled_features(table, examples, train), pooled_features(table, examples, rows)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-9
    x_train, x_eval = (x_train - mean) / scale, (x_eval - mean) / scale
    holdout = table.images.prompt_row.to_numpy()[train] % 5 == 0
    components = np.empty((len(rows), len(COMPONENTS)))
    for i in range(len(COMPONENTS)):
        y = examples.targets[train, i]
        rated = ~np.isnan(y)
        fit, check = rated & ~holdout, rated & holdout
        errors = []
        for alpha in RIDGE_ALPHAS:
            coef, intercept = _ridge(x_train[fit], y[fit], alpha)
            errors.append(np.mean((x_train[check] @ coef + intercept - y[check]) ** 2))
        coef, intercept = _ridge(x_train[rated], y[rated], RIDGE_ALPHAS[int(np.argmin(errors))])
        components[:, i] = np.clip(x_eval @ coef + intercept, 0, 1)
    return components, components @ weights


def baseline_rows(args: argparse.Namespace, table: Table, pairs, style: StyleScorer, examples: Examples) -> list[dict]:
    weights = resolve_weights(None).vector
    loso_splits = style_splits(table) if args.loso else []
    loso_examples = [build_examples(table, pairs, s, style) for s in loso_splits]
    out = []
    for name, method in (
        ("zero-shot composite", lambda ex, rows: zero_shot(ex, rows, weights)),
        ("ridge on pooled features", lambda ex, rows: ridge(table, ex, rows, weights)),
    ):
        started = time.perf_counter()
        rows = examples.split.eval_rows
        components, reward = method(examples, rows)
        row = {
            "name": name,
            "parameters": _baseline_parameters(name, table),
            "in_domain": evaluate.metrics(examples, rows, components, reward, weights),
            "gold": evaluate.gold_spearman(args.data, table.images.image_id.iloc[rows], components, reward),
            "budget": {"steps_done": 0, "samples_seen": "train split, closed form", "hardware": "cpu (numpy)"},
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        if loso_examples:
            per_fold = {}
            for ex in loso_examples:
                c, r = method(ex, ex.split.eval_rows)
                per_fold[ex.split.name] = evaluate.metrics(ex, ex.split.eval_rows, c, r, weights)
            row["loso"] = _loso_summary(per_fold)
        out.append(row)
    return out


def _baseline_parameters(name: str, table: Table) -> int:
    if name.startswith("zero-shot"):
        return 0  # the component scorers' own fitted parameters are shared by every row
    width = 3 * table.cache.array("image_pooled").shape[1] + len(COMPONENTS)
    return (width + 1) * len(COMPONENTS)


def _loso_summary(per_fold: dict[str, dict]) -> dict:
    keys = [f"spearman_{c}" for c in (*COMPONENTS, "reward")] + ["pair_accuracy"]
    values = {k: np.array([m[k] for m in per_fold.values()]) for k in keys}
    return {
        "folds": per_fold,
        "mean": {k: float(np.nanmean(v)) for k, v in values.items()},
        "std": {k: float(np.nanstd(v, ddof=1)) for k, v in values.items()},
    }


# --- report ----------------------------------------------------------------------------------------------------


def markdown(payload: dict) -> str:
    ceiling = payload["noise_ceiling"] or {}
    rho_ceiling = ceiling.get("spearman_vs_mean_rating", {}).get("reward", float("nan"))
    headers = ["model", "params", "budget (steps, samples seen, hardware)", "Spearman R (test)", "R vs gold"]
    headers += ["LOSO Spearman R", "pair acc. (test)", "train time", "peak RSS", "latency b1 / b32"]
    rows = []
    for r in payload["rows"]:
        b, m = r["budget"], r["in_domain"]
        if b["steps_done"]:
            seen = b["samples_seen"]
            limit = " (time limit)" if b["stopped_by_time_limit"] else ""
            selected = f", selected step {b['selected_step']}" if b.get("selected_step") is not None else ""
            budget = f"{b['steps_done']}/{b['steps_planned']} steps{limit}{selected}, "
            budget += f"{seen['rated_images']:,} img + {seen['pairs']:,} pairs, {b['hardware']}"
        else:
            budget = f"{b['samples_seen']}, {b['hardware']}"
        loso = (
            f"{r['loso']['mean']['spearman_reward']:.3f} ± {r['loso']['std']['spearman_reward']:.3f}"
            if "loso" in r
            else "—"
        )
        memory = f"{r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else "—"
        if r.get("max_cuda_memory_mb"):
            memory += f" (CUDA {r['max_cuda_memory_mb']:.0f} MB)"
        latency = f"{r['latency_ms']['batch_1']} / {r['latency_ms']['batch_32']} ms" if "latency_ms" in r else "—"
        rows.append(
            [
                r["name"],
                f"{r['parameters']:,}",
                budget,
                f"{m['spearman_reward']:.3f}",
                f"{r['gold']['reward']:.3f}",
                loso,
                f"{m['pair_accuracy']:.3f}",
                f"{r['train_seconds']:.0f} s",
                memory,
                latency,
            ]
        )
    return (
        f"# Reward model scaling study\n\nData `{payload['data']}`; machine {payload['machine']}.\n\n"
        f"Command: `{payload['command']}`\n\n{markdown_table(headers, rows)}\n\n"
        f"Spearman R: the model's R against the default-weighted mean human ratings of the test split's images "
        f"(noise ceiling {rho_ceiling:.3f}), for the step with the best val-split Spearman R; pair accuracy on the "
        f"test split's decided preference pairs (ceiling "
        f"{ceiling.get('pairwise_accuracy', float('nan')):.3f}); R vs gold: against the simulator's utility. "
        f"LOSO: mean ± std over held-out styles (training on the train split's other prompts).\n"
    )


def plot(payload: dict, path: Path) -> None:
    models = [r for r in payload["rows"] if "latency_ms" in r]
    baselines = [r for r in payload["rows"] if "latency_ms" not in r]
    params = [r["parameters"] for r in models]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in ((axes[0], "spearman_reward", "Spearman R"), (axes[1], "pair_accuracy", "pair accuracy")):
        ax.plot(params, [r["in_domain"][key] for r in models], marker="o", label="test split")
        if all("loso" in r for r in models):
            ax.errorbar(
                params,
                [r["loso"]["mean"][key] for r in models],
                yerr=[r["loso"]["std"][key] for r in models],
                marker="s",
                capsize=3,
                label="leave-one-style-out",
            )
        for i, b in enumerate(baselines):
            ax.axhline(b["in_domain"][key], color=f"C{i + 2}", ls=":", lw=1, label=b["name"])
        ceiling = payload["noise_ceiling"]
        if ceiling:
            limit = (
                ceiling["spearman_vs_mean_rating"]["reward"]
                if key == "spearman_reward"
                else ceiling["pairwise_accuracy"]
            )
            ax.axhline(limit, color="k", ls="--", lw=0.8, label="noise ceiling")
        ax.set(xscale="log", xlabel="parameters", ylabel=label, title=label)
    axes[0].legend(fontsize=7)
    axes[2].plot(params, [r["seconds_per_step"] for r in models], marker="o", label="train s/step")
    axes[2].plot(
        params, [r["latency_ms"]["batch_32"] / 1000 for r in models], marker="s", label="inference s, batch 32"
    )
    axes[2].set(xscale="log", yscale="log", xlabel="parameters", ylabel="seconds", title="cost")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--features", type=Path, default=None, help="default: the one cache in DATA/features")
    parser.add_argument("--components", type=Path, default=None, help="default: ENCODER/components of the cache")
    parser.add_argument("--scales", nargs="+", default=["small", "base", "large"])
    parser.add_argument("--steps", nargs="+", default=[], help="SCALE=N or N for all (default 2000)")
    parser.add_argument("--loso-steps", nargs="+", default=None, help="per held-out style (default: --steps)")
    parser.add_argument("--time-limit", nargs="+", default=[], help="SCALE=SECONDS per training run (default none)")
    parser.add_argument("--lr", nargs="+", default=[], help="SCALE=LR or LR for all (default 1e-4)")
    parser.add_argument("--warmup", type=int, default=1000, help="capped at a tenth of each run's steps")
    parser.add_argument("--evals", type=int, default=10, help="val evaluations per run (model selection)")
    parser.add_argument("--no-loso", dest="loso", action="store_false")
    parser.add_argument("--runs", type=Path, default=Path("runs/scaling"))
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.features = args.features or next(p for p in (args.data / "features").glob("*") if (p / "meta.json").exists())
    if args.components is None:
        encoder = json.loads((args.features / "meta.json").read_text())["identity"]["encoder"]
        args.components = Path(encoder) / "components"
    args.steps = per_scale(args.steps, args.scales, int, 2000)
    args.loso_steps = per_scale(args.loso_steps, args.scales, int, 0) if args.loso_steps else args.steps
    args.time_limit = per_scale(args.time_limit, args.scales, float, 0.0)
    args.lr = per_scale(args.lr, args.scales, float, 1e-4)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    table = Table.load(args.data, args.features)
    pairs = load_pairs(args.data, table)
    style = StyleScorer.load(args.components)
    examples = build_examples(table, pairs, default_split(table), style)
    rows = baseline_rows(args, table, pairs, style, examples)
    rows += [scale_row(args, scale, examples, table, device) for scale in args.scales]
    card = json.loads((args.data / "card.json").read_text())
    payload = {
        "machine": machine() | {"device": str(device), "torch_threads": torch.get_num_threads()},
        "command": command(),
        "data": str(args.data),
        "table_sha256": card.get("table_sha256"),
        "noise_ceiling": card.get("noise_ceiling"),
        "rows": rows,
    }
    md = markdown(payload)
    write_result("scaling", payload, md, args.out_dir)
    plot(payload, args.out_dir / "scaling.png")
    print(md)


if __name__ == "__main__":
    main()
