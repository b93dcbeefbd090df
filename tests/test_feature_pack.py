"""scripts/feature_pack.py: a feature cache packed without its image tokens is rebuilt equal to the original."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "feature_pack.py"


@pytest.fixture(scope="module")
def feature_pack():
    spec = importlib.util.spec_from_file_location("feature_pack", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def packed(feature_pack, tiny: dict, tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "pack"
    feature_pack.pack(tiny["cache"], tiny_repository / "image_encoder" / "1" / "model.onnx", out, None)
    return out


def test_unpack_rebuilds_the_cache(feature_pack, packed: Path, tiny: dict, tmp_path: Path) -> None:
    original = tiny["cache"]
    assert (packed / "image_encoder.onnx").exists() and not (packed / "image_tokens.npy").exists()

    rebuilt = feature_pack.unpack(packed, tmp_path / "data", workers=1)

    assert rebuilt == tmp_path / "data" / "features" / original.name
    for name in ("prompt_mask", "prompt_pooled", "pixel_features"):
        np.testing.assert_array_equal(np.load(rebuilt / f"{name}.npy"), np.load(original / f"{name}.npy"))
    mask = np.load(original / "prompt_mask.npy")
    np.testing.assert_array_equal(
        np.load(rebuilt / "prompt_tokens.npy")[mask], np.load(original / "prompt_tokens.npy")[mask]
    )
    tokens_a, tokens_b = (np.load(d / "image_tokens.npy").astype(np.float32) for d in (original, rebuilt))
    assert tokens_a.shape == tokens_b.shape
    assert np.abs(tokens_a - tokens_b).max() < feature_pack.IMAGE_TOLERANCE
    np.testing.assert_allclose(np.load(rebuilt / "image_pooled.npy"), np.load(original / "image_pooled.npy"), atol=1e-4)
    assert (rebuilt / "image_ids.txt").read_text() == (original / "image_ids.txt").read_text()
    # the re-rendered dataset carries the original tables and card, so runs record the same data hashes
    card = json.loads((tmp_path / "data" / "card.json").read_text())
    assert card["table_sha256"] == json.loads((tiny["data"] / "card.json").read_text())["table_sha256"]
    assert json.loads((rebuilt / "meta.json").read_text())["rebuilt"]["max_abs_diff_first_rows"]["rows"] > 0


def test_unpack_refuses_a_dataset_that_renders_differently(feature_pack, packed: Path, tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(packed, pack)
    ratings = pd.read_parquet(pack / "tables" / "ratings.parquet")
    ratings.iloc[0, ratings.columns.get_loc("fidelity")] = 1 + ratings.iloc[0]["fidelity"] % 5
    ratings.to_parquet(pack / "tables" / "ratings.parquet")

    with pytest.raises(SystemExit, match="ratings table differs"):
        feature_pack.unpack(pack, tmp_path / "data", workers=1)
