"""Scaling study: the reward model at each scale beside two baselines, in-domain and leave-one-style-out, with
training time, peak memory and inference latency.

    python benchmarks/scaling_study.py --data data/shapes2k --steps small=20000 base=5000 large=500 \\
        --time-limit large=7200 --runs runs/scaling
    python benchmarks/scaling_study.py ... --seeds small=5 --parallel 10   # on a GPU: every run at once

(benchmarks/device_scaling.sh runs it on a lent GPU machine from a feature pack, scripts/feature_pack.py.)

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
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Job:
    """One ``rewarddance train reward`` process of the study."""

    scale: str
    steps: int
    out: Path
    extra: tuple[str, ...] = ()

    def command(self, args: argparse.Namespace) -> list[str]:
        cmd = [sys.executable, "-m", "rewarddance.cli", "train", "reward", "--data", str(args.data)]
        cmd += ["--scale", self.scale, "--features", str(args.features), "--components", str(args.components)]
        cmd += ["--out", str(self.out), "--steps", str(self.steps), "--warmup", str(min(args.warmup, self.steps // 10))]
        cmd += ["--lr", str(args.lr[self.scale]), "--eval-every", str(max(1, self.steps // args.evals))]
        loso = "--leave-one-style-out" in self.extra
        limit = (args.loso_time_limit if loso else args.time_limit)[self.scale]
        cmd += ["--time-limit", str(limit), *self.extra]
        return cmd


def jobs(args: argparse.Namespace) -> list[Job]:
    """Every training run of the study: per scale the in-domain run, its extra seeds and the LOSO run."""
    out = []
    for scale in args.scales:
        out.append(Job(scale, args.steps[scale], args.runs / scale))
        out += [Job(scale, args.steps[scale], seed_run(args, scale, k), ("--seed", str(k))) for k in seeds(args, scale)]
        if args.loso and args.loso_steps[scale] > 0:  # 0 skips it where the budget cannot cover 7 runs
            out.append(Job(scale, args.loso_steps[scale], args.runs / f"{scale}-loso", ("--leave-one-style-out",)))
    return out


def seeds(args: argparse.Namespace, scale: str) -> range:
    """The extra seeds of a scale (seed 0 is the in-domain run itself)."""
    return range(1, args.seeds[scale])


def seed_run(args: argparse.Namespace, scale: str, seed: int) -> Path:
    return args.runs / f"{scale}-seed{seed}"


def run_jobs(args: argparse.Namespace, todo: list[Job]) -> None:
    """Train every job, ``--parallel`` at a time. Concurrent runs write their output to RUNS/<name>.log and
    share the machine (on a GPU the small scales leave most of it idle), which the table's hardware column says."""

    def one(job: Job) -> None:
        cmd = job.command(args)
        print("$", " ".join(cmd), flush=True)
        if args.parallel == 1:
            subprocess.run(cmd, check=True)
            return
        job.out.parent.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"OMP_NUM_THREADS": str(threads_per_run(args))}
        with open(job.out.parent / f"{job.out.name}.log", "a") as log:
            done = subprocess.run([*cmd, "--no-progress"], stdout=log, stderr=subprocess.STDOUT, env=env)
        print(f"{'done' if done.returncode == 0 else f'FAILED ({done.returncode})'}: {job.out}", flush=True)
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, cmd)

    with ThreadPoolExecutor(args.parallel) as pool:
        failures = [f.exception() for f in [pool.submit(one, job) for job in todo] if f.exception()]
    if failures:
        raise SystemExit(f"error: {len(failures)} training run(s) failed: {failures}")


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
    run_json = json.loads((run / "run.json").read_text())
    model = load_model(run).to(device)
    rows = examples.split.eval_rows
    components, reward = evaluate.predict(model, examples, rows, device)
    row = {
        "name": scale,
        "parameters": run_json["parameters"],
        "in_domain": run_json["metrics"],
        "val": run_json["val_metrics"],
        "gold": evaluate.gold_spearman(args.data, table.images.image_id.iloc[rows], components, reward),
        "budget": {
            "steps_done": run_json["steps_done"],
            "steps_planned": run_json["train"]["steps"],
            "stopped_by_time_limit": run_json["stopped_by_time_limit"],
            "selected_step": run_json["selected_step"],
            "samples_seen": run_json["samples_seen"],
            "hardware": hardware(args, run_json),
        },
        "train_seconds": run_json["wall_seconds"],
        "seconds_per_step": run_json["seconds_per_step"],
        "peak_rss_mb": run_json["peak_rss_mb"],
        "max_cuda_memory_mb": run_json.get("max_cuda_memory_mb"),
        "latency_ms": latency_ms(run, examples, device),
    }
    if seeds(args, scale):
        row["seeds"] = _seed_summary(
            {0: run_json}
            | {k: json.loads((seed_run(args, scale, k) / "run.json").read_text()) for k in seeds(args, scale)}
        )
    loso = args.runs / f"{scale}-loso"
    if args.loso and args.loso_steps[scale] > 0:
        row["loso"] = json.loads((loso / "loso.json").read_text())
        done = [json.loads((loso / fold / "run.json").read_text())["steps_done"] for fold in row["loso"]["folds"]]
        row["loso"]["budget"] = {"steps_planned": args.loso_steps[scale], "steps_done": done}
    return row


