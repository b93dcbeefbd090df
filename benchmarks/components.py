"""Component report: each scorer's Spearman with its gold score on held-out prompts and leave-one-style-out,
R against the gold utility, and the encoder's retrieval on held-out and paraphrased prompts.

    python benchmarks/components.py --data data/shapes2k --encoder runs/encoder-shapes2k

Needs ``rewarddance data embed`` (the feature cache) and ``rewarddance train components`` first. Learned parts
(P calibration, S probe, C probe, N bank) are fitted on the train split; leave-one-style-out refits them without
the held-out style and scores that style's val+test prompts (the encoder itself saw every style in training).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.components.fit import Table, component_signals, fit_components, style_text_embeddings
from rewarddance_trainer.encoders.model import Encoder
from rewarddance_trainer.encoders.train import recall_at_1
from rewarddance_trainer.shapes.prompts import describe
from rewarddance_trainer.shapes.world import STYLE_WORDS, STYLES, SceneSpec

from rewarddance.components.base import COMPONENTS
from rewarddance.components.bundle import ComponentSet
from rewarddance.components.composite import composite, resolve_weights
from rewarddance.components.composition import rule_score

GOALS = {"fidelity": 0.6, "style": 0.6, "composition": 0.5, "novelty": 0.5}


def rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b)[0])


def component_scores(components: ComponentSet, table: Table, rows: np.ndarray) -> dict[str, np.ndarray]:
    batch = table.batch(rows)
    features = np.asarray(table.cache.array("pixel_features")[rows])
    style = components.style
    out = dict(zip(COMPONENTS, component_signals(components, table, rows).T, strict=True))
    out["composition (rule only)"] = rule_score(features)
    if style.probe_w is not None:
        for mode in ("zero-shot", "probe"):
            style.mode = mode
            out[f"style ({mode} only)"] = style.score(batch)
        style.mode = "mean"
    out["reward"] = composite(np.stack([out[c] for c in COMPONENTS], axis=1), resolve_weights(None))
    return out


def correlations(scores: dict[str, np.ndarray], gold: pd.DataFrame, table: Table, rows: np.ndarray) -> dict:
    out = {}
    for name, values in scores.items():
        component = "utility" if name == "reward" else name.split(" ")[0]
        entry = {"gold": rho(values, gold[component].to_numpy())}
        if component in COMPONENTS:
            entry["human"] = rho(values, table.images[f"{component}_rating"].to_numpy()[rows])
        out[name] = entry
    return out


def paraphrase_retrieval(encoder: Encoder, table: Table, data: Path, seed: int = 999) -> dict:
    """t2i R@1 over held-out prompts, with their own text and with a fresh paraphrase of the same scene."""
    specs = pd.read_parquet(data / "gold" / "prompts.parquet").set_index("prompt_id")["spec"]
    images = table.images
    faithful = images[(images.split == "test") & images.image_id.str.endswith("_000")]
    pooled = np.asarray(table.cache.array("image_pooled"))[faithful.index.to_numpy()]
    original = encoder.encode_texts(faithful.text.tolist()).pooled
    rng = np.random.default_rng(seed)
    paraphrases = [describe(SceneSpec.from_json(specs[p]), rng) for p in faithful.prompt_id]
    para = encoder.encode_texts(paraphrases).pooled
    same_top = float(((pooled @ original.T).argmax(0) == (pooled @ para.T).argmax(0)).mean())
    return {
        "original": recall_at_1(pooled, original),
        "paraphrase": recall_at_1(pooled, para),
        "same_top_image": same_top,
        "examples": list(zip(faithful.text[:3], paraphrases[:3], strict=True)),
    }


def leave_one_style_out(table: Table, gold: pd.DataFrame, encoder: Encoder, style_text: np.ndarray) -> dict:
    temperature = encoder.model.logit_scale.exp().clamp(max=100).item()
    styles = table.images["style"].to_numpy()
    split = table.images.split.to_numpy()
    per_style = {}
    for held in STYLES:
        fit_rows = np.flatnonzero((split == "train") & (styles != held))
        eval_rows = np.flatnonzero((split != "train") & (styles == held))
        # Without the held-out style the probe cannot be fitted over all styles: S is then zero-shot only.
        components = fit_components(table, fit_rows, style_text, temperature)
        scores = component_scores(components, table, eval_rows)
        per_style[held] = {
            k: v["gold"] for k, v in correlations(scores, gold.iloc[eval_rows], table, eval_rows).items()
        }
        per_style[held]["n_images"] = len(eval_rows)
    return per_style


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--features", type=Path, default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    features = args.features or args.data / "features" / args.encoder.resolve().name

    table = Table.load(args.data, features)
    gold = pd.read_parquet(args.data / "gold" / "gold.parquet").set_index("image_id").loc[table.images.image_id]
    gold = gold.reset_index()
    encoder = Encoder.load(args.encoder)
    components = ComponentSet.load(args.encoder / "components")
    test_rows = np.flatnonzero(table.images.split.to_numpy() == "test")
    held_out = correlations(component_scores(components, table, test_rows), gold.iloc[test_rows], table, test_rows)
    style_text = style_text_embeddings(encoder, STYLE_WORDS)
    loso = leave_one_style_out(table, gold, encoder, style_text)
    names = [n for n in held_out if all(n in loso[s] for s in STYLES)]
    loso_mean = {n: float(np.mean([loso[s][n] for s in STYLES])) for n in names}
    loso_std = {n: float(np.std([loso[s][n] for s in STYLES])) for n in names}
    retrieval = paraphrase_retrieval(encoder, table, args.data)
    card = json.loads((args.data / "card.json").read_text())
    payload = {
        "machine": machine(),
        "command": command(),
        "data": str(args.data),
        "encoder": str(args.encoder),
        "encoder_meta": json.loads((args.encoder / "encoder.json").read_text())["test_retrieval"],
        "held_out_test_split": held_out,
        "leave_one_style_out": loso,
        "loso_mean": loso_mean,
        "loso_std": loso_std,
        "paraphrase_retrieval": retrieval,
        "noise_ceiling": card.get("noise_ceiling"),
        "goals": GOALS,
        "n_test_images": len(test_rows),
    }
    rows = [
        [
            n,
            f"{held_out[n]['gold']:.3f}",
            f"{held_out[n].get('human', float('nan')):.3f}",
            f"{loso_mean[n]:.3f} ± {loso_std[n]:.3f}" if n in loso_mean else "n/a (probe needs every style)",
            GOALS.get(n, ""),
        ]
        for n in held_out
    ]
    table_md = markdown_table(
        [
            "scorer",
            "Spearman vs gold (test split)",
            "vs mean human rating",
            "leave-one-style-out (mean ± std over 7 styles)",
            "goal",
        ],
        rows,
    )
    per_style = markdown_table(
        ["held-out style", *COMPONENTS, "reward", "images"],
        [[s, *(f"{loso[s][c]:.3f}" for c in [*COMPONENTS, "reward"]), loso[s]["n_images"]] for s in STYLES],
    )
    r = retrieval
    md = (
        f"# Component scorers vs gold\n\nData `{args.data}` ({len(test_rows)} test-split images), encoder "
        f"`{args.encoder}`.\n\nMachine: {payload['machine']}\n\nCommand: `{payload['command']}`\n\n{table_md}\n\n"
        "`reward` = composite R with default weights 0.40/0.25/0.25/0.10 against the gold utility. In "
        "leave-one-style-out the style probe cannot cover the held-out style, so S there is zero-shot only.\n\n"
        f"## Leave-one-style-out (per style)\n\n{per_style}\n\n## Encoder retrieval (held-out prompts)\n\n"
        f"Faithful image of each test prompt vs all test prompts ({r['original']['n']}): "
        f"original text t2i R@1 {r['original']['t2i_r1']:.3f}, i2t R@1 {r['original']['i2t_r1']:.3f}; "
        f"paraphrased text t2i R@1 {r['paraphrase']['t2i_r1']:.3f}, i2t R@1 {r['paraphrase']['i2t_r1']:.3f}; "
        f"paraphrase retrieves the same top image {r['same_top_image']:.1%} of the time.\n"
    )
    write_result("components", payload, md, args.out_dir)
    plot(held_out, loso_mean, loso_std, args.out_dir / "components.png")
    print(md)


def plot(held_out: dict, loso_mean: dict, loso_std: dict, path: Path) -> None:
    names = [*COMPONENTS, "reward"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, [held_out[n]["gold"] for n in names], 0.4, label="held-out prompts")
    ax.bar(x + 0.2, [loso_mean[n] for n in names], 0.4, yerr=[loso_std[n] for n in names], label="leave-one-style-out")
    for i, n in enumerate(names):
        if n in GOALS:
            ax.hlines(GOALS[n], i - 0.45, i + 0.45, colors="k", linestyles="dashed", lw=1)
    ax.set_xticks(x, names)
    ax.set_ylabel("Spearman vs gold")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    ax.set_title("component scorers (dashed: goals)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
