"""Composition score C from pixels alone: placement, framing, balance, fill and clutter.

No embeddings and no scene graph: the background is estimated from the image's outer ring (a robust
colour plane, so photo-style light ramps and painterly paper textures count as background), every pixel's
colour distance from it gives a saliency map, and the salient regions (connected components) are the
"objects". ``composition_features`` turns that into a few interpretable numbers per image; ``rule_score``
combines them with fixed, documented constants (no fitting) into [0, 1]; ``CompositionScorer`` can also fit
a ridge probe from the features to human composition ratings and falls back to the rule when unfitted.

numpy + scipy only, batched over images: the gateway runs it next to an exported feature (v1) reward model.
scipy is imported on first use, so a gateway serving only pixel (v2) models never loads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import FeatureBatch, load_arrays, save_arrays

FEATURE_NAMES: tuple[str, ...] = (
    "area",  # salient fraction of the canvas (objects only, small blobs ignored)
    "center_dist",  # salient centroid to the image centre, fraction of the side
    "thirds_dist",  # salient centroid to the nearest rule-of-thirds power point
    "balance_lr",  # |left - right| / total salient area
    "balance_tb",  # |top - bottom| / total salient area
    "border_mass",  # share of salient area in objects that touch the frame (cut off)
    "border_contact",  # fraction of the 1-pixel frame that is salient
    "min_margin",  # smallest gap between an object's box and the frame, fraction of the side
    "margin_term",  # mean over objects of clip(margin / 0.05, 0, 1)
    "n_objects",  # salient components above the minimum size
    "largest_share",  # largest object's share of the salient area
    "color_spread",  # hue disagreement (circular variance) inside the largest object: fused objects
    "overlap",  # largest hue-interface ratio of a multi-hued object: how far fused objects lie on each other
    "solidity",  # largest object's area / its bounding-box area
    "clutter",  # share of salient pixels in blobs too small to be objects (texture, debris)
    "texture",  # the saliency threshold, i.e. how textured the background ring is
)

RING_FRACTION = 1 / 32  # background ring width, fraction of the side (2 px at 64x64)
LUMA_WEIGHT = 0.5  # brightness differences count half: shading, paper grain and paint streaks are mostly luma
MIN_THRESHOLD = 20.0  # saliency floor in colour-distance units (0..~300): flat styles have no ring noise
NOISE_IQRS = 4.0  # threshold = ring median + 4 IQR of the ring's own distances (textured backgrounds)
MIN_OBJECT_FRACTION = 0.0025  # components under 0.25% of the canvas (~10 px at 64x64) are debris, not objects
SPREAD_MIN = 0.005  # hue circular variance of a single object stays below ~0.002, fused objects reach 0.01-0.5
INTERFACE_REACH = 1  # pixels either side of a hue boundary that count towards the interface band
SIDE_MIN = 0.15  # 3x3-mean hue vote (0..1) a pixel needs to join one of its component's two hue groups
MARGIN_SCALE = 0.05  # a gap of 5% of the side is a comfortable margin
CHUNK_PIXELS = 256 * 64 * 64  # pixels per vectorized pass (256 images at 64x64): bounds peak memory (~100 MB)
_THIRDS = np.array([(1 / 3, 1 / 3), (2 / 3, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 2 / 3)])

# Opponent colour basis (luma, red-green, yellow-blue), orthonormal, with luma down-weighted.
_OPPONENT = np.array(
    [
        [LUMA_WEIGHT / math.sqrt(3)] * 3,
        [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
        [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    ],
    dtype=np.float32,
)


@cache
def _ndimage():
    from scipy import ndimage

    return ndimage


@dataclass(frozen=True)
class _Geometry:
    """Per-size constants: the background ring, the 1-px frame and the plane design matrix."""

    ring: np.ndarray  # (h, w) bool
    frame: np.ndarray  # (h, w) bool
    design: np.ndarray  # (h*w, 3): 1, x - 0.5, y - 0.5
    xs: np.ndarray  # (w,) pixel centres as fractions of the width
    ys: np.ndarray  # (h,)


@cache
def _geometry(h: int, w: int) -> _Geometry:
    width = max(1, round(min(h, w) * RING_FRACTION))
    ring = np.ones((h, w), dtype=bool)
    ring[width:-width, width:-width] = False
    frame = np.ones((h, w), dtype=bool)
    frame[1:-1, 1:-1] = False
    xs = (np.arange(w) + 0.5) / w
    ys = (np.arange(h) + 0.5) / h
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    design = np.stack([np.ones(h * w), xx.ravel() - 0.5, yy.ravel() - 0.5], axis=1).astype(np.float32)
    return _Geometry(ring=ring, frame=frame, design=design, xs=xs, ys=ys)


def _distance(diff: np.ndarray) -> np.ndarray:
    """Colour distance with luma down-weighted; ``diff`` is (..., 3)."""
    return np.sqrt(np.square(diff @ _OPPONENT.T).sum(axis=-1))


def _background(img: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Fit per image a colour plane a + b*x + c*y to the outer ring, ignoring ring pixels that are objects.

    A plane rather than one colour because the photo style lights the canvas with a vertical ramp; the
    reweighting keeps an object cut off at the frame from dragging the background towards its colour.
    """
    n, h, w, _ = img.shape
    x_ring = geo.design[geo.ring.ravel()]  # (m, 3)
    values = img.reshape(n, h * w, 3)[:, geo.ring.ravel()]  # (n, m, 3)
    predicted = np.median(values, axis=1, keepdims=True)
    for _ in range(2):
        residual = _distance(values - predicted)
        limit = np.maximum(MIN_THRESHOLD / 2, 3 * np.median(residual, axis=1, keepdims=True))
        weight = (residual <= limit).astype(np.float32)
        normal = np.einsum("nm,mi,mj->nij", weight, x_ring, x_ring) + 1e-3 * np.eye(3, dtype=np.float32)
        rhs = np.einsum("nm,mi,nmc->nic", weight, x_ring, values)
        beta = np.linalg.solve(normal, rhs)  # (n, 3, 3): plane coefficients per colour channel
        predicted = x_ring @ beta
    return (geo.design @ beta).reshape(n, h, w, 3)


