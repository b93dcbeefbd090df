"""Scenes to pixels: seven visually distinct styles, drawn at 2x and box-downsampled (anti-aliasing).

Every random choice comes from the ``rng`` passed in, so a (scene, seed) pair always gives the same pixels.
A style drift is a pixel blend of the scene rendered in two styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .world import BACKGROUNDS, COLORS, Scene, SceneObject

SUPERSAMPLE = 2
Canvas = np.ndarray  # float32 (H, W, 3) in 0..255


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    """Vertices on the unit circumscribed circle (y grows downwards, so -90 degrees points up)."""

    def ring(n: int, start: float, radii: tuple[float, ...] = (1.0,)) -> list[tuple[float, float]]:
        pts = []
        for i in range(n):
            a = math.radians(start + 360.0 * i / n)
            r = radii[i % len(radii)]
            pts.append((r * math.cos(a), r * math.sin(a)))
        return pts

    if shape == "circle":
        return ring(40, 0)
    if shape == "square":
        return ring(4, 45)
    if shape == "triangle":
        return ring(3, -90)
    if shape == "star":
        return ring(10, -90, (1.0, 0.45))
    if shape == "hexagon":
        return ring(6, 0)
    if shape == "diamond":
        return [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)]
    raise ValueError(f"unknown shape {shape!r}")


def object_polygon(obj: SceneObject, side: int) -> list[tuple[float, float]]:
    radius = obj.diameter / 2 * side
    a = math.radians(obj.rotation)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = obj.x * side, obj.y * side
    return [(cx + radius * (u * cos - v * sin), cy + radius * (u * sin + v * cos)) for u, v in _unit_polygon(obj.shape)]


def object_mask(obj: SceneObject, side: int) -> np.ndarray:
    """Binary coverage mask (float32 0/1) of one object on a side x side canvas."""
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).polygon(object_polygon(obj, side), fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _rgb(name: str, table: dict[str, tuple[int, int, int]]) -> np.ndarray:
    return np.asarray(table[name], dtype=np.float32)


def _solid(side: int, color: np.ndarray) -> Canvas:
    return np.broadcast_to(color, (side, side, 3)).astype(np.float32)


def _paint(canvas: Canvas, mask: np.ndarray, color: np.ndarray | Canvas, alpha: float = 1.0) -> Canvas:
    m = (mask * alpha)[..., None]
    return canvas * (1 - m) + color * m


def _smooth_noise(rng: np.random.Generator, side: int, cells: int, amplitude: float) -> np.ndarray:
    coarse = rng.normal(size=(cells, cells)).astype(np.float32)
    return ndimage.zoom(coarse, side / cells, order=1)[:side, :side] * amplitude


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    inner = ndimage.binary_erosion(mask > 0.5, iterations=width)
    return ((mask > 0.5) & ~inner).astype(np.float32)


def _flat(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    canvas = _solid(side, _rgb(scene.background, BACKGROUNDS))
    for obj in scene.objects:
        canvas = _paint(canvas, object_mask(obj, side), _rgb(obj.color, COLORS))
    return canvas


def _photo(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    ramp = np.linspace(1.12, 0.82, side, dtype=np.float32)[:, None, None]
    canvas = np.clip(_solid(side, _rgb(scene.background, BACKGROUNDS)) * ramp, 0, 255)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    for obj in scene.objects:
        mask = object_mask(obj, side)
        shift = int(0.04 * side)
        shadow = ndimage.gaussian_filter(np.roll(mask, (shift, shift), axis=(0, 1)), side / 40)
        canvas = canvas * (1 - 0.45 * shadow[..., None])
        radius = obj.diameter / 2 * side
        hx, hy = (obj.x - 0.15 * obj.diameter) * side, (obj.y - 0.15 * obj.diameter) * side
        light = 1.3 - 0.55 * np.clip(np.hypot(xx - hx, yy - hy) / (1.3 * radius), 0, 1)
        canvas = _paint(canvas, mask, np.clip(_rgb(obj.color, COLORS) * light[..., None], 0, 255))
    return canvas + rng.normal(0, 3.0, size=canvas.shape).astype(np.float32)


def _watercolor(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    paper = 0.45 * _rgb(scene.background, BACKGROUNDS) + 0.55 * 250.0
    canvas = _solid(side, paper) + _smooth_noise(rng, side, 10, 6.0)[..., None]
    for obj in scene.objects:
        soft = ndimage.gaussian_filter(object_mask(obj, side), side / 60)
        wobbly = np.clip((soft + _smooth_noise(rng, side, 12, 0.08) - 0.5) * 3 + 0.5, 0, 1)
        rim = np.clip(wobbly * (1 - wobbly) * 4, 0, 1)
        pigment = 0.75 * _rgb(obj.color, COLORS) + 0.25 * 255.0
        bloom = 1 + _smooth_noise(rng, side, 8, 0.08)[..., None]  # uneven pigment density
        canvas = _paint(canvas, wobbly, pigment * bloom, alpha=0.85)
        canvas = _paint(canvas, rim, 0.7 * _rgb(obj.color, COLORS), alpha=0.6)
    return canvas


def _sketch(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    paper = 0.2 * _rgb(scene.background, BACKGROUNDS) + 0.8 * 246.0
    canvas = _solid(side, paper)
    yy, xx = np.mgrid[0:side, 0:side]
    hatch = (((xx + yy) % 6) < 2).astype(np.float32)
    graphite = np.array([55.0, 55.0, 60.0], dtype=np.float32)
    for obj in scene.objects:
        mask = object_mask(obj, side)
        canvas = _paint(canvas, mask * hatch, _rgb(obj.color, COLORS), alpha=0.9)
        for _ in range(2):  # two slightly offset strokes read as a hand-drawn outline
            dy, dx = rng.integers(-1, 2, size=2)
            canvas = _paint(canvas, np.roll(_edge(mask, 1), (int(dy), int(dx)), axis=(0, 1)), graphite, 0.8)
    return canvas


def _pixel_art(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    low = max(8, side // 4)
    small = _flat(scene, low, rng)
    small = np.round(small / 32.0) * 32.0  # a coarse palette, as in 8-bit art
    return np.kron(small, np.ones((side // low, side // low, 1), dtype=np.float32))[:side, :side]


def _neon(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    canvas = _solid(side, 0.12 * _rgb(scene.background, BACKGROUNDS) + 6.0)
    for obj in scene.objects:
        mask = object_mask(obj, side)
        tube = _edge(mask, max(2, side // 40))
        bright = 0.7 * _rgb(obj.color, COLORS) + 0.3 * 255.0
        glow = np.clip(ndimage.gaussian_filter(tube, side / 30) * 2.5, 0, 1)
        canvas = _paint(canvas, mask, _rgb(obj.color, COLORS), alpha=0.12)
        canvas = canvas + glow[..., None] * _rgb(obj.color, COLORS) * 0.8
        canvas = _paint(canvas, tube, bright)
    return canvas


def _oil(scene: Scene, side: int, rng: np.random.Generator) -> Canvas:
    flat = _flat(scene, side, rng)
    # Brush strokes: smoothly varying offsets smear edges, then streaks modulate the paint's brightness.
    shift = _smooth_noise(rng, side, 6, side / 40)
    rows = np.clip(np.arange(side)[:, None] + shift.astype(int), 0, side - 1)
    cols = np.clip(np.arange(side)[None, :] + shift.T.astype(int), 0, side - 1)
    smeared = flat[rows, cols]
    streaks = ndimage.uniform_filter1d(rng.normal(size=(side, side)).astype(np.float32), side // 6, axis=1)
    texture = 1 + 0.45 * streaks[..., None]
    mean = smeared.mean(axis=2, keepdims=True)
    saturated = mean + 1.3 * (smeared - mean)
    return saturated * texture


STYLE_RENDERERS: dict[str, Callable[[Scene, int, np.random.Generator], Canvas]] = {
    "flat": _flat,
    "watercolor": _watercolor,
    "sketch": _sketch,
    "pixel-art": _pixel_art,
    "neon": _neon,
    "oil": _oil,
    "photo": _photo,
}


def render(scene: Scene, size: int = 64, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Render a scene to a (size, size, 3) uint8 RGB array."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    side = size * SUPERSAMPLE
    canvas = STYLE_RENDERERS[scene.style](scene, side, rng)
    if scene.style_mix is not None and scene.style_weight < 1.0:
        other = STYLE_RENDERERS[scene.style_mix](scene, side, rng)
        canvas = scene.style_weight * canvas + (1 - scene.style_weight) * other
    canvas = np.clip(canvas, 0, 255).reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.round(canvas).astype(np.uint8)
