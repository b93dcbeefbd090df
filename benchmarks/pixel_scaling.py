"""Scaling ladder of the pixel reward model (v2): train each rung with the same recipe and budget rule (same data,
same steps and prompts per step), then score every rung in-domain (test split, vs mean ratings and vs gold), on
the shifted world (never trained on) and for latency; merge the rows into benchmarks/results/scaling.{json,md,png}
beside the v1 rows and baselines already there (``ladder``: "v1", "cpu", "gpu").

Examples:
  python benchmarks/pixel_scaling.py --data data/shapes20k --shifted data/shapes-shifted --runs runs/ladder \
      --ladder cpu --scales cpu-xs cpu-s small --steps 500 --seeds cpu-xs=3
  python benchmarks/pixel_scaling.py ... --existing small=runs/pixel-small     # add a run trained elsewhere
Runs resume (rerun the same command); a finished run is only evaluated. Record the machine's load: every row keeps
os.getloadavg() at its start and end of training, and the thread count it trained with.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, machine, markdown_table
from rewarddance_trainer.pixel_reward.config import PixelTrainConfig
from rewarddance_trainer.pixel_reward.eval_cmd import evaluate_run
from rewarddance_trainer.pixel_reward.model import load_model
from rewarddance_trainer.pixel_reward.train import earlier_stages, train

COMPONENT_KEYS = ("fidelity", "style", "composition", "novelty")


def _pairs(values: list[str], cast=str) -> dict:
    out = {}
    for v in values:
        key, _, value = v.partition("=")
        out[key] = cast(value)
    return out


@torch.no_grad()
def latency_ms(run: Path, batch: int, repeats: int) -> float:
    model = load_model(run)
    cfg = model.cfg
    pixels = torch.randint(0, 256, (batch, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    tokens, mask = (
        torch.randn(batch, cfg.prompt_tokens, cfg.prompt_dim),
        torch.ones(batch, cfg.prompt_tokens, dtype=bool),
    )
    model(pixels, tokens, mask)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model(pixels, tokens, mask)
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def val_curve(run: Path, steps_before: int = 0, seen_before: int = 0) -> list[list[float]]:
    """[step, images seen, val Spearman R] at each validation of a run (kept in the row: runs/ may not survive);
    a later stage of a staged run counts on from its earlier stages' steps and images."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    seen, curve = seen_before, []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        seen += r.get("images", 0)
        if "val_spearman_reward" in r:
            curve.append([steps_before + r["step"], seen, round(r["val_spearman_reward"], 4)])
    return curve


STAGE_KEYS = ("steps_done", "samples_seen", "wall_seconds", "lr", "seed")


def budget_of(run_json: dict) -> dict:
    """A run's training budget; for a run fine-tuned from others (run.json ``init``, nested), the whole chain:
    steps, images and time summed over the stages, each stage listed (earliest first), the selected step counted
    from the first stage's start."""
    earlier = earlier_stages(run_json)
    steps_before = sum(s["steps_done"] for s in earlier)
    this = {k: run_json[k] for k in STAGE_KEYS[:3]} | {k: run_json["train"][k] for k in STAGE_KEYS[3:]}
    budget = {
        "steps_done": steps_before + run_json["steps_done"],
        "steps_planned": steps_before + run_json["train"]["steps"],
        "selected_step": None if run_json["selected_step"] is None else steps_before + run_json["selected_step"],
        "samples_seen": sum(s["samples_seen"] for s in earlier) + run_json["samples_seen"],
        "prompts_per_step": run_json["train"]["prompts_per_batch"],
        "hardware": f"{run_json.get('device', 'cpu')}, {run_json['torch_threads']} torch thread(s)",
        "train_seconds": sum(s["wall_seconds"] for s in earlier) + run_json["wall_seconds"],
    }
    if earlier:
        budget["stages"] = [{k: s.get(k) for k in STAGE_KEYS} for s in earlier] + [this]
    return budget


