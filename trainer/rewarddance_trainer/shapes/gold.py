"""Gold scores in [0, 1] for a rendered scene against the prompt's spec (the simulator's ground truth).

- fidelity: fraction of the attributes the prompt names that the image satisfies; extra objects count as
  unsatisfied attributes, so an extra object lowers fidelity.
- style: weight of the requested style in the image; with no requested style, style coherence
  ``2 * |w - 0.5|`` of the blend (a pure style scores 1, an even mix of two styles 0).
- composition: placement quality from geometry, a product of: objects inside the frame, margins, no overlap,
  the visual centre of mass near a rule-of-thirds power point (or the centre), and a comfortable filled area.
- novelty: mean surprisal of each object's colour given its shape, and of the background, under the fixed
  domain prior, scaled to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .world import BACKGROUNDS, COLORS, SHAPES, Scene, SceneObject, SceneSpec, domain_prior, position_of

DEFAULT_WEIGHTS = (0.40, 0.25, 0.25, 0.10)
POWER_POINTS = ((0.5, 0.5), (1 / 3, 1 / 3), (2 / 3, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 2 / 3))


@dataclass(frozen=True)
class Gold:
    fidelity: float
    style: float
    composition: float
    novelty: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.fidelity, self.style, self.composition, self.novelty

    def utility(self, weights: tuple[float, ...] = DEFAULT_WEIGHTS) -> float:
        return float(np.dot(self.as_tuple(), weights) / np.sum(weights))


def fidelity(spec: SceneSpec, scene: Scene) -> float:
    by_source = {o.source: o for o in scene.objects if o.source is not None}
    satisfied = 0
    for i, want in enumerate(spec.objects):
        got = by_source.get(i)
        if got is None:
            continue  # a missing object satisfies none of its attributes
        satisfied += got.shape == want.shape
        satisfied += want.color is not None and got.color == want.color
        satisfied += want.size is not None and got.size == want.size
        satisfied += want.position is not None and position_of(got.x, got.y) == want.position
    satisfied += spec.background is not None and scene.background == spec.background
    extra = sum(o.source is None for o in scene.objects)
    return satisfied / (spec.n_attributes + extra)


def style(spec: SceneSpec, scene: Scene) -> float:
    w = scene.style_weight if scene.style_mix is not None else 1.0
    if spec.style is None:
        return abs(2 * w - 1)
    if scene.style == spec.style:
        return w
    if scene.style_mix == spec.style:
        return 1 - w
    return 0.0


def _extent(obj: SceneObject) -> tuple[float, float, float, float]:
    r = obj.diameter / 2
    return obj.x - r, obj.y - r, obj.x + r, obj.y + r


def _inside_fraction(obj: SceneObject) -> float:
    x0, y0, x1, y1 = _extent(obj)
    w = max(0.0, min(x1, 1) - max(x0, 0))
    h = max(0.0, min(y1, 1) - max(y0, 0))
    return (w * h) / ((x1 - x0) * (y1 - y0))


def _margin(obj: SceneObject) -> float:
    x0, y0, x1, y1 = _extent(obj)
    return float(np.clip(min(x0, y0, 1 - x1, 1 - y1) / 0.05, 0, 1))


def _overlap(a: SceneObject, b: SceneObject) -> float:
    ra, rb = a.diameter / 2, b.diameter / 2
    d = math.hypot(a.x - b.x, a.y - b.y)
    return float(np.clip((ra + rb - d) / (2 * min(ra, rb)), 0, 1))


def composition(scene: Scene) -> float:
    objs = scene.objects
    if not objs:
        return 0.0
    in_frame = float(np.mean([_inside_fraction(o) for o in objs]))
    margin = float(np.mean([_margin(o) for o in objs]))
    overlaps = [_overlap(a, b) for i, a in enumerate(objs) for b in objs[i + 1 :]]
    no_overlap = 1 - max(overlaps, default=0.0)
    areas = np.array([o.diameter**2 for o in objs])
    cx = float(np.dot(areas, [o.x for o in objs]) / areas.sum())
    cy = float(np.dot(areas, [o.y for o in objs]) / areas.sum())
    d = min(math.hypot(cx - px, cy - py) for px, py in POWER_POINTS)
    balance = 1 - float(np.clip(d / 0.2, 0, 1))
    filled = float(areas.sum() * 0.6)  # ~fraction of the canvas covered by the shapes
    fill = float(np.clip(filled / 0.04, 0, 1) * np.clip((0.45 - filled) / 0.2, 0, 1))
    # A product: one serious flaw (a cut-off or overlapping object) spoils the whole picture.
    return in_frame**2 * (0.5 + 0.5 * margin) * no_overlap * (0.35 + 0.65 * balance) * (0.6 + 0.4 * fill)


def novelty(scene: Scene) -> float:
    prior = domain_prior()
    lo, hi = prior.surprisal_range()
    colors, backgrounds = list(COLORS), list(BACKGROUNDS)
    obj_terms = [
        (-math.log(prior.color_given_shape[SHAPES.index(o.shape), colors.index(o.color)]) - lo) / (hi - lo)
        for o in scene.objects
    ]
    bg_s = -np.log(prior.background)
    bg_term = (bg_s[backgrounds.index(scene.background)] - bg_s.min()) / (bg_s.max() - bg_s.min())
    objects = float(np.mean(obj_terms)) if obj_terms else 0.0
    return float(np.clip(0.8 * objects + 0.2 * bg_term, 0, 1))


def score(spec: SceneSpec, scene: Scene) -> Gold:
    return Gold(fidelity(spec, scene), style(spec, scene), composition(scene), novelty(scene))