def _saliency(img: np.ndarray, geo: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed distance-from-background map, per-pixel hue offsets and the per-image threshold.

    The hue offset is the (red-green, yellow-blue) part of ``pixel - background``: its direction names the
    object's colour whatever it is blended with the background (anti-aliased rims, hatching, glazes).
    """
    opponent = (img - _background(img, geo)) @ _OPPONENT.T
    distance = np.sqrt(np.square(opponent).sum(axis=-1))
    # A 3x3 box joins hatched (sketch) and dithered interiors into solid regions before thresholding.
    smooth = _ndimage().uniform_filter(distance, size=(1, 3, 3), mode="nearest")
    ring = smooth[:, geo.ring]
    q25, q50, q75 = np.percentile(ring, [25, 50, 75], axis=1)
    threshold = np.maximum(MIN_THRESHOLD, q50 + NOISE_IQRS * (q75 - q25))
    return smooth, opponent[..., 1:], threshold.astype(np.float32)


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of every image in one pass; the structure never links different images."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = _ndimage().generate_binary_structure(2, 1)
    labels, count = _ndimage().label(mask, structure=structure)
    return labels, int(count)


def _hue_stats(hue: np.ndarray, threshold: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Per component: hue spread (circular variance) and the hue-interface ratio.

    Overlapping objects of different colours fuse into one component whose pixels disagree in hue direction;
    a single object's agree however it is shaded or blended with the background. Pixels are weighted by how
    clearly they differ in hue from the background, so cast shadows and paper texture do not vote.
    The interface ratio splits a component into the two hue groups either side of its mean hue and counts
    the pixels of the band where the groups meet per sqrt(pixel) of the smaller group: touching objects
    share a short border, an object lying on top of another a long one.
    """
    flat = labels.ravel()
    strength = np.hypot(hue[..., 0], hue[..., 1])
    weight = np.clip(strength / threshold[:, None, None] - 1, 0, 1)
    vote = hue * (weight / np.maximum(strength, 1e-6))[..., None]  # weighted unit hue directions
    sum_x = np.bincount(flat, weights=vote[..., 0].ravel(), minlength=k)
    sum_y = np.bincount(flat, weights=vote[..., 1].ravel(), minlength=k)
    total = np.bincount(flat, weights=weight.ravel(), minlength=k)
    spread = np.clip(1 - np.hypot(sum_x, sum_y) / np.maximum(total, 1e-6), 0, 1)

    # Side of the mean hue, from 3x3-averaged votes (joins hatched strokes); weakly coloured pixels (outlines,
    # paper between strokes) take no side.
    local = _ndimage().uniform_filter(vote, size=(1, 3, 3, 1), mode="nearest")
    norm = np.maximum(np.hypot(sum_x, sum_y), 1e-6)
    cross = (sum_x / norm)[labels] * local[..., 1] - (sum_y / norm)[labels] * local[..., 0]
    coloured = (labels > 0) & (np.hypot(local[..., 0], local[..., 1]) > SIDE_MIN)
    side = np.where(coloured, np.where(cross > 0, 1, -1), 0).astype(np.int8)
    counts = [np.bincount(flat, weights=(side == s).ravel(), minlength=k) for s in (-1, 1)]
    # The band where both hue groups lie within INTERFACE_REACH pixels: it bridges the dark outline a
    # sketch draws between two objects, which direct pixel adjacency would miss.
    size = (1, 2 * INTERFACE_REACH + 1, 2 * INTERFACE_REACH + 1)
    near = [_ndimage().maximum_filter(side == s, size=size, mode="constant") for s in (-1, 1)]
    edges = np.bincount(labels[near[0] & near[1] & (labels > 0)], minlength=k)
    interface = edges / np.sqrt(np.maximum(np.minimum(*counts), 1))
    return spread, interface


def _segment_max(values: np.ndarray, groups: np.ndarray, n: int, empty: float = 0.0) -> np.ndarray:
    out = np.full(n, empty)
    np.maximum.at(out, groups, values)
    return out


def _segment_argmax(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Index (into ``values``) of the largest value in each group, -1 for empty groups."""
    best = np.full(n, -1, dtype=np.int64)
    if len(values):
        order = np.lexsort((-values, groups))  # per group, largest first
        first = np.unique(groups[order], return_index=True)
        best[first[0]] = order[first[1]]
    return best


def _boxes(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(len(ids), 4) bounding boxes y0, y1, x0, x1 (exclusive ends) of the given labels."""
    slices = _ndimage().find_objects(labels)
    box = [(s[1].start, s[1].stop, s[2].start, s[2].stop) for s in (slices[i - 1] for i in ids)]
    return np.asarray(box, dtype=np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class _Objects:
    """Per-object arrays (salient components above the minimum size) of one chunk of images."""

    owner: np.ndarray  # image index of each object
    area: np.ndarray  # pixels
    touches: np.ndarray  # bool: touches the 1-px frame
    margin: np.ndarray  # smallest box-to-frame gap, fraction of the side
    box_area: np.ndarray  # pixels of the bounding box
    spread: np.ndarray  # hue circular variance
    overlap: np.ndarray  # hue-interface ratio, 0 unless clearly multi-hued


def _objects(mask: np.ndarray, hue: np.ndarray, threshold: np.ndarray, geo: _Geometry) -> tuple[_Objects, np.ndarray]:
    """The objects of each image and the mask of their pixels (debris blobs removed)."""
    n, h, w = mask.shape
    labels, count = _label(mask)
    k = count + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=k).astype(np.float64)
    # Labels run image by image, so each label's mean image index is its (only) image.
    image_of = np.bincount(flat, weights=np.repeat(np.arange(n), h * w), minlength=k)
    image_of = np.round(image_of / np.maximum(area, 1)).astype(np.int64)
    touches = np.bincount(labels[:, geo.frame].ravel(), minlength=k) > 0
    spread, interface = _hue_stats(hue, threshold, labels, k)
    is_object = area >= MIN_OBJECT_FRACTION * h * w
    is_object[0] = False  # label 0 is the background
    ids = np.flatnonzero(is_object)
    box = _boxes(labels, ids)
    # A single object's hue split is noise: only clearly multi-hued components report an overlap.
    fused = np.clip((spread[ids] - SPREAD_MIN) / SPREAD_MIN, 0, 1)
    objects = _Objects(
        owner=image_of[ids],
        area=area[ids],
        touches=touches[ids],
        margin=np.minimum.reduce([box[:, 0] / h, 1 - box[:, 1] / h, box[:, 2] / w, 1 - box[:, 3] / w]),
        box_area=(box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2]),
        spread=spread[ids],
        overlap=fused * interface[ids],
    )
    return objects, is_object[labels]


def _features_chunk(pixels: np.ndarray) -> np.ndarray:
    n, h, w, _ = pixels.shape
    geo = _geometry(h, w)
    smooth, hue, threshold = _saliency(pixels.astype(np.float32), geo)
    mask = smooth > threshold[:, None, None]
    obj, clean = _objects(mask, hue, threshold, geo)

    def per_image(values: np.ndarray) -> np.ndarray:
        return np.bincount(obj.owner, weights=values, minlength=n)

    n_objects = per_image(np.ones(len(obj.area)))
    has = n_objects > 0
    total = per_image(obj.area)
    safe_total = np.maximum(total, 1)
    largest = _segment_argmax(obj.area, obj.owner, n)
    pick = np.where(largest >= 0, largest, len(obj.area))  # images without objects pick a padded 0

    def of_largest(values: np.ndarray) -> np.ndarray:
        return np.append(values, 0.0)[pick]

    # Centroid and halves of the object pixels only (debris blobs dropped).
    cx = np.where(has, (clean.sum(axis=1) @ geo.xs) / safe_total, 0.5)
    cy = np.where(has, (clean.sum(axis=2) @ geo.ys) / safe_total, 0.5)
    left, right = clean[:, :, : w // 2].sum(axis=(1, 2)), clean[:, :, w - w // 2 :].sum(axis=(1, 2))
    top, bottom = clean[:, : h // 2].sum(axis=(1, 2)), clean[:, h - h // 2 :].sum(axis=(1, 2))
    mask_pixels = mask.sum(axis=(1, 2))
    features = {
        "area": total / (h * w),
        "center_dist": np.hypot(cx - 0.5, cy - 0.5),
        "thirds_dist": np.hypot(cx[:, None] - _THIRDS[:, 0], cy[:, None] - _THIRDS[:, 1]).min(axis=1),
        "balance_lr": np.abs(left - right) / safe_total,
        "balance_tb": np.abs(top - bottom) / safe_total,
        "border_mass": per_image(obj.area * obj.touches) / safe_total,
        "border_contact": clean[:, geo.frame].mean(axis=1),
        "min_margin": np.clip(-_segment_max(-obj.margin, obj.owner, n, empty=-0.5), 0, 0.5),
        "margin_term": per_image(np.clip(obj.margin / MARGIN_SCALE, 0, 1)) / np.maximum(n_objects, 1),
        "n_objects": n_objects,
        "largest_share": of_largest(obj.area) / safe_total,
        "color_spread": of_largest(obj.spread),
        "overlap": _segment_max(obj.overlap, obj.owner, n),
        "solidity": of_largest(obj.area / np.maximum(obj.box_area, 1)),
        "clutter": (mask_pixels - total) / np.maximum(mask_pixels, 1),
        "texture": threshold,
    }
    return np.stack([features[name] for name in FEATURE_NAMES], axis=1).astype(np.float32)


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must have shape (n, h, w, 3), got {pixels.shape}")
    if pixels.shape[1] < 8 or pixels.shape[2] < 8:
        raise ValueError(f"images must be at least 8x8, got {pixels.shape[1]}x{pixels.shape[2]}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 RGB, got {pixels.dtype}")
    return pixels


def composition_features(pixels: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) uint8 RGB -> (n, len(FEATURE_NAMES)) float32, columns in FEATURE_NAMES order."""
    pixels = _check_pixels(pixels)
    out = np.empty((len(pixels), len(FEATURE_NAMES)), dtype=np.float32)
    chunk = max(1, CHUNK_PIXELS // (pixels.shape[1] * pixels.shape[2]))
    for start in range(0, len(pixels), chunk):
        out[start : start + chunk] = _features_chunk(pixels[start : start + chunk])
    return out


def _column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_NAMES.index(name)].astype(np.float64)


def rule_terms(features: np.ndarray) -> np.ndarray:
    """The rule's five factors per image, each in [0, 1]: frame, margin, separation, balance, fill."""
    f = np.asarray(features, dtype=np.float64)
    # Objects cut by the frame: the share of salient area that touches it costs up to 60%.
    frame = 1 - 0.6 * np.clip(_column(f, "border_mass"), 0, 1)
    margin = 0.5 + 0.5 * np.clip(_column(f, "margin_term"), 0, 1)
    # Fused objects of different colours: the hue-interface ratio (median ~1.6 when they just touch, ~7 when
    # one lies on the other, read off shapes-world renders once) maps linearly to the overlapped fraction.
    fused = np.clip((_column(f, "color_spread") - SPREAD_MIN) / SPREAD_MIN, 0, 1)
    separation = 1 - fused * np.clip(0.12 * _column(f, "overlap"), 0, 1)
    # Mass centre near the centre or a thirds point; 0.2 of the side away counts as unbalanced.
    near = np.minimum(_column(f, "center_dist"), _column(f, "thirds_dist"))
    balance = 0.35 + 0.65 * (1 - np.clip(near / 0.2, 0, 1))
    # Comfortable fill: at least 4% of the canvas, falling off from 25% to nothing at 45%.
    area = _column(f, "area")
    fill = 0.6 + 0.4 * np.clip(area / 0.04, 0, 1) * np.clip((0.45 - area) / 0.2, 0, 1)
    return np.stack([frame, margin, separation, balance, fill], axis=1)


def rule_score(features: np.ndarray) -> np.ndarray:
    """Fixed placement score in [0, 1]: the product of ``rule_terms`` (one serious flaw spoils the picture),
    0 when nothing stands out from the background."""
    score = np.prod(rule_terms(features), axis=1)
    return np.where(_column(np.asarray(features), "n_objects") > 0, score, 0.0)


def _design(features: np.ndarray) -> np.ndarray:
    """Probe inputs: raw features, the rule's factors and the rule score itself."""
    features = np.asarray(features, dtype=np.float64)
    return np.concatenate([features, rule_terms(features), rule_score(features)[:, None]], axis=1)


@dataclass
class CompositionScorer:
    """C from pixels: the rule score, or a ridge probe on the features once ``fit`` has seen ratings.

    The probe standardizes its inputs and solves ridge regression in closed form; alpha is picked from
    ALPHAS on a deterministic 20% holdout, then the probe is refit on everything.
    """

    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: float = 0.0
    alpha: float = 0.0
    name: str = "composition"

    ALPHAS: ClassVar[tuple[float, ...]] = (0.1, 1.0, 10.0, 100.0)

    @property
    def fitted(self) -> bool:
        return self.coef is not None

    def fit(self, pixels: np.ndarray, targets: np.ndarray) -> CompositionScorer:
        """Fit on images and mean composition ratings mapped to [0, 1] ((mean - 1) / 4)."""
        return self.fit_features(composition_features(pixels), targets)

    def fit_features(self, features: np.ndarray, targets: np.ndarray) -> CompositionScorer:
        x = _design(features)
        y = np.asarray(targets, dtype=np.float64)
        if len(x) != len(y) or len(y) < 10:
            raise ValueError(f"need >= 10 images with one target each, got {len(x)} images, {len(y)} targets")
        if not np.all(np.isfinite(y)):
            raise ValueError("targets must be finite")
        self.mean = x.mean(axis=0)
        self.scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        z = (x - self.mean) / self.scale
        holdout = np.arange(len(y)) % 5 == 0  # deterministic and spread over the input order
        errors = []
        for alpha in self.ALPHAS:
            coef, intercept = _ridge(z[~holdout], y[~holdout], alpha)
            errors.append(np.mean((z[holdout] @ coef + intercept - y[holdout]) ** 2))
        self.alpha = float(self.ALPHAS[int(np.argmin(errors))])
        self.coef, self.intercept = _ridge(z, y, self.alpha)
        return self

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        if self.coef is None or self.mean is None or self.scale is None:
            return rule_score(features)
        z = (_design(features) - self.mean) / self.scale
        return np.clip(z @ self.coef + self.intercept, 0.0, 1.0)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        batch.need("pixels")
        assert batch.pixels is not None
        return self.predict_features(composition_features(batch.pixels))

    def save(self, directory: Path) -> None:
        arrays = {}
        if self.fitted:
            arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef}
        meta = {
            "name": self.name,
            "fitted": self.fitted,
            "intercept": self.intercept,
            "alpha": self.alpha,
            "feature_names": list(FEATURE_NAMES),
        }
        save_arrays(Path(directory), self.name, arrays, meta)

    @classmethod
    def load(cls, directory: Path) -> CompositionScorer:
        arrays, meta = load_arrays(Path(directory), "composition")
        if meta.get("feature_names") != list(FEATURE_NAMES):
            raise ValueError("saved composition probe was fitted on different features; refit it")
        if not meta["fitted"]:
            return cls()
        return cls(
            mean=arrays["mean"],
            scale=arrays["scale"],
            coef=arrays["coef"],
            intercept=float(meta["intercept"]),
            alpha=float(meta["alpha"]),
        )


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge on standardized inputs; the intercept is not penalized."""
    y_mean = float(y.mean())
    zc = z - z.mean(axis=0)
    coef = np.linalg.solve(zc.T @ zc + alpha * np.eye(z.shape[1]), zc.T @ (y - y_mean))
    return coef, y_mean - float(z.mean(axis=0) @ coef)
