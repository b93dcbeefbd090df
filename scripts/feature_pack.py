"""Carry a shapes-world feature cache to another machine in a few tens of MB, and rebuild it there.

A full cache is mostly image tokens (16,000 x 64 x 192 float16 = 376 MB for shapes2k), too much to ship to a
lent GPU machine (64 MiB per call). The pack holds everything except the images and their tokens:
- the dataset card and tables: the seeded synth command re-renders the dataset, checked table by table against
  the packed ones (the images table holds each PNG's sha256, so equal tables mean equal pixels);
- the prompt features with only the real (unmasked) token states kept;
- the image encoder as the exported ONNX graph (uint8 pixels in), which recomputes image_pooled and image_tokens;
- the encoder run's fitted component scorers and its encoder.json;
- the first rows of the original image arrays, to check the rebuilt ones against.

    python scripts/feature_pack.py pack --features data/shapes2k/features/encoder-shapes2k \\
        --image-encoder runs/precision-repo/image_encoder/1/model.onnx --out .carry/shapes2k
    python scripts/feature_pack.py unpack --pack .carry/shapes2k --data data/shapes2k   # on the other machine

Unpacking writes DATA (synth), DATA/features/<name> (the standard cache layout) and the encoder run folder the
cache names (its components), so ``rewarddance train reward`` and ``benchmarks/scaling_study.py`` run unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CHECK_ROWS = 128
TABLES = ("prompts", "images", "ratings", "pairs")
IMAGE_TOLERANCE = 2e-2  # float16 tokens from onnxruntime vs torch (parity of the graph itself is ~6e-6)


def pack(features: Path, image_encoder: Path, out: Path, components: Path | None) -> None:
    meta = json.loads((features / "meta.json").read_text())
    if not meta.get("complete"):
        raise SystemExit(f"error: {features} is not a finished cache")
    encoder_run = Path(meta["identity"]["encoder"])
    components = components or encoder_run / "components"
    data = features.parent.parent
    out.mkdir(parents=True, exist_ok=True)
    mask = np.load(features / "prompt_mask.npy")
    tokens = np.load(features / "prompt_tokens.npy")
    np.savez(
        out / "prompts.npz",
        pooled=np.load(features / "prompt_pooled.npy"),
        mask=mask,
        valid_tokens=tokens[mask],  # (real tokens, width)
        padded_tokens=tokens[~mask][:1],  # one padded slot's states, written into every padded slot on unpack
    )
    np.savez(
        out / "check.npz",
        image_pooled=np.load(features / "image_pooled.npy", mmap_mode="r")[:CHECK_ROWS],
        image_tokens=np.load(features / "image_tokens.npy", mmap_mode="r")[:CHECK_ROWS],
    )
    shutil.copy(features / "pixel_features.npy", out / "pixel_features.npy")
    for name in ("meta.json", "image_ids.txt", "prompt_ids.txt"):
        shutil.copy(features / name, out / name)
    shutil.copy(data / "card.json", out / "card.json")
    (out / "tables").mkdir(exist_ok=True)
    for table in TABLES:
        shutil.copy(data / f"{table}.parquet", out / "tables" / f"{table}.parquet")
    shutil.copy(image_encoder, out / "image_encoder.onnx")
    shutil.copytree(components, out / "components", dirs_exist_ok=True)
    shutil.copy(encoder_run / "encoder.json", out / "encoder.json")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"pack: {out} ({size / 2**20:.1f} MiB) from {features}")


def _synth(card: dict, pack_dir: Path, data: Path, workers: int) -> None:
    cfg = card["config"]
    cmd = [sys.executable, "-m", "rewarddance.cli", "data", "synth", "--out", str(data), "--no-progress"]
    cmd += ["--prompts", str(cfg["n_prompts"]), "--images-per-prompt", str(cfg["images_per_prompt"])]
    cmd += ["--seed", str(cfg["seed"]), "--image-size", str(cfg["image_size"]), "--workers", str(workers)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    # Parquet bytes depend on the pyarrow version, so compare contents (the images table holds each PNG's sha256),
    # then put the packed files and card in place: the runs then record the original table hashes.
    import pandas as pd

    for table in TABLES:
        ours = pd.read_parquet(data / f"{table}.parquet")
        if not ours.equals(pd.read_parquet(pack_dir / "tables" / f"{table}.parquet")):
            raise SystemExit(f"error: the re-rendered {table} table differs from the packed one")
        shutil.copy(pack_dir / "tables" / f"{table}.parquet", data / f"{table}.parquet")
    shutil.copy(pack_dir / "card.json", data / "card.json")


def _encode_images(data: Path, onnx_path: Path, size: int, threads: int):
    import onnxruntime as ort
    import pandas as pd

    from rewarddance.preprocess import load_pixels

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    images = pd.read_parquet(data / "images.parquet", columns=["image_id", "path"])
    paths = [data / p for p in images.path]
    batch = 256
    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(max(1, threads // 2)) as pool:  # decode the next batches while the graph runs
        for start, pixels in zip(
            range(0, len(paths), batch), pool.map(lambda c: load_pixels(c, size), chunks), strict=True
        ):
            pooled, tokens = session.run(["embedding", "tokens"], {"pixels": pixels})
            yield start, images.image_id.iloc[start : start + len(pixels)].tolist(), pooled, tokens


def unpack(pack_dir: Path, data: Path, workers: int) -> Path:
    from numpy.lib.format import open_memmap

    started = time.perf_counter()
    card = json.loads((pack_dir / "card.json").read_text())
    meta = json.loads((pack_dir / "meta.json").read_text())
    if (
        not (data / "card.json").exists()
        or json.loads((data / "card.json").read_text()).get("table_sha256") != card["table_sha256"]
    ):
        _synth(card, pack_dir, data, workers)
    print(f"dataset ready in {time.perf_counter() - started:.1f} s (tables equal the packed ones)", flush=True)

    encoder_run = Path(meta["identity"]["encoder"])
    features = data / "features" / encoder_run.name
    features.mkdir(parents=True, exist_ok=True)
    for name in ("image_ids.txt", "prompt_ids.txt", "pixel_features.npy"):
        shutil.copy(pack_dir / name, features / name)
    prompts = np.load(pack_dir / "prompts.npz")
    mask = prompts["mask"]
    tokens = np.zeros((*mask.shape, prompts["valid_tokens"].shape[1]), np.float16)
    tokens[mask] = prompts["valid_tokens"]
    tokens[~mask] = prompts["padded_tokens"][0] if len(prompts["padded_tokens"]) else 0
    np.save(features / "prompt_tokens.npy", tokens)
    np.save(features / "prompt_mask.npy", mask)
    np.save(features / "prompt_pooled.npy", prompts["pooled"])

    shapes = meta["shapes"]
    pooled_out = open_memmap(features / "image_pooled.npy", "w+", np.float32, tuple(shapes["image_pooled"]))
    tokens_out = open_memmap(features / "image_tokens.npy", "w+", np.float16, tuple(shapes["image_tokens"]))
    expected_ids = (pack_dir / "image_ids.txt").read_text().split()
    t0 = time.perf_counter()
    size = int(meta["image_spec"]["size"])
    for start, ids, pooled, toks in _encode_images(data, pack_dir / "image_encoder.onnx", size, workers):
        if ids != expected_ids[start : start + len(ids)]:
            raise SystemExit(f"error: image order differs from the packed cache at row {start}")
        pooled_out[start : start + len(ids)] = pooled  # the graph's embedding is already L2-normalised
        tokens_out[start : start + len(ids)] = toks
    pooled_out.flush()
    tokens_out.flush()
    print(f"image features: {len(expected_ids)} images in {time.perf_counter() - t0:.1f} s", flush=True)

    check = np.load(pack_dir / "check.npz")
    n = len(check["image_tokens"])
    diff_tokens = float(np.abs(tokens_out[:n].astype(np.float32) - check["image_tokens"].astype(np.float32)).max())
    diff_pooled = float(np.abs(pooled_out[:n] - check["image_pooled"]).max())
    print(f"rebuilt vs original, first {n} images: max |diff| tokens {diff_tokens:.2e}, pooled {diff_pooled:.2e}")
    if not diff_tokens < IMAGE_TOLERANCE or not diff_pooled < IMAGE_TOLERANCE:
        raise SystemExit("error: the rebuilt image features do not match the packed ones")
    meta["rebuilt"] = {
        "from_pack": str(pack_dir),
        "image_features": "onnxruntime (image_encoder.onnx)",
        "max_abs_diff_first_rows": {"image_tokens": diff_tokens, "image_pooled": diff_pooled, "rows": n},
    }
    (features / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    encoder_run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(pack_dir / "components", encoder_run / "components", dirs_exist_ok=True)
    shutil.copy(pack_dir / "encoder.json", encoder_run / "encoder.json")
    print(f"cache ready: {features} (encoder run {encoder_run}) in {time.perf_counter() - started:.1f} s")
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--image-encoder", type=Path, required=True, help="the exported image_encoder model.onnx")
    p.add_argument("--components", type=Path, default=None, help="default: the cache's ENCODER/components")
    p.add_argument("--out", type=Path, required=True)
    u = sub.add_parser("unpack")
    u.add_argument("--pack", type=Path, required=True)
    u.add_argument("--data", type=Path, required=True)
    u.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.features, args.image_encoder, args.out, args.components)
    else:
        unpack(args.pack, args.data, args.workers)


if __name__ == "__main__":
    main()
