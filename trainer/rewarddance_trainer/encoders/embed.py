"""The feature cache: every image and prompt of a dataset encoded once; the reward-model trainer reads only this.

Layout of ``DIR/features/<name>/`` (rows follow images.parquet / prompts.parquet order):
``image_pooled.npy`` (n, d) float32, ``image_tokens.npy`` (n, t, w) float16, ``pixel_features.npy`` (n, f)
float32 (composition features from the pixels), ``prompt_pooled.npy`` (p, d) float32, ``prompt_tokens.npy``
(p, l, w) float16, ``prompt_mask.npy`` (p, l) bool, ``image_ids.txt`` / ``prompt_ids.txt`` and ``meta.json``.
Arrays are memory-mapped and filled batch by batch; ``progress.json`` records how far each got, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm import tqdm

from rewarddance.components.composition import FEATURE_NAMES, composition_features
from rewarddance.preprocess import load_pixels

from ..data import schema
from .model import WEIGHTS_FILE, Encoder

PROGRESS = "progress.json"


@dataclass
class FeatureCache:
    """Read access to a finished cache."""

    root: Path

    @property
    def meta(self) -> dict:
        return json.loads((self.root / "meta.json").read_text())

    def array(self, name: str) -> np.ndarray:
        return np.load(self.root / f"{name}.npy", mmap_mode="r")

    def ids(self, kind: str) -> list[str]:
        return (self.root / f"{kind}_ids.txt").read_text().split()


def _open(path: Path, shape: tuple[int, ...], dtype, resume: bool) -> np.ndarray:
    if resume and path.exists():
        arr = np.load(path, mmap_mode="r+")
        if arr.shape == shape and arr.dtype == dtype:
            return arr
    return open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _progress(out: Path) -> dict:
    path = out / PROGRESS
    return json.loads(path.read_text()) if path.exists() else {"images": 0, "prompts": 0}


def _save_progress(out: Path, progress: dict) -> None:
    tmp = out / (PROGRESS + ".tmp")
    tmp.write_text(json.dumps(progress))
    tmp.replace(out / PROGRESS)


def embed_dataset(data: Path, encoder_run: Path, out: Path, batch: int = 256, progress_bar: bool = True) -> Path:
    encoder = Encoder.load(encoder_run)
    layout = schema.Layout(data)
    images = pd.read_parquet(layout.table("images"), columns=["image_id", "path"])
    prompts = pd.read_parquet(layout.table("prompts"), columns=["prompt_id", "text"])
    out.mkdir(parents=True, exist_ok=True)
    identity = {
        "encoder": str(encoder_run),
        "encoder_sha256": schema.sha256_file(encoder_run / WEIGHTS_FILE),
        "data_tables": json.loads(layout.card.read_text()).get("table_sha256"),
    }
    meta_path = out / "meta.json"
    resume = meta_path.exists() and json.loads(meta_path.read_text()).get("identity") == identity
    done = _progress(out) if resume else {"images": 0, "prompts": 0}

    probe_pooled, probe_tokens = encoder.encode_images(
        load_pixels([data / images.path.iloc[0]], encoder.image_spec.size)
    )
    text = encoder.encode_texts(prompts.text.iloc[:1].tolist())
    n, p = len(images), len(prompts)
    arrays = {
        "image_pooled": _open(out / "image_pooled.npy", (n, probe_pooled.shape[1]), np.float32, resume),
        "image_tokens": _open(out / "image_tokens.npy", (n, *probe_tokens.shape[1:]), np.float16, resume),
        "pixel_features": _open(out / "pixel_features.npy", (n, len(FEATURE_NAMES)), np.float32, resume),
        "prompt_pooled": _open(out / "prompt_pooled.npy", (p, text.pooled.shape[1]), np.float32, resume),
        "prompt_tokens": _open(out / "prompt_tokens.npy", (p, *text.tokens.shape[1:]), np.float16, resume),
        "prompt_mask": _open(out / "prompt_mask.npy", (p, text.mask.shape[1]), np.bool_, resume),
    }
    (out / "image_ids.txt").write_text("\n".join(images.image_id) + "\n")
    (out / "prompt_ids.txt").write_text("\n".join(prompts.prompt_id) + "\n")
    meta_path.write_text(json.dumps({"identity": identity, "complete": False}, indent=2))

    with tqdm(total=p, initial=done["prompts"], desc="prompts", unit="prompt", disable=not progress_bar) as bar:
        for start in range(done["prompts"], p, batch):
            stop = min(start + batch, p)
            feats = encoder.encode_texts(prompts.text.iloc[start:stop].tolist())
            arrays["prompt_pooled"][start:stop] = feats.pooled
            arrays["prompt_tokens"][start:stop] = feats.tokens
            arrays["prompt_mask"][start:stop] = feats.mask
            _checkpoint(out, arrays, done, "prompts", stop)
            bar.update(stop - start)
    with tqdm(total=n, initial=done["images"], desc="images", unit="img", disable=not progress_bar) as bar:
        for start in range(done["images"], n, batch):
            stop = min(start + batch, n)
            pixels = load_pixels([data / path for path in images.path.iloc[start:stop]], encoder.image_spec.size)
            pooled, tokens = encoder.encode_images(pixels)
            arrays["image_pooled"][start:stop] = pooled
            arrays["image_tokens"][start:stop] = tokens
            arrays["pixel_features"][start:stop] = composition_features(pixels)
            _checkpoint(out, arrays, done, "images", stop)
            bar.update(stop - start)
    meta = {
        "identity": identity,
        "complete": True,
        "model": encoder.name,
        "image_spec": {"size": encoder.image_spec.size, "mean": encoder.image_spec.mean, "std": encoder.image_spec.std},
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "pixel_feature_names": list(FEATURE_NAMES),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _checkpoint(out: Path, arrays: dict[str, np.ndarray], done: dict, key: str, value: int) -> None:
    for arr in arrays.values():
        arr.flush()
    done[key] = value
    _save_progress(out, done)
