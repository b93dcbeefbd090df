"""Image preprocessing shared by training and serving (numpy + Pillow only, so the gateway can import it).

Decode -> RGB -> resize the shorter side to ``size`` (bicubic) -> centre crop -> uint8 pixels; then
``normalize`` scales to [0, 1] and applies the encoder's mean/std, giving float32 NCHW. The same function runs
in the trainer's feature cache and in the gateway, which is what makes their scores agree.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

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


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) ``resize_crop`` resizes to before cropping: the shorter side becomes ``size``."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: shorter side to ``size`` then a centre crop; a no-op at the right size."""
    w, h = image.size
    if (w, h) != (size, size):
        image = image.resize(resized_size(w, h, size), Image.BICUBIC)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def load_pixels(sources: list, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 from files, bytes, PIL images or arrays."""
    return (
        np.stack([resize_crop(to_rgb(s), size) for s in sources]) if sources else np.zeros((0, size, size, 3), np.uint8)
    )


def normalize(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 (n, h, w, 3) -> float32 (n, 3, h, w) with the encoder's mean and std."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