def row_for(
    name: str, ladder: str, run: Path, data: Path, shifted: Path | None, load: dict, latency: dict | None = None
) -> dict:
    """``latency`` given (e.g. an idle-box measurement of the same architecture) is kept instead of re-measured."""
    run_json = json.loads((run / "run.json").read_text())
    test = evaluate_run(run, data, "test", run_json["train"]["test_prompts"])
    budget = budget_of(run_json)
    steps_before, seen_before = (budget[k] - run_json[k] for k in ("steps_done", "samples_seen"))
    row = {
        "name": name,
        "ladder": ladder,
        "architecture": "pixel (v2)",
        "scale": run_json["scale"],
        "parameters": run_json["parameters"],
        "in_domain": test["in_domain"],
        "val": run_json["val_metrics"],
        "gold": test["gold"],
        "budget": budget,
        "train_seconds": budget.pop("train_seconds"),
        "seconds_per_step": run_json["seconds_per_step"],
        "peak_rss_mb": run_json["peak_rss_mb"],
        "latency_ms": latency or {"batch_1": latency_ms(run, 1, 50), "batch_32": latency_ms(run, 32, 10)},
        "val_curve": val_curve(run, steps_before, seen_before),
        "run": str(run),
        "load_average": load,
    }
    if shifted is not None:
        s = evaluate_run(run, shifted, "all")
        row["shifted"] = {"in_domain": s["in_domain"], "gold": s["gold"], "noise_ceiling": s["noise_ceiling"]}
    return row


def leave_one_style_out(
    data: Path, runs: Path, scale: str, steps: int, lr: float, only: list[str] | None = None
) -> dict:
    """Each named style held out in turn (trained and selected without it, tested on all its prompts); ``only``
    limits the folds to those styles (the row then says which were run)."""
    from rewarddance_trainer.pixel_reward.data import Tables
    from rewarddance_trainer.shapes.world import STYLES

    present = set(Tables.load(data).prompts["style"].dropna())
    folds = {}
    for style in (s for s in STYLES if s in present and (not only or s in only)):
        run = runs / f"{scale}-loso-{style}"
        if not (run / "run.json").exists():
            train(data, run, PixelTrainConfig(scale=scale, steps=steps, lr=lr, hold_out_style=style))
        folds[style] = json.loads((run / "run.json").read_text())["metrics"]["spearman_reward"]
    values = np.array(list(folds.values()))
    return {
        "folds": folds,
        "mean": {"spearman_reward": float(values.mean())},
        "std": {"spearman_reward": float(values.std(ddof=1)) if len(values) > 1 else 0.0},
        "steps": steps,
        "styles_held_out": sorted(folds),
        "styles_total": len(present),
    }


def attach_seeds(rows: list[dict]) -> None:
    """Rows named "NAME seed K" of a ladder are further seeds of that ladder's row named NAME: its ``seeds`` gets
    every seed's test R (and shifted-world R where every seed has one), whenever each seed was added."""
    for row in rows:
        others = [
            r for r in rows if r["name"].startswith(row["name"] + " seed ") and r.get("ladder") == row.get("ladder")
        ]
        if "seed " in row["name"] or not others:
            continue
        group = [row, *others]
        row["seeds"] = _spread([r["in_domain"]["spearman_reward"] for r in group])
        if all("shifted" in r for r in group):
            shifted = _spread([r["shifted"]["in_domain"]["spearman_reward"] for r in group])
            row["seeds"] |= {f"shifted_{k}": v for k, v in shifted.items()}


def _spread(values: list[float]) -> dict:
    v = np.array(values)
    return {"per_seed": values, "mean": float(v.mean()), "std": float(v.std(ddof=1))}


def merge(rows: list[dict], path: Path) -> dict:
    """The new rows replace rows of the same name and ladder where they stand; rows of other ladders stay."""
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    for r in old["rows"]:
        r.setdefault("ladder", "baseline" if r.get("parameters", 0) < 10_000 else "v1")
    previous = {(r["name"], r["ladder"]): r for r in old["rows"]}
    # a re-evaluated row keeps what this call did not recompute (its seed spread, its LOSO folds)
    rows = [
        {k: v for k, v in previous.get((r["name"], r["ladder"]), {}).items() if k in ("seeds", "loso")} | r
        for r in rows
    ]
    fresh = {(r["name"], r["ladder"]): r for r in rows}
    merged = [fresh.pop((r["name"], r["ladder"]), r) for r in old["rows"]]  # in place, so the table keeps its order
    return old | {"rows": merged + list(fresh.values())}