def hardware(args: argparse.Namespace, run_json: dict) -> str:
    device = run_json["device"]
    if device.startswith("cuda") and torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    if args.parallel > 1:
        threads = threads_per_run(args)
        return f"{device} x{run_json['world_size']}, {args.parallel} runs at a time, {threads} CPU thread(s) each"
    return f"{device} x{run_json['world_size']}, {torch.get_num_threads()} threads"


def threads_per_run(args: argparse.Namespace) -> int:
    return max(1, (os.cpu_count() or 1) // args.parallel)


def _seed_summary(manifests: dict[int, dict]) -> dict:
    keys = ["spearman_reward", "pair_accuracy"]
    per_seed = {
        k: {key: m["metrics"][key] for key in keys} | {"selected_step": m["selected_step"]}
        for k, m in manifests.items()
    }
    values = {key: np.array([m[key] for m in per_seed.values()]) for key in keys}
    return {
        "per_seed": per_seed,
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std(ddof=1)) for k, v in values.items()},
    }


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


def _seed_cell(row: dict) -> str:
    if "seeds" not in row:
        return ""
    seeds = row["seeds"]
    n = len(seeds["per_seed"])
    return f" (seeds 0-{n - 1}: {seeds['mean']['spearman_reward']:.3f} ± {seeds['std']['spearman_reward']:.3f})"


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
        if "budget" in r.get("loso", {}):
            done, planned = r["loso"]["budget"]["steps_done"], r["loso"]["budget"]["steps_planned"]
            steps = f"{min(done)}" if min(done) == max(done) else f"{min(done)}-{max(done)}"
            loso += f" ({steps}/{planned} steps per style)"
        memory = f"{r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else "—"
        if r.get("max_cuda_memory_mb"):
            memory += f" (CUDA {r['max_cuda_memory_mb']:.0f} MB)"
        latency = f"{r['latency_ms']['batch_1']} / {r['latency_ms']['batch_32']} ms" if "latency_ms" in r else "—"
        rows.append(
            [
                r["name"],
                f"{r['parameters']:,}",
                budget,
                f"{m['spearman_reward']:.3f}" + _seed_cell(r),
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
        f"LOSO: mean ± std over held-out styles (training on the train split's other prompts). Seeds: mean ± std "
        f"(sample std) of the test Spearman R over in-domain runs that differ only in --seed.\n"
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
    parser.add_argument(
        "--loso-time-limit", nargs="+", default=None, help="SCALE=SECONDS per held-out style (default: --time-limit)"
    )
    parser.add_argument("--lr", nargs="+", default=[], help="SCALE=LR or LR for all (default 1e-4)")
    parser.add_argument("--warmup", type=int, default=1000, help="capped at a tenth of each run's steps")
    parser.add_argument("--evals", type=int, default=10, help="val evaluations per run (model selection)")
    parser.add_argument("--seeds", nargs="+", default=[], help="SCALE=N: in-domain runs with seeds 0..N-1 (default 1)")
    parser.add_argument("--parallel", type=int, default=1, help="training runs at a time (a GPU fits several)")
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
    args.loso_time_limit = (
        per_scale(args.loso_time_limit, args.scales, float, 0.0) if args.loso_time_limit else args.time_limit
    )
    args.lr = per_scale(args.lr, args.scales, float, 1e-4)
    args.seeds = per_scale(args.seeds, args.scales, int, 1)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    table = Table.load(args.data, args.features)
    pairs = load_pairs(args.data, table)
    style = StyleScorer.load(args.components)
    examples = build_examples(table, pairs, default_split(table), style)
    run_jobs(args, jobs(args))
    rows = baseline_rows(args, table, pairs, style, examples)
    rows += [scale_row(args, scale, examples, table, device) for scale in args.scales]
    card = json.loads((args.data / "card.json").read_text())
    payload = {
        "machine": machine()
        | {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"}
        | {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "parallel_runs": args.parallel},
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
