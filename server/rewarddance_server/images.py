"""Request images: base64 / raw bytes -> (n, s, s, 3) uint8, with limits checked before any pixel is decoded.

Order of checks per image: encoded size, then ``PIL.Image.open`` (lazy: reads only the header) for the format
(PNG, JPEG, WebP, else 415) and the pixel count (over the limit -> 413: decompression bombs never get decoded),
then the full decode (truncated or corrupt -> 400), then ``rewarddance.preprocess`` (RGB, resize, centre crop)
exactly as in training.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from rewarddance.preprocess import resize_crop

from .errors import GatewayError, bad_request

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
ImageFile.LOAD_TRUNCATED_IMAGES = False
_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)


def decode_base64(text: object, field: str) -> bytes:
    """Standard base64 (whitespace and a ``data:image/...;base64,`` prefix allowed) -> bytes, or 400."""
    if not isinstance(text, str):
        raise GatewayError(422, "invalid_type", f"{field} must be a base64 string, got {type(text).__name__}", field)
    match = _DATA_URL.match(text)
    if match:
        text = text[match.end() :]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request("invalid_base64", f"{field} is not valid base64: {exc}", field) from None
    if not data:
        raise bad_request("invalid_image", f"{field} is empty", field)
    return data


def open_checked(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """The lazily opened image after the format and pixel-count checks (nothing decoded yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise GatewayError(413, "image_too_large", f"{field} has too many pixels", field) from None
    except UnidentifiedImageError:
        raise bad_request(
            "invalid_image", f"{field} is not a recognisable image (corrupt or not an image)", field
        ) from None
    except Exception as exc:  # PIL raises many types on malformed headers
        raise bad_request("invalid_image", f"{field} could not be read: {exc}", field) from None
    if image.format not in ALLOWED_FORMATS:
        raise GatewayError(415, "unsupported_media_type", f"{field} is {image.format}; allowed: PNG, JPEG, WebP", field)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise bad_request("invalid_image", f"{field} has an empty size {width}x{height}", field)
    if width * height > max_pixels:
        raise GatewayError(
            413,
            "image_too_large",
            f"{field} is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            field,
        )
    return image


def decode_image(data: bytes, field: str, size: int, max_pixels: int) -> np.ndarray:
    """(size, size, 3) uint8 from encoded bytes, or a GatewayError naming ``field``."""
    image = open_checked(data, field, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            rgb = image.convert("RGB")
        return resize_crop(rgb, size)
    except GatewayError:
        raise
    except Exception as exc:  # truncated data, bad CRC, broken JPEG markers, ...
        raise bad_request("invalid_image", f"{field} is corrupt or truncated: {exc}", field) from None
    finally:
        image.close()


def decode_images(images: list[bytes], fields: list[str], size: int, max_pixels: int) -> np.ndarray:
    """Checks every header first (cheap), then decodes: a bad last image fails before any pixel work."""
    for data, field in zip(images, fields, strict=True):
        open_checked(data, field, max_pixels).close()
    return np.stack([decode_image(d, f, size, max_pixels) for d, f in zip(images, fields, strict=True)])
