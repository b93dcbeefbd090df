"""The gold oracle: estimates fidelity, style, composition and novelty of a shapes-world image from its pixels.

Pipeline per image: style blend weights from the style CNN; colour segmentation into components
(``vision.py``); per component the learned heads over classical features decide whether it is an object and
give its shape, colour, size class, centre and diameter; a background head reads the border. The estimates then
follow the simulator's definitions (``shapes/gold.py``) applied to the detected scene:

- fidelity: the best one-to-one assignment of detected objects to the prompt's objects (Hungarian, maximising
  satisfied attributes); satisfied attributes / (named attributes + unassigned detections);
- style: detected weight of the requested style, or blend coherence ``|2 w_top - 1|`` when none is requested;
- composition: ``gold.composition`` of the detected geometry;
- novelty: ``gold.novelty`` of the detected colours, shapes and background.

It never uses the reward model, its encoders or any dataset's gold labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..shapes import gold
from ..shapes.world import BACKGROUNDS, COLORS, SHAPES, SIZES, STYLES, Scene, SceneObject, SceneSpec, position_of
from . import vision
from .style import StyleNet, predict

DEFAULT_DIR = Path(__file__).resolve().parent / "model"
VALID_THRESHOLD = 0.5


@dataclass(frozen=True)
class Detection:
    shape: str
    color: str
    size: str
    x: float
    y: float
    diameter: float
    confidence: float

    @property
    def position(self) -> str:
        return position_of(self.x, self.y)

    def as_scene_object(self) -> SceneObject:
        return SceneObject(
            shape=self.shape,
            color=self.color,
            size=self.size,
            x=self.x,
            y=self.y,
            scale=self.diameter / SIZES[self.size],
        )


@dataclass(frozen=True)
class Reading:
    """What the oracle sees in one image."""

    objects: tuple[Detection, ...]
    background: str
    style_weights: dict[str, float]

    def scene(self) -> Scene:
        top = max(self.style_weights, key=self.style_weights.get)
        return Scene(objects=tuple(d.as_scene_object() for d in self.objects), background=self.background, style=top)

    def to_dict(self) -> dict:
        return {
            "objects": [d.__dict__ | {"position": d.position} for d in self.objects],
            "background": self.background,
            "style_weights": self.style_weights,
        }


def _match_value(want, det: Detection) -> int:
    return (
        int(det.shape == want.shape)
        + int(want.color is not None and det.color == want.color)
        + int(want.size is not None and det.size == want.size)
        + int(want.position is not None and det.position == want.position)
    )


def fidelity(spec: SceneSpec, reading: Reading) -> float:
    from scipy.optimize import linear_sum_assignment

    dets = reading.objects
    satisfied = int(spec.background is not None and reading.background == spec.background)
    extra = len(dets)
    if dets and spec.objects:
        value = np.array([[_match_value(w, d) for d in dets] for w in spec.objects])
        rows, cols = linear_sum_assignment(-value)
        satisfied += int(value[rows, cols].sum())
        extra = len(dets) - len(cols)
    return satisfied / (spec.n_attributes + extra)


def style_score(spec: SceneSpec, reading: Reading) -> float:
    w = reading.style_weights
    if spec.style is not None:
        return float(np.clip(w[spec.style], 0, 1))
    return float(np.clip(2 * max(w.values()) - 1, 0, 1))


def composition(reading: Reading) -> float:
    return float(gold.composition(reading.scene()))


def novelty(reading: Reading) -> float:
    return float(gold.novelty(reading.scene()))


class Oracle:
    def __init__(self, style_net: StyleNet, heads: dict, meta: dict | None = None):
        self.style_net = style_net.eval()
        self.heads = heads
        self.meta = meta or {}

    @classmethod
    def load(cls, directory: Path | str | None = None) -> Oracle:
        import joblib
        from safetensors.torch import load_file

        directory = Path(directory) if directory else DEFAULT_DIR
        if not (directory / "oracle.json").exists():
            raise FileNotFoundError(
                f"no fitted oracle in {directory} (run `rewarddance eval oracle --fit {directory}`)"
            )
        meta = json.loads((directory / "oracle.json").read_text())
        net = StyleNet(int(meta["style_width"]))
        net.load_state_dict(load_file(directory / "style_cnn.safetensors"))
        return cls(net, joblib.load(directory / "heads.joblib"), meta)

    def read(self, images) -> list[Reading]:
        canon = [vision.canonical(np.asarray(im)) for im in images]
        probs = predict(self.style_net, [c.astype(np.uint8) for c in canon])
        rows, owners, comps_all = [], [], []
        g_rows = []
        for i, (c, p) in enumerate(zip(canon, probs, strict=True)):
            comps = vision.components(c)
            comps_all.append(comps)
            for comp in comps:
                rows.append(np.concatenate([comp.features, p]))
                owners.append(i)
            g_rows.append(np.concatenate([vision.global_features(c), p]))
        bg = self.heads["background"].predict(np.array(g_rows, dtype=np.float32))
        dets: list[list[Detection]] = [[] for _ in canon]
        if rows:
            X = np.array(rows, dtype=np.float32)
            ok = self.heads["valid"].predict_proba(X)[:, 1]
            shape = self.heads["shape"].predict(X)
            color = self.heads["color"].predict(X)
            size = self.heads["size"].predict(X)
            x, y = self.heads["x"].predict(X), self.heads["y"].predict(X)
            d = self.heads["diameter"].predict(X)
            for k, i in enumerate(owners):
                if ok[k] < VALID_THRESHOLD:
                    continue
                dets[i].append(
                    Detection(
                        shape=SHAPES[int(shape[k])],
                        color=list(COLORS)[int(color[k])],
                        size=list(SIZES)[int(size[k])],
                        x=float(x[k]),
                        y=float(y[k]),
                        diameter=float(max(d[k], 0.05)),
                        confidence=float(ok[k]),
                    )
                )
        return [
            Reading(
                objects=tuple(dets[i]),
                background=list(BACKGROUNDS)[int(bg[i])],
                style_weights={s: float(w) for s, w in zip(STYLES, probs[i], strict=True)},
            )
            for i in range(len(canon))
        ]

    def score(self, images, specs: list[SceneSpec]) -> np.ndarray:
        """(n, 4) estimates of fidelity, style, composition, novelty for images against their prompts' specs."""
        readings = self.read(images)
        return np.array(
            [
                [fidelity(s, r), style_score(s, r), composition(r), novelty(r)]
                for s, r in zip(specs, readings, strict=True)
            ]
        )
