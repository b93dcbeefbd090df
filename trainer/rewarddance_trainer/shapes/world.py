"""Vocabulary, scene types and the fixed domain prior of the shapes world.

The prior is a constant of the world (not of a dataset seed) so that novelty means the same thing in every
dataset: it is drawn once from ``WORLD_SEED``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from functools import cache

import numpy as np

WORLD_SEED = 20240917

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 35),
    "green": (40, 165, 65),
    "cyan": (30, 190, 205),
    "blue": (35, 75, 215),
    "purple": (135, 55, 190),
    "pink": (245, 120, 190),
}
# Diameter of the object's circumscribed circle as a fraction of the canvas side.
SIZES: dict[str, float] = {"small": 0.17, "medium": 0.27, "large": 0.39}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (244, 244, 240),
    "gray": (140, 140, 140),
    "beige": (228, 212, 180),
    "sky": (170, 205, 236),
    "black": (28, 28, 32),
}
STYLES = ("flat", "watercolor", "sketch", "pixel-art", "neon", "oil", "photo")

# 3x3 placement grid. Anchors sit inside their cell, away from the border, so a well-placed large object fits.
AXIS_ANCHORS = (0.28, 0.5, 0.72)
AXIS_EDGES = (0.4, 0.6)  # cell boundaries: [0, .4) | [.4, .6] | (.6, 1]
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}

SHAPE_WORDS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star", "five-pointed star"),
    "hexagon": ("hexagon", "six-sided polygon"),
    "diamond": ("diamond", "rhombus"),
}
COLOR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden"),
    "green": ("green", "emerald"),
    "cyan": ("cyan", "turquoise", "teal"),
    "blue": ("blue", "azure", "cobalt"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "rose"),
}
SIZE_WORDS = {
    "small": ("small", "tiny", "little"),
    "medium": ("medium", "medium-sized", "mid-sized"),
    "large": ("large", "big", "huge"),
}
POSITION_WORDS = {
    "top left": ("near the top left", "in the upper left", "at the top-left corner"),
    "top": ("at the top", "near the top edge", "up top"),
    "top right": ("near the top right", "in the upper right", "at the top-right corner"),
    "left": ("on the left", "at the left side", "to the left"),
    "center": ("in the center", "in the middle", "at the centre"),
    "right": ("on the right", "at the right side", "to the right"),
    "bottom left": ("near the bottom left", "in the lower left", "at the bottom-left corner"),
    "bottom": ("at the bottom", "near the bottom edge", "down below"),
    "bottom right": ("near the bottom right", "in the lower right", "at the bottom-right corner"),
}
BACKGROUND_WORDS = {
    "white": ("white", "plain white"),
    "gray": ("gray", "grey"),
    "beige": ("beige", "cream"),
    "sky": ("sky blue", "light blue"),
    "black": ("black", "dark"),
}
STYLE_WORDS = {
    "flat": ("flat vector illustration", "flat design", "minimal flat graphic"),
    "watercolor": ("watercolor", "watercolour painting", "soft watercolor"),
    "sketch": ("pencil sketch", "line drawing", "hatched sketch"),
    "pixel-art": ("pixel art", "8-bit pixel art", "retro pixel graphic"),
    "neon": ("neon", "glowing neon sign", "neon glow"),
    "oil": ("oil painting", "impasto oil", "thick oil paint"),
    "photo": ("photo", "photorealistic render", "realistic photograph"),
}


@dataclass(frozen=True)
class ObjectSpec:
    """What a prompt asks of one object; None means the prompt leaves that attribute free."""

    shape: str
    color: str | None = None
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class SceneSpec:
    """What a prompt asks for: objects, optional background and optional style."""

    objects: tuple[ObjectSpec, ...]
    background: str | None = None
    style: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> SceneSpec:
        data = json.loads(text)
        objects = tuple(ObjectSpec(**o) for o in data["objects"])
        return SceneSpec(objects=objects, background=data["background"], style=data["style"])

    @property
    def n_attributes(self) -> int:
        """Attributes a faithful image must satisfy (the denominator of gold fidelity)."""
        per_object = sum(1 + sum(v is not None for v in (o.color, o.size, o.position)) for o in self.objects)
        return per_object + (self.background is not None)


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; ``source`` is the index of the spec object it renders, None for an extra object."""

    shape: str
    color: str
    size: str
    x: float  # centre, fraction of the canvas width
    y: float
    scale: float = 1.0  # multiplies SIZES[size]: small jitter keeps renders varied
    rotation: float = 0.0  # degrees
    source: int | None = None

    @property
    def diameter(self) -> float:
        return SIZES[self.size] * self.scale


@dataclass(frozen=True)
class Scene:
    """A fully specified image: what the renderer draws and the gold scorer judges."""

    objects: tuple[SceneObject, ...]
    background: str
    style: str
    style_mix: str | None = None  # a second style blended in (style drift)
    style_weight: float = 1.0  # weight of ``style``; 1 - weight goes to ``style_mix``
    perturbations: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Scene:
        data = json.loads(text)
        data["objects"] = tuple(SceneObject(**o) for o in data["objects"])
        data["perturbations"] = tuple(data["perturbations"])
        return Scene(**data)

    def with_objects(self, objects: list[SceneObject] | tuple[SceneObject, ...]) -> Scene:
        return replace(self, objects=tuple(objects))


def cell_of(x: float, y: float) -> tuple[int, int]:
    """The 3x3 grid cell containing a point."""

    def axis(v: float) -> int:
        return 0 if v < AXIS_EDGES[0] else (2 if v > AXIS_EDGES[1] else 1)

    return axis(x), axis(y)


def position_of(x: float, y: float) -> str:
    cell = cell_of(x, y)
    return next(name for name, c in POSITIONS.items() if c == cell)


def anchor(position: str) -> tuple[float, float]:
    col, row = POSITIONS[position]
    return AXIS_ANCHORS[col], AXIS_ANCHORS[row]


@dataclass(frozen=True)
class DomainPrior:
    """Probabilities of attributes in the training domain; novelty is surprisal under it."""

    shape: np.ndarray  # P(shape)
    color_given_shape: np.ndarray  # P(color | shape), rows = shapes
    background: np.ndarray  # P(background)
    style: np.ndarray  # P(style) for prompts that name none

    def surprisal_range(self) -> tuple[float, float]:
        s = -np.log(self.color_given_shape)
        return float(s.min()), float(s.max())


@cache
def domain_prior() -> DomainPrior:
    rng = np.random.default_rng(WORLD_SEED)
    n_colors = len(COLORS)
    # Dirichlet rows make some colour-shape pairs common and others rare; the uniform floor keeps every
    # combination possible so "rare" is measurable rather than impossible.
    color = 0.85 * rng.dirichlet(np.full(n_colors, 0.7), size=len(SHAPES)) + 0.15 / n_colors
    background = np.array([0.42, 0.2, 0.2, 0.13, 0.05])
    style = 0.8 * rng.dirichlet(np.full(len(STYLES), 2.0)) + 0.2 / len(STYLES)
    return DomainPrior(
        shape=np.full(len(SHAPES), 1 / len(SHAPES)),
        color_given_shape=color / color.sum(axis=1, keepdims=True),
        background=background / background.sum(),
        style=style / style.sum(),
    )
