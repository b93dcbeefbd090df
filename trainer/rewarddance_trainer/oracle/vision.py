"""Classical computer vision on shapes-world pixels: background estimate, colour segmentation, component features.

Everything works at a canonical 64x64 (other sizes are resampled). A pixel is foreground when its chroma (hue
and colourfulness, independent of brightness) differs from the background's; foreground pixels are labelled by
the nearest palette hue, and connected components per hue label are the candidate objects. Each component gets
a fixed-length feature vector (area, centroid, extent, solidity, a rotation-invariant radial signature spectrum,
Hu moments, colour statistics) that the oracle's small learned heads map to shape, colour and size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..shapes.world import COLORS

SIDE = 64
MIN_AREA = 10  # pixels at 64x64; the smallest faithful object covers ~38
CHROMA_THRESHOLD = 0.11
PALETTE_HUES = np.array([math.atan2(*_h) for _h in ()])  # placeholder, set below


def _hue_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue angle (radians), absolute chroma (max - min) / 255 and value max / 255 of float RGB in 0..255."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Opponent-colour coordinates give a smooth hue angle.
    a = r - 0.5 * (g + b)
    c = (math.sqrt(3) / 2) * (g - b)
    hue = np.arctan2(c, a)
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    return hue, (mx - mn) / 255.0, mx / 255.0


def _chroma_vec(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([r - 0.5 * (g + b), (math.sqrt(3) / 2) * (g - b)], axis=-1) / 255.0


PALETTE = np.array(list(COLORS.values()), dtype=np.float32)
PALETTE_HUES = _hue_chroma(PALETTE)[0]


def canonical(pixels: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) -> float32 (64, 64, 3)."""
    img = np.asarray(pixels)
    if img.shape[:2] != (SIDE, SIDE):
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).convert("RGB").resize((SIDE, SIDE), Image.BICUBIC))
    return img[..., :3].astype(np.float32)


def border(img: np.ndarray, width: int = 2) -> np.ndarray:
    return np.concatenate(
        [
            img[:width].reshape(-1, 3),
            img[-width:].reshape(-1, 3),
            img[:, :width].reshape(-1, 3),
            img[:, -width:].reshape(-1, 3),
        ]
    )


@dataclass
class Component:
    mask: np.ndarray  # bool (64, 64)
    hue_label: int
    features: np.ndarray


def foreground(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground mask, hue label per pixel) of a canonical image."""
    smooth = ndimage.gaussian_filter(img, sigma=(0.7, 0.7, 0))
    bg_chroma = np.median(_chroma_vec(border(smooth)), axis=0)
    dist = np.linalg.norm(_chroma_vec(smooth) - bg_chroma, axis=-1)
    fg = dist > CHROMA_THRESHOLD
    fg = ndimage.binary_opening(fg, iterations=1) | (dist > 2.5 * CHROMA_THRESHOLD)
    hue = _hue_chroma(smooth)[0]
    diff = np.abs(np.angle(np.exp(1j * (hue[..., None] - PALETTE_HUES))))
    label = diff.argmin(axis=-1)
    return fg, label


def _radial_spectrum(mask: np.ndarray, cy: float, cx: float, bins: int = 48) -> np.ndarray:
    edge = mask & ~ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(edge)
    if len(ys) < 3:
        return np.zeros(8)
    ang = np.arctan2(ys - cy, xs - cx)
    rad = np.hypot(ys - cy, xs - cx)
    idx = ((ang + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    prof = np.zeros(bins)
    np.maximum.at(prof, idx, rad)
    filled = prof > 0
    if filled.sum() < bins // 2:
        return np.zeros(8)
    prof = np.interp(np.arange(bins), np.nonzero(filled)[0], prof[filled], period=bins)
    prof = prof / (prof.max() + 1e-6)
    spec = np.abs(np.fft.rfft(prof - prof.mean())) / bins
    return spec[[1, 2, 3, 4, 5, 6, 8, 10]]


def _hu(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), ys - ys.mean()
    m00 = len(xs)

    def eta(p, q):
        return np.sum(x**p * y**q) / m00 ** (1 + (p + q) / 2)

    n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
    n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
    h1 = n20 + n02
    h2 = (n20 - n02) ** 2 + 4 * n11**2
    h3 = (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2
    h4 = (n30 + n12) ** 2 + (n21 + n03) ** 2
    hu = np.array([h1, h2, h3, h4])
    return -np.sign(hu) * np.log10(np.abs(hu) + 1e-12)


def _solidity(mask: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(mask)
    pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        return float(mask.sum() / ConvexHull(pts).volume)
    except (QhullError, ValueError):
        return 1.0


N_COMPONENT_FEATURES = 33


def component_features(img: np.ndarray, mask: np.ndarray, hue_label: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    area = float(len(xs))
    cy, cx = ys.mean(), xs.mean()
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    rmax = float(np.hypot(ys - cy, xs - cx).max()) + 0.5
    touches = [xs.min() == 0, ys.min() == 0, xs.max() == SIDE - 1, ys.max() == SIDE - 1]
    pix = img[mask]
    hue, chroma, value = _hue_chroma(pix)
    strong = chroma >= np.median(chroma)
    hz = np.exp(1j * hue[strong]).mean()
    mn = pix.min(axis=1) / np.maximum(pix.max(axis=1), 1)
    onehot = np.zeros(8)
    onehot[hue_label] = 1
    return np.concatenate(
        [
            [area / SIDE**2, math.sqrt(area) / SIDE, (cx + 0.5) / SIDE, (cy + 0.5) / SIDE, w / SIDE, h / SIDE],
            [w / h, area / (w * h), area / (math.pi * rmax**2), rmax / SIDE, _solidity(mask), float(any(touches))],
            _radial_spectrum(mask, cy, cx),
            _hu(mask),
            [
                np.cos(np.angle(hz)),
                np.sin(np.angle(hz)),
                np.abs(hz),
                np.median(chroma),
                np.median(value),
                np.median(mn),
            ],
            [hue_label],
        ]
    ).astype(np.float32)[:N_COMPONENT_FEATURES]


def components(img: np.ndarray) -> list[Component]:
    """Candidate objects of a canonical image: connected components of each hue label within the foreground."""
    fg, label = foreground(img)
    out = []
    for k in range(len(PALETTE)):
        layer = ndimage.binary_closing(fg & (label == k), iterations=1) & fg | (fg & (label == k))
        lab, n = ndimage.label(layer)
        for i in range(1, n + 1):
            m = ndimage.binary_fill_holes(lab == i)
            if m.sum() < MIN_AREA:
                continue
            out.append(Component(m, k, component_features(img, m, k)))
    return out


def global_features(img: np.ndarray) -> np.ndarray:
    """Whole-image statistics for the background head (border colour, brightness ramp, chroma)."""
    b = border(img)
    med = np.median(b, axis=0)
    top, bottom = img[:3].mean(), img[-3:].mean()
    _, chroma, value = _hue_chroma(img)
    return np.concatenate(
        [med / 255, [b.std() / 255, top / 255, bottom / 255, (top + 1) / (bottom + 1), chroma.mean(), value.mean()]]
    ).astype(np.float32)
