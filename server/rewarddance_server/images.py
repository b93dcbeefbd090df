"""Request images: base64 / raw bytes -> (n, s, s, 3) uint8, with limits checked before any pixel is decoded.

Order of checks per image: encoded size, then ``PIL.Image.open`` (lazy: reads only the header) for the format
(PNG, JPEG, WebP, else 415), the pixel count (over ``max_pixels`` -> 413: decompression bombs never get decoded)
and the pixel count after the resize that precedes the centre crop (over ``max_resized_pixels`` -> 413: the
resize scales the shorter side up to the model's size, so a 1 x 100,000 image of a few KB would become
224 x 22,400,000 pixels), then the full decode (truncated or corrupt -> 400), then ``rewarddance.preprocess``
(RGB, resize, centre crop) exactly as in training. A request whose deadline passed stops between images.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from rewarddance.preprocess import resized_size, square_pixels

from .errors import GatewayError, bad_request

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
ImageFile.LOAD_TRUNCATED_IMAGES = False
_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)


def decode_base64(text: object, field: str) -> bytes:
    """Standard base64 (whitespace and a ``data:image/...;base64,`` prefix allowed) -> bytes, or 400."""
    if not isinstance(text, str):
        raise GatewayError(422, "invalid_type", f"{field} must be a base64 string, got {type(text).__name__}", field)
    match = _DATA_URL.match(text) if text[:5].lower() == "data:" else None
    if match:
        text = text[match.end() :]
    try:  # the common case in one C call: plain base64, no whitespace
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request("invalid_base64", f"{field} is not valid base64: {exc}", field) from None
    if not data:
        raise bad_request("invalid_image", f"{field} is empty", field)
    return data


@dataclass(frozen=True)
class ImageLimits:
    size: int  # the model's input size: a square of this side, by cropping or padding (``resize``)
    max_pixels: int  # decoded input
    max_resized_pixels: int  # after the resize, before the crop
    resize: str = "crop"  # the model manifest's preprocess.resize


class DecodeCancelled(Exception):
    """The request stopped waiting (its deadline passed): the images left are not decoded."""


def open_checked(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    """The lazily opened image after the format and both pixel-count checks (nothing decoded yet)."""
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
    if width * height > limits.max_pixels:
        raise GatewayError(
            413,
            "image_too_large",
            f"{field} is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
            field,
        )
    resized_w, resized_h = resized_size(width, height, limits.size, limits.resize)
    if resized_w * resized_h > limits.max_resized_pixels:
        raise GatewayError(
            413,
            "image_too_large",
            f"{field} is {width}x{height}: resizing its shorter side to {limits.size} makes {resized_w}x{resized_h} "
            f"= {resized_w * resized_h} pixels; the limit after resizing is {limits.max_resized_pixels} "
            f"(an aspect ratio up to about {limits.max_resized_pixels // limits.size**2}:1)",
            field,
        )
    return image


def decode_image(data: bytes, field: str, limits: ImageLimits) -> np.ndarray:
    """(size, size, 3) uint8 from encoded bytes, or a GatewayError naming ``field``."""
    image = open_checked(data, field, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            rgb = image.convert("RGB")
        return square_pixels(rgb, limits.size, limits.resize)
    except GatewayError:
        raise
    except Exception as exc:  # truncated data, bad CRC, broken JPEG markers, ...
        raise bad_request("invalid_image", f"{field} is corrupt or truncated: {exc}", field) from None
    finally:
        image.close()


def decode_images(
    images: list[bytes], fields: list[str], limits: ImageLimits, cancelled: threading.Event | None = None
) -> np.ndarray:
    """Checks every header first (cheap), then decodes: a bad last image fails before any pixel work.

    ``cancelled`` is looked at before each image: once the request has given up, no more pixels are decoded."""
    for data, field in zip(images, fields, strict=True):
        open_checked(data, field, limits).close()
    pixels = []
    for data, field in zip(images, fields, strict=True):
        if cancelled is not None and cancelled.is_set():
            raise DecodeCancelled(field)
        pixels.append(decode_image(data, field, limits))
    return np.stack(pixels)
