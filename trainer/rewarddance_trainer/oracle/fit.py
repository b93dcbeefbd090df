"""Fit the oracle's learned parts on fresh shapes-world renders (never on a reward dataset, never on gold labels
of the images it is validated on): the style CNN and small gradient-boosted heads over the classical features.

Training scenes are ``candidates`` of random prompts from a seed of their own, so they include the controlled
errors (wrong attributes, extra objects, cut-off and overlapping placement, style blends). Component labels come
from the rendered scene geometry: a component belongs to the object whose visible pixels it overlaps most.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..shapes.candidates import candidates
from ..shapes.prompts import sample_spec
from ..shapes.render import object_mask, render
from ..shapes.world import BACKGROUNDS, COLORS, SHAPES, SIZES, STYLES, Scene
from . import vision
from .style import StyleNet, predict, to_tensor

FIT_SEED = 7_000_003  # disjoint from dataset seeds by construction (its own generator stream)


@dataclass
class OracleFitConfig:
    n_style_images: int = 4000
    n_head_images: int = 3000
    style_epochs: int = 6
    style_width: int = 24
    seed: int = FIT_SEED
    candidates_per_prompt: int = 4
    head_iterations: int = 150
    extra: dict = field(default_factory=dict)


def render_scenes(n: int, seed: int, per_prompt: int = 4) -> tuple[list[np.ndarray], list[Scene]]:
    rng = np.random.default_rng([seed, n])
    images, scenes = [], []
    while len(images) < n:
        spec = sample_spec(rng)
        for scene in candidates(spec, per_prompt, rng):
            images.append(render(scene, 64, rng))
            scenes.append(scene)
    return images[:n], scenes[:n]


def style_target(scene: Scene) -> np.ndarray:
    t = np.zeros(len(STYLES), dtype=np.float32)
    w = scene.style_weight if scene.style_mix is not None else 1.0
    t[STYLES.index(scene.style)] += w
    if scene.style_mix is not None:
        t[STYLES.index(scene.style_mix)] += 1 - w
    return t


def visible_masks(scene: Scene) -> list[np.ndarray]:
    """Per object, the pixels where it is drawn on top (later objects occlude earlier ones)."""
    masks = [object_mask(o, vision.SIDE) > 0.5 for o in scene.objects]
    out = []
    for i, m in enumerate(masks):
        covered = np.zeros_like(m)
        for later in masks[i + 1 :]:
            covered |= later
        out.append(m & ~covered)
    return out


def label_components(comps: list[vision.Component], scene: Scene) -> list[int | None]:
    """Object index for each component, None for spurious ones (fragments, glow, texture)."""
    masks = visible_masks(scene)
    best: dict[int, tuple[int, int]] = {}
    owner: list[int | None] = [None] * len(comps)
    for ci, c in enumerate(comps):
        overlaps = [int((c.mask & m).sum()) for m in masks]
        if not overlaps:
            continue
        j = int(np.argmax(overlaps))
        if overlaps[j] < 0.3 * c.mask.sum() or list(COLORS).index(scene.objects[j].color) != c.hue_label:
            continue
        if j not in best or overlaps[j] > best[j][1]:
            best[j] = (ci, overlaps[j])
    for j, (ci, _) in best.items():
        owner[ci] = j
    return owner


def fit_style(images, scenes, cfg: OracleFitConfig, progress: bool = True) -> StyleNet:
    torch.manual_seed(cfg.seed)
    net = StyleNet(cfg.style_width)
    x = to_tensor(images)
    y = torch.from_numpy(np.stack([style_target(s) for s in scenes]))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = cfg.style_epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(cfg.seed)
    net.train()
    for epoch in range(cfg.style_epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            logits = net(x[idx])
            loss = -(y[idx] * torch.log_softmax(logits, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if progress:
            print(f"style epoch {epoch + 1}/{cfg.style_epochs} soft-CE {total / len(x):.4f}", flush=True)
    return net.eval()


def head_table(images, scenes, style_probs) -> dict[str, np.ndarray]:
    """Feature rows and labels for the component heads and the background head."""
    rows, valid, shape, color, size, geom = [], [], [], [], [], []
    g_rows, g_bg = [], []
    for img, scene, probs in zip(images, scenes, style_probs, strict=True):
        canon = vision.canonical(img)
        comps = vision.components(canon)
        owners = label_components(comps, scene)
        for c, j in zip(comps, owners, strict=True):
            rows.append(np.concatenate([c.features, probs]))
            valid.append(j is not None)
            o = scene.objects[j] if j is not None else None
            shape.append(SHAPES.index(o.shape) if o else -1)
            color.append(list(COLORS).index(o.color) if o else -1)
            size.append(list(SIZES).index(o.size) if o else -1)
            geom.append((o.x, o.y, o.diameter) if o else (np.nan, np.nan, np.nan))
        g_rows.append(np.concatenate([vision.global_features(canon), probs]))
        g_bg.append(list(BACKGROUNDS).index(scene.background))
    return {
        "X": np.array(rows, dtype=np.float32),
        "valid": np.array(valid),
        "shape": np.array(shape),
        "color": np.array(color),
        "size": np.array(size),
        "geom": np.array(geom, dtype=np.float32),
        "G": np.array(g_rows, dtype=np.float32),
        "background": np.array(g_bg),
    }


def fit_heads(table: dict[str, np.ndarray], cfg: OracleFitConfig) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def clf(X, y):
        return HistGradientBoostingClassifier(max_iter=cfg.head_iterations, random_state=0).fit(X, y)

    def reg(X, y):
        return HistGradientBoostingRegressor(max_iter=cfg.head_iterations, random_state=0).fit(X, y)

    X, ok = table["X"], table["valid"]
    return {
        "valid": clf(X, ok.astype(int)),
        "shape": clf(X[ok], table["shape"][ok]),
        "color": clf(X[ok], table["color"][ok]),
        "size": clf(X[ok], table["size"][ok]),
        "x": reg(X[ok], table["geom"][ok, 0]),
        "y": reg(X[ok], table["geom"][ok, 1]),
        "diameter": reg(X[ok], table["geom"][ok, 2]),
        "background": clf(table["G"], table["background"]),
    }


def fit_oracle(out: Path, cfg: OracleFitConfig | None = None, progress: bool = True) -> dict:
    import joblib
    import sklearn
    from safetensors.torch import save_file

    cfg = cfg or OracleFitConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    images, scenes = render_scenes(cfg.n_style_images + cfg.n_head_images, cfg.seed, cfg.candidates_per_prompt)
    if progress:
        print(f"rendered {len(images)} training images in {time.time() - t0:.0f} s", flush=True)
    net = fit_style(images[: cfg.n_style_images], scenes[: cfg.n_style_images], cfg, progress)
    # The heads learn from the style CNN's predictions on images it did not train on.
    head_images, head_scenes = images[-cfg.n_head_images :], scenes[-cfg.n_head_images :]
    probs = predict(net, head_images)
    t1 = time.time()
    table = head_table(head_images, head_scenes, probs)
    heads = fit_heads(table, cfg)
    if progress:
        print(f"fitted heads on {len(table['X'])} components in {time.time() - t1:.0f} s", flush=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out / "style_cnn.safetensors")
    joblib.dump(heads, out / "heads.joblib", compress=3)
    meta = {
        "format": "rewarddance-oracle/1",
        "config": {k: v for k, v in cfg.__dict__.items()},
        "style_width": cfg.style_width,
        "n_components": len(table["X"]),
        "valid_fraction": float(table["valid"].mean()),
        "sklearn": sklearn.__version__,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "oracle.json").write_text(json.dumps(meta, indent=2))
    return meta
