"""Validate the oracle on rendered images whose simulator gold is known (a shapes-world reward dataset).

Reports Spearman's rho of each oracle estimate with the gold component, and attribute detection accuracy
against the rendered scene: true objects are matched one-to-one to detections by centre distance (Hungarian,
matches farther than ``MATCH_RADIUS`` rejected); shape / colour / size / position accuracy are over matched
pairs, recall and precision over objects and detections, count accuracy over images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..shapes.world import STYLES, Scene, SceneSpec, position_of
from .oracle import Oracle, composition, fidelity, novelty, style_score

COMPONENTS = ("fidelity", "style", "composition", "novelty")
MATCH_RADIUS = 0.15


def load_gold_images(data: Path, split: str | None = "test", limit: int | None = None, seed: int = 0):
    import pandas as pd
    from PIL import Image

    data = Path(data)
    prompts = pd.read_parquet(data / "prompts.parquet")
    images = pd.read_parquet(data / "images.parquet")[["image_id", "prompt_id", "path"]]
    gold = pd.read_parquet(data / "gold" / "gold.parquet")
    specs = pd.read_parquet(data / "gold" / "prompts.parquet")
    df = images.merge(prompts[["prompt_id", "text", "split"]]).merge(gold).merge(specs)
    if split:
        df = df[df["split"] == split]
    if limit and len(df) > limit:
        df = df.sample(n=limit, random_state=seed)
    df = df.sort_values("image_id").reset_index(drop=True)
    pixels = [np.asarray(Image.open(data / p).convert("RGB")) for p in df["path"]]
    return df, pixels


def attribute_accuracy(readings, scenes: list[Scene]) -> dict:
    from scipy.optimize import linear_sum_assignment

    hits = {"shape": [], "color": [], "size": [], "position": []}
    n_true = n_det = n_match = count_ok = bg_ok = 0
    style_top, style_err = [], []
    for r, s in zip(readings, scenes, strict=True):
        n_true += len(s.objects)
        n_det += len(r.objects)
        count_ok += len(s.objects) == len(r.objects)
        bg_ok += r.background == s.background
        if s.objects and r.objects:
            d = np.array([[np.hypot(o.x - det.x, o.y - det.y) for det in r.objects] for o in s.objects])
            rows, cols = linear_sum_assignment(d)
            for i, j in zip(rows, cols, strict=True):
                if d[i, j] > MATCH_RADIUS:
                    continue
                o, det = s.objects[i], r.objects[j]
                n_match += 1
                hits["shape"].append(o.shape == det.shape)
                hits["color"].append(o.color == det.color)
                hits["size"].append(o.size == det.size)
                hits["position"].append(position_of(o.x, o.y) == det.position)
        w = s.style_weight if s.style_mix else 1.0
        if w == 1.0:
            style_top.append(max(r.style_weights, key=r.style_weights.get) == s.style)
        style_err.append(abs(r.style_weights[s.style] - w))
    n = len(scenes)
    return {
        "objects": n_true,
        "detections": n_det,
        "recall": n_match / max(n_true, 1),
        "precision": n_match / max(n_det, 1),
        "count_accuracy": count_ok / n,
        **{f"{k}_accuracy": float(np.mean(v)) if v else None for k, v in hits.items()},
        "background_accuracy": bg_ok / n,
        "style_top1_accuracy_pure": float(np.mean(style_top)) if style_top else None,
        "style_weight_mae": float(np.mean(style_err)),
        "style_names": list(STYLES),
    }


def validate(oracle: Oracle, data: Path, split: str | None = "test", limit: int | None = None) -> dict:
    from scipy.stats import spearmanr

    t0 = time.time()
    df, pixels = load_gold_images(data, split, limit)
    readings = oracle.read(pixels)
    seconds = time.time() - t0
    specs = [SceneSpec.from_json(s) for s in df["spec"]]
    est = np.array(
        [[fidelity(s, r), style_score(s, r), composition(r), novelty(r)] for s, r in zip(specs, readings, strict=True)]
    )
    gold = df[list(COMPONENTS)].to_numpy()
    rho = {c: float(spearmanr(est[:, i], gold[:, i]).statistic) for i, c in enumerate(COMPONENTS)}
    mae = {c: float(np.mean(np.abs(est[:, i] - gold[:, i]))) for i, c in enumerate(COMPONENTS)}
    w = np.array([0.40, 0.25, 0.25, 0.10])
    rho["utility"] = float(spearmanr(est @ w, gold @ w).statistic)
    scenes = [Scene.from_json(s) for s in df["scene"]]
    faithful = np.array([s.perturbations == () for s in scenes])
    # Does the oracle rank each prompt's faithful image above its perturbed ones (as gold fidelity does)?
    wins = []
    for _pid, g in df.assign(est=est[:, 0], faithful=faithful).groupby("prompt_id"):
        good, bad = g[g["faithful"]], g[~g["faithful"] & (g["fidelity"] < 1.0)]
        if len(good) and len(bad):
            wins.extend((good["est"].to_numpy()[:, None] > bad["est"].to_numpy()[None, :]).ravel())
    return {
        "data": str(data),
        "split": split,
        "images": len(df),
        "spearman": rho,
        "mae": mae,
        "faithful_above_wrong_fidelity": float(np.mean(wins)) if wins else None,
        "attributes": attribute_accuracy(readings, scenes),
        "attributes_faithful_images": attribute_accuracy(
            [r for r, f in zip(readings, faithful, strict=True) if f],
            [s for s, f in zip(scenes, faithful, strict=True) if f],
        ),
        "seconds": round(seconds, 1),
        "images_per_second": round(len(df) / seconds, 1),
    }
