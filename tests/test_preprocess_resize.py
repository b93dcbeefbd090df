"""Non-square images become square as the manifest says (``preprocess.resize``): ``crop`` cuts the long side to the
middle square, ``pad`` shrinks the long side to the model's size and extends the picture's own border on the short
side. The shared function, the gateway's decoder and the serving pipeline all follow the manifest."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rewarddance.preprocess import RESIZE_MODES, load_pixels, resized_size, square_pixels
from rewarddance.repository import MANIFEST, ModelRepository

SIZE = 32


def striped(width: int, height: int) -> Image.Image:
    """Grey, with a red band along the left edge and a blue one along the right (each a tenth of the width)."""
    pixels = np.full((height, width, 3), 128, np.uint8)
    band = max(1, width // 10)
    pixels[:, :band] = (255, 0, 0)
    pixels[:, -band:] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_crop_loses_the_sides_of_a_wide_image_and_pad_keeps_them():
    image = striped(96, 32)
    crop, pad = square_pixels(image, SIZE, "crop"), square_pixels(image, SIZE, "pad")
    assert crop.shape == pad.shape == (SIZE, SIZE, 3) and crop.dtype == pad.dtype == np.uint8
    red = lambda p: ((p[..., 0] > 200) & (p[..., 2] < 60)).sum()  # noqa: E731
    blue = lambda p: ((p[..., 2] > 200) & (p[..., 0] < 60)).sum()  # noqa: E731
    assert red(crop) == 0 and blue(crop) == 0  # the middle third of the picture only
    assert red(pad) > 0 and blue(pad) > 0
    # the picture is scaled to 32 x 11 and centred; above and below, its own edge rows are repeated
    top, bottom = (SIZE - 11) // 2, (SIZE - 11) // 2 + 11
    np.testing.assert_array_equal(pad[0], pad[top])
    np.testing.assert_array_equal(pad[-1], pad[bottom - 1])


def test_a_tall_image_pads_left_and_right():
    image = striped(20, 60)
    pad = square_pixels(image, SIZE, "pad")
    width = resized_size(20, 60, SIZE, "pad")[0]
    left = (SIZE - width) // 2
    assert resized_size(20, 60, SIZE, "pad") == (11, 32) and resized_size(20, 60, SIZE, "crop") == (32, 96)
    np.testing.assert_array_equal(pad[:, 0], pad[:, left])
    np.testing.assert_array_equal(pad[:, -1], pad[:, left + width - 1])


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_square_images_are_the_same_either_way(mode: str):
    image = striped(64, 64)
    np.testing.assert_array_equal(square_pixels(image, SIZE, mode), square_pixels(image, SIZE, "crop"))
    np.testing.assert_array_equal(square_pixels(striped(SIZE, SIZE), SIZE, mode), np.asarray(striped(SIZE, SIZE)))


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="resize must be one of crop, pad"):
        square_pixels(striped(40, 20), SIZE, "stretch")


def test_load_pixels_and_the_gateway_decoder_follow_the_mode():
    from rewarddance_server.images import ImageLimits, decode_image

    image = striped(90, 30)
    data = io.BytesIO()
    image.save(data, format="PNG")
    for mode in RESIZE_MODES:
        expected = square_pixels(image, SIZE, mode)
        np.testing.assert_array_equal(load_pixels([image], SIZE, mode)[0], expected)
        limits = ImageLimits(SIZE, 10_000_000, 10_000_000, resize=mode)
        np.testing.assert_array_equal(decode_image(data.getvalue(), "images[0]", limits), expected)


def test_the_serving_pipeline_reads_the_mode_from_the_manifest(tmp_path: Path):
    """The shipped default model's repository, built once by another test module, or exported here."""
    from rewarddance_exporter.bootstrap import DEFAULT_MODEL
    from rewarddance_exporter.export import ExportOptions
    from rewarddance_exporter.pixel_export import export_pixel_run

    from rewarddance.scoring.pipeline import RewardPipeline

    repo = tmp_path / "repo"
    manifest = export_pixel_run(DEFAULT_MODEL, repo, ExportOptions(resize="pad"), log=lambda _: None)
    assert manifest.image.resize == "pad"
    pipeline = RewardPipeline(repo, manifest.name)
    assert pipeline.resize == "pad"
    # the same version with crop written into its manifest by hand: the pipeline follows the file
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    path = copy / manifest.name / "1" / MANIFEST
    data = json.loads(path.read_text())
    data["preprocessing"]["resize"] = "crop"
    path.write_text(json.dumps(data))
    assert RewardPipeline(ModelRepository(copy), manifest.name).resize == "crop"