def _seed_note(seeds: dict | None) -> str:
    """ " (seeds: mean ± std)" of the test R over seeds; v1 rows keep a dict of metrics per statistic."""
    if not seeds:
        return ""
    mean, std = seeds["mean"], seeds["std"]
    if isinstance(mean, dict):
        mean, std = mean["spearman_reward"], std["spearman_reward"]
    return f" (seeds: {mean:.3f} ± {std:.3f}, n={len(seeds.get('per_seed', []))})"


def _shifted_seed_note(seeds: dict | None) -> str:
    if not seeds or "shifted_mean" not in seeds:
        return ""
    return f" (seeds: {seeds['shifted_mean']:.3f} ± {seeds['shifted_std']:.3f}, n={len(seeds['shifted_per_seed'])})"


def _seed_mean(rows: list[dict], prefix: str, block: str) -> tuple[list[float], list[float]]:
    """Per rung: the mean over its seeds (and their sd) where it has several, else its one value (and 0)."""
    mean, err = [], []
    for r in rows:
        seeds = r.get("seeds") or {}
        if isinstance(seeds.get(prefix + "mean"), float):
            mean.append(seeds[prefix + "mean"])
            err.append(seeds[prefix + "std"])
        else:
            d = r[block] if block == "in_domain" else r[block]["in_domain"]
            mean.append(d["spearman_reward"])
            err.append(0.0)
    return mean, err


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.3f}"


def markdown(result: dict) -> str:
    lines = [
        "# Reward model scaling",
        "",
        "Rows of every ladder: `v1` (transformer over frozen pooled encoder features, H100, data/shapes2k), `cpu` "
        "and `gpu` (the pixel reward model v2, end to end from pixels; same recipe and budget rule per ladder), "
        "and the v1 baselines. In-domain: test split of the row's dataset vs mean human ratings (Spearman) and "
        "decided pairs; gold: vs the simulator's truth; shifted: the shifted world (new phrasing, synonyms and "
        "mix), never trained on.",
        "",
    ]
    headers = ["model", "ladder", "params", "budget", "R (test)", "pair acc.", "R vs gold"]
    headers += [f"{c[:4]}. vs gold" for c in COMPONENT_KEYS] + ["shifted R", "shifted pair acc.", "LOSO R"]
    headers += ["train time", "latency b1 / b32"]
    body = []
    for r in result["rows"]:
        d, g, b = r["in_domain"], r.get("gold", {}), r.get("budget", {})
        s = r.get("shifted", {}).get("in_domain", {})
        loso = r.get("loso", {}).get("mean", {}).get("spearman_reward")
        held = r.get("loso", {}).get("styles_held_out")
        loso_note = f" ({len(held)} of {r['loso']['styles_total']} styles)" if held else ""
        rho = _fmt(d["spearman_reward"]) + _seed_note(r.get("seeds"))
        stages = " (" + " + ".join(str(x["steps_done"]) for x in b["stages"]) + ")" if b.get("stages") else ""
        budget = f"{b.get('steps_done', '—')} steps{stages}, {b.get('samples_seen', '—')} img, {b.get('hardware', '')}"
        latency = r.get("latency_ms") or {}
        body.append(
            [
                r["name"],
                r.get("ladder", ""),
                f"{r['parameters']:,}",
                budget,
                rho,
                _fmt(d.get("pair_accuracy")),
                _fmt(g.get("reward")),
                *[_fmt(g.get(c)) for c in COMPONENT_KEYS],
                _fmt(s.get("spearman_reward")) + _shifted_seed_note(r.get("seeds")),
                _fmt(s.get("pair_accuracy")),
                _fmt(loso) + loso_note,
                f"{r.get('train_seconds', 0):.0f} s",
                f"{latency.get('batch_1', '—')} / {latency.get('batch_32', '—')} ms" if latency else "—",
            ]
        )
    lines.append(markdown_table(headers, body))
    ceiling = result.get("noise_ceiling") or {}
    if ceiling:
        lines += ["", f"Noise ceiling of the v1 data: {json.dumps(ceiling.get('spearman_vs_mean_rating'))}."]
    for key, info in result.get("ladders", {}).items():
        lines += [
            "",
            f"**Ladder `{key}`**: data `{info['data']}`; machine {info['machine']}; command `{info['command']}`.",
        ]
        lines += [f"Load average at start / end: {info['load_start']} / {info['load_end']}. {info.get('note', '')}"]
        for extra in info.get("additions", []):
            lines += [f"Rows added later by `{extra['command']}` (load {extra['load_start']} / {extra['load_end']})."]
    return "\n".join(lines)


