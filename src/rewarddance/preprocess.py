"""Image preprocessing shared by training and serving (numpy + Pillow only, so the gateway can import it).

Decode -> RGB -> square ``size`` x ``size`` uint8 pixels (``square_pixels``: the manifest's ``preprocess.resize``
says how a non-square image gets there, ``crop`` or ``pad``); then
``normalize`` scales to [0, 1] and applies the encoder's mean/std, giving float32 NCHW. The same function runs
in the trainer's feature cache and in the gateway, which is what makes their scores agree.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rewarddance.repository.manifest import RESIZE_MODES  # the manifest's preprocess.resize names one

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageSpec:
    size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize: str = "shortest-side bicubic, centre crop"


def to_rgb(source: bytes | str | Path | Image.Image | np.ndarray) -> Image.Image:
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = Image.fromarray(source.astype(np.uint8))
    elif isinstance(source, bytes):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(source)
    return image.convert("RGB")


def resized_size(width: int, height: int, size: int, resize: str = "crop") -> tuple[int, int]:
    """The (width, height) ``square_pixels`` resizes to: ``crop`` makes the shorter side ``size`` (the longer is then
    cut), ``pad`` the longer one (the shorter is then padded)."""
    if resize == "crop":
        scale = size / min(width, height)
        return max(size, round(width * scale)), max(size, round(height * scale))
    scale = size / max(width, height)
    return min(size, max(1, round(width * scale))), min(size, max(1, round(height * scale)))


def square_pixels(image: Image.Image, size: int, resize: str = "crop") -> np.ndarray:
    """(size, size, 3) uint8; a no-op at the right size, the same either way for a square image.

    ``crop``: the shorter side to ``size`` (bicubic), then the middle square: a wide picture loses its sides.
    ``pad``: the longer side to ``size``, centred, the shorter side filled by repeating the picture's own edge pixels
    (a background continues; a constant colour would be a border the model never saw): nothing is lost, all of it
    is smaller."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    w, h = image.size
    if (w, h) != (size, size):
        image = image.resize(resized_size(w, h, size, resize), Image.BICUBIC)
        if resize == "crop":
            left, top = (image.width - size) // 2, (image.height - size) // 2
            image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.shape[:2] != (size, size):
        top, left = (size - pixels.shape[0]) // 2, (size - pixels.shape[1]) // 2
        pad = ((top, size - pixels.shape[0] - top), (left, size - pixels.shape[1] - left), (0, 0))
        pixels = np.pad(pixels, pad, mode="edge")
    return pixels


def load_pixels(sources: list, size: int, resize: str = "crop") -> np.ndarray:
    """(n, size, size, 3) uint8 from files, bytes, PIL images or arrays."""
    if not sources:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([square_pixels(to_rgb(s), size, resize) for s in sources])


def normalize(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 (n, h, w, 3) -> float32 (n, 3, h, w) with the encoder's mean and std."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
