"""Turns what a caller holds (PIL image, numpy array, file path, bytes, open file) into encoded image bytes.

Neither Pillow nor numpy is a dependency: a PIL image or an array can only exist if its library is already
imported, so the checks look in ``sys.modules`` and never import them. Arrays are encoded with Pillow, which is
therefore needed for them.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias

# bytes / bytearray / memoryview of an encoded PNG, JPEG or WebP; a path to such a file; an open binary file;
# a PIL.Image.Image; a numpy uint8 array of shape (H, W, 3).
ImageInput: TypeAlias = "bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO | Any"


def _is_pil_image(obj: object) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def _is_ndarray(obj: object) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _array_png(array: Any, field: str) -> bytes:
    if array.dtype.name != "uint8" or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{field}: a numpy image must be uint8 of shape (H, W, 3); got {array.dtype} {array.shape}")
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            f"{field}: encoding a numpy array to PNG needs Pillow, which is not installed "
            "(pip install pillow), or pass the encoded PNG/JPEG/WebP bytes or a file path instead"
        ) from None
    return _png(Image.fromarray(array))


def encode_image(image: ImageInput, field: str) -> bytes:
    """Encoded bytes of one image; ``field`` names the argument in error messages (e.g. ``"images[2]"``).

    Bytes and files are sent as they are (the server checks the format); PIL images and arrays become PNG.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{field}: no image file at {str(path)!r}")
        data = path.read_bytes()
    elif _is_pil_image(image):
        data = _png(image)
    elif _is_ndarray(image):
        data = _array_png(image, field)
    elif hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise TypeError(f"{field}: the file object must be opened in binary mode ('rb')")
    else:
        raise TypeError(
            f"{field}: expected image bytes, a file path, a binary file, a PIL image or a numpy uint8 (H, W, 3) "
            f"array; got {type(image).__name__}"
        )
    if not data:
        raise ValueError(f"{field}: the image is empty (0 bytes)")
    return data


def encode_images(images: Sequence[ImageInput], field: str = "images") -> list[bytes]:
    """Encoded bytes of every image of a list; a single image is refused rather than guessed at."""
    if isinstance(images, bytes | bytearray | memoryview | str | os.PathLike) or _is_pil_image(images):
        raise TypeError(f"{field}: expected a list of images; wrap a single image in a list")
    if _is_ndarray(images):
        raise TypeError(f"{field}: expected a list of images; pass a list of (H, W, 3) arrays, not one array")
    if not isinstance(images, Sequence):
        raise TypeError(f"{field}: expected a list of images; got {type(images).__name__}")
    if not images:
        raise ValueError(f"{field}: at least one image is needed")
    return [encode_image(image, f"{field}[{i}]") for i, image in enumerate(images)]
