"""The comparison's result files: ``<out>/ab_<name>.json`` (everything), ``.md`` (tables) and ``.png`` (B - A with
95% intervals per metric, and the simulated A/B)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

LABELS = {
    "oracle_fidelity": "oracle fidelity (gold)",
    "oracle_style": "oracle style (gold)",
    "oracle_composition": "oracle composition (gold)",
    "oracle_novelty": "oracle novelty (gold)",
    "oracle_utility": "oracle utility U (gold)",
    "reward_fidelity": "served reward: fidelity",
    "reward_style": "served reward: style",
    "reward_composition": "served reward: composition",
    "reward_novelty": "served reward: novelty",
    "reward_R": "served reward: R",
    "encoder_score": "encoder score (CLIPScore formula, our encoder)",
    "patch_diversity": "patch diversity (LPIPS-style, our encoder)",
    "fid": "FID (our encoder's features; lower is better)",
    "kid": "KID (our encoder's features; lower is better)",
}
SIM_ROWS = ("b_preferred", "tie", "a_preferred", "b_win_rate_decided")


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


def _interval(ci: list[float]) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _err(point: float, ci: list[float], scale: float = 1.0) -> list[list[float]]:
    """Error-bar lengths below and above ``point`` (a set metric's point value may lie outside its bootstrap
    interval: torchmetrics' KID averages random subsets, the interval recomputes on all rows)."""
    return [[max(0.0, (point - ci[0]) / scale)], [max(0.0, (ci[1] - point) / scale)]]


def markdown(result: dict, command: str) -> str:
    cfg, sim = result["config"], result["simulated_ab"]
    lines = [
        f"# A/B: {result['name']}",
        "",
        f"A = `{result['a']}`, B = `{result['b']}`; {cfg['prompts']} prompts x {cfg['n']} samples per side, the same "
        f"prompts and seeds for both ({cfg['steps']} sampler steps, guidance {cfg['guidance']}). Prompts: "
        + (
            f"a fixed draw of `{result['data']}` split `{cfg['split']}`."
            if result["data"]
            else "fresh shapes-world prompts."
        )
        + f" Served reward from `{result['repo']}`; encoder `{result['encoder']}`. 95% intervals: bootstrap over "
        f"prompts ({cfg['bootstrap']} resamples; FID/KID {cfg['set_bootstrap']}).",
        "",
        "| metric | A | B | B - A | 95% CI of B - A | 95% CI A | 95% CI B |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, m in result["metrics"].items():
        lines.append(
            f"| {LABELS.get(key, key)} | {_fmt(m['a'])} | {_fmt(m['b'])} | {_fmt(m['diff'])} "
            f"| {_interval(m['diff_ci95'])} | {_interval(m['a_ci95'])} | {_interval(m['b_ci95'])} |"
        )
    lines += [
        "",
        f"Real-vs-real FID floor (two halves of the reference renders): {_fmt(result['real_vs_real_fid'])}.",
        "",
        f"## Simulated A/B ({sim['pairs']} pairs x {sim['raters_per_pair']} simulated raters = {sim['votes']} votes)",
        "",
        "Raters: the shapes world's Davidson-Bradley-Terry model over the oracle's utility of each image.",
        "",
        "| outcome | rate | 95% CI |",
        "|---|---|---|",
    ]
    for key in SIM_ROWS:
        lines.append(f"| {key.replace('_', ' ')} | {sim[key]['mean']:.3f} | {_interval(sim[key]['ci95'])} |")
    agree, ceiling = sim["reward_agrees_with_raters"], sim["oracle_utility_agrees_with_raters"]
    lines += [
        "",
        f"The served reward orders the pair as the raters voted on **{agree['mean']:.3f}** "
        f"{_interval(agree['ci95'])} of {agree['n']} decided votes on generated images; the oracle utility the "
        f"votes were drawn from agrees on {ceiling['mean']:.3f} {_interval(ceiling['ci95'])} (the ceiling set by "
        "rater noise).",
        "",
        f"Sampling took {result['seconds_generating']['a']} s (A) and {result['seconds_generating']['b']} s (B); the "
        f"whole run {result['seconds_total']} s. Machine: {result['machine']['platform']}, "
        f"{result['machine']['cpus']} CPUs, load {result['machine']['loadavg']}.",
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {k: v for k, v in result["metrics"].items() if k not in ("fid", "kid")}
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), gridspec_kw={"width_ratios": [2.2, 1, 1.2]})
    ax = axes[0]
    names = list(metrics)
    for i, key in enumerate(names):
        m = metrics[key]
        ax.errorbar(
            m["diff"],
            i,
            xerr=_err(m["diff"], m["diff_ci95"]),
            fmt="o",
            color="C0" if key.startswith("oracle") else "C1" if key.startswith("reward") else "C2",
            capsize=3,
        )
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(names)), [LABELS[k].split(" (")[0] for k in names], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="B - A (95% bootstrap CI over prompts)", title="per-prompt metrics")
    ax = axes[1]
    for i, key in enumerate(("fid", "kid")):
        m = result["metrics"][key]
        for j, side in enumerate(("a", "b")):
            ci = m[f"{side}_ci95"]
            ax.errorbar(
                i + (j - 0.5) * 0.3,
                m[side] / (m["a"] or 1),
                yerr=_err(m[side], ci, m["a"] or 1),
                fmt="s",
                color=f"C{j + 3}",
                capsize=3,
                label=f"{side.upper()}" if i == 0 else None,
            )
    ax.set_xticks([0, 1], ["FID", "KID"])
    ax.set(ylabel="relative to A", title="set metrics (our encoder)")
    ax.legend()
    ax = axes[2]
    sim = result["simulated_ab"]
    rows = ["b_preferred", "tie", "a_preferred"]
    for i, key in enumerate(rows):
        m = sim[key]
        ax.barh(i, m["mean"], color=("#3a7d44", "#9a9a9a", "#b0543a")[i])
        ax.errorbar(m["mean"], i, xerr=_err(m["mean"], m["ci95"]), color="k", capsize=3)
    ax.set_yticks(range(3), ["B preferred", "tie", "A preferred"])
    ax.invert_yaxis()
    agree = sim["reward_agrees_with_raters"]["mean"]
    ax.set(xlim=(0, 1), title=f"simulated A/B ({sim['votes']} votes); reward agrees {agree:.2f}")
    fig.suptitle(f"{result['name']}: B = {Path(result['b']).name} vs A = {Path(result['a']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def write(result: dict, out: Path, command: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    result = result | {"machine": machine(), "command": command}
    stem = out / f"ab_{result['name']}"
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}
    paths["json"].write_text(json.dumps(result, indent=1) + "\n")
    paths["md"].write_text(markdown(result, command))
    plot(result, paths["png"])
    return paths