def _split_ladder(result: dict, ladder: str) -> tuple[list[dict], list[dict]]:
    """A ladder's rungs at its budget rule (one row per rung, seeds folded in) and its rows trained for longer."""
    rows = sorted((r for r in result["rows"] if r.get("ladder") == ladder), key=lambda r: r["parameters"])
    rungs = result.get("ladders", {}).get(ladder, {}).get("steps_per_rung")
    longer = [r for r in rows if rungs and r.get("budget", {}).get("steps_planned", rungs) != rungs]
    return [r for r in rows if "seed" not in r["name"] and r not in longer], longer


def plot(result: dict, path: Path) -> None:
    """Four panels: each ladder at its budget rule (R and shifted R; fidelity vs gold) against parameters, the
    rows trained for longer against images seen, and the ladders' learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(14, 9))
    names = list(dict.fromkeys(r.get("ladder") for r in result["rows"] if r.get("ladder") not in (None, "baseline")))
    longer_all = []
    for i, ladder in enumerate(names):  # v1, cpu, gpu, and variants such as a ladder at another learning rate
        marker, colour = {"v1": "s", "gpu": "^"}.get(ladder, "o"), f"C{i}"
        rows, longer = _split_ladder(result, ladder)
        longer_all += longer
        if not rows:
            continue
        p = [r["parameters"] for r in rows]
        # rungs with several seeds: their mean, the bar one standard deviation
        kw = {"marker": marker, "color": colour, "capsize": 3}
        ax1.errorbar(p, *_seed_mean(rows, "", "in_domain"), label=f"{ladder}: test R", **kw)
        if all("shifted" in r for r in rows):
            ax1.errorbar(p, *_seed_mean(rows, "shifted_", "shifted"), ls="--", label=f"{ladder}: shifted R", **kw)
        ax2.plot(p, [r["gold"]["fidelity"] for r in rows], marker=marker, color=colour, label=ladder)
        for r in rows:
            curve = np.array(r.get("val_curve") or [])
            if ladder != "v1" and len(curve):
                label = f"{ladder}: {r['name']} ({r['parameters'] / 1e6:.2g}M)"
                ax4.plot(
                    curve[:, 1],
                    curve[:, 2],
                    marker=".",
                    color=colour,
                    alpha=0.4 + 0.6 * p.index(r["parameters"]) / max(1, len(p) - 1),
                    label=label,
                )
    for r in result["rows"]:
        if r.get("ladder") == "baseline":
            ax1.axhline(r["in_domain"]["spearman_reward"], color="grey", lw=0.8, ls=":")
            y = r["in_domain"]["spearman_reward"]
            ax1.annotate(
                r["name"], (0.01, y), xycoords=ax1.get_yaxis_transform(), fontsize=7, color="grey", va="bottom"
            )
    ax1.set(
        xscale="log", xlabel="trainable parameters", ylabel="Spearman", title="R vs mean ratings, one budget per ladder"
    )
    ax2.set(
        xscale="log",
        xlabel="trainable parameters",
        ylabel="Spearman",
        title="fidelity head vs gold (each rung's first seed)",
    )
    longer_all = sorted((r for r in longer_all if "seed" not in r["name"]), key=lambda r: r["budget"]["samples_seen"])
    if longer_all:
        seen = [r["budget"]["samples_seen"] for r in longer_all]
        for key, label in (("reward", "R vs gold"), ("fidelity", "fidelity vs gold")):
            ax3.plot(seen, [r["gold"][key] for r in longer_all], "o", label=label)
        ax3.plot(seen, [r["in_domain"]["spearman_reward"] for r in longer_all], "*", ms=9, label="test R (ratings)")
        ax3.plot(
            seen,
            [r["shifted"]["in_domain"]["spearman_reward"] if "shifted" in r else np.nan for r in longer_all],
            "^",
            label="shifted R",
        )
    ax3.set(
        xlabel="images seen in training (all stages)",
        ylabel="Spearman",
        title="rows trained for longer (one point per row)",
    )
    ax4.set(xlabel="images seen in training", ylabel="val Spearman R", title="learning curves of the ladders' rungs")
    for ax in (ax1, ax2, ax3, ax4):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--shifted", type=Path, default=None, help="shifted-world dataset (evaluation only)")
    parser.add_argument("--runs", type=Path, default=Path("runs/ladder"))
    parser.add_argument("--ladder", default="cpu", help="ladder name in the table (cpu, gpu)")
    parser.add_argument("--scales", nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=500, help="the budget rule: steps per rung")
    parser.add_argument("--seeds", nargs="*", default=[], help="SCALE=N: N seeds for that rung (default 1)")
    parser.add_argument("--existing", nargs="*", default=[], help="NAME=RUN: finished runs to add as rows")
    parser.add_argument("--loso", nargs="*", default=[], help="SCALE=STEPS: leave-one-style-out runs of that rung")
    parser.add_argument("--loso-styles", nargs="*", default=None, help="only these held-out styles (default: all)")
    parser.add_argument("--lr", type=float, default=PixelTrainConfig.lr)
    parser.add_argument(
        "--keep-latency",
        action="store_true",
        help="reuse the latency of the table's row of the same architecture (scale and parameters) "
        "(measured on an idle box) instead of measuring it now, e.g. while other jobs run",
    )
    parser.add_argument("--note", default="", help="a new ladder's note in scaling.md (how its runs were made)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    seeds = _pairs(args.seeds, int)
    load_start = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for scale in args.scales:
        for seed in range(seeds.get(scale, 1)):
            run = args.runs / f"{scale}-seed{seed}"
            cfg = PixelTrainConfig(
                scale=scale, steps=args.steps, lr=args.lr, seed=seed, eval_every=max(1, args.steps // 4)
            )
            before = [round(x, 2) for x in os.getloadavg()]
            if not (run / "run.json").exists():
                train(args.data, run, cfg)
            load = {"start": before, "end": [round(x, 2) for x in os.getloadavg()]}
            row = row_for(
                scale if seed == 0 else f"{scale} seed {seed}", args.ladder, run, args.data, args.shifted, load
            )
            rows.append(row)
    old = json.loads((args.out_dir / "scaling.json").read_text()) if (args.out_dir / "scaling.json").exists() else {}
    rungs = [r for r in old.get("rows", []) if "seed" not in r["name"]]
    # latency depends on the architecture: a grown run has its scale's name but more blocks (and parameters)
    idle = {(r.get("scale"), r.get("parameters"), r.get("ladder")): r.get("latency_ms") for r in rungs}
    for name, run in _pairs(args.existing, Path).items():
        arch = tuple(json.loads((run / "run.json").read_text())[k] for k in ("scale", "parameters"))
        same_arch = [v for (*a, _), v in idle.items() if tuple(a) == arch and v]
        latency = (idle.get((*arch, args.ladder)) or next(iter(same_arch), None)) if args.keep_latency else None
        rows.append(row_for(name, args.ladder, run, args.data, args.shifted, {}, latency))
    for scale, steps in _pairs(args.loso, int).items():
        loso = leave_one_style_out(args.data, args.runs, scale, steps, args.lr, args.loso_styles)
        for row in rows:
            if row["name"] == scale:
                row["loso"] = loso
    path = args.out_dir / "scaling.json"
    result = merge(rows, path)
    attach_seeds(result["rows"])  # seeds added now fold into rungs evaluated earlier
    ladders = result.setdefault("ladders", {})
    if not args.scales and args.ladder in ladders:  # rows added to a ladder trained earlier: keep its record
        ladders[args.ladder].setdefault("additions", []).append(
            {"command": command(), "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()]}
        )
    else:
        ladders[args.ladder] = {
            "data": str(args.data),
            "shifted": str(args.shifted),
            "machine": machine() | {"torch": torch.__version__, "torch_threads": torch.get_num_threads()},
            "command": command(),
            "load_start": load_start,
            "load_end": [round(x, 2) for x in os.getloadavg()],
            "steps_per_rung": args.steps,
            "note": args.note,
        }
    for r in result["rows"]:  # rows trained before curves were kept: read them from their run while it exists
        if "val_curve" not in r and r.get("run") and Path(r["run"]).is_dir():
            r["val_curve"] = val_curve(Path(r["run"]))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "scaling.md").write_text(markdown(result) + "\n")
    plot(result, args.out_dir / "scaling.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
