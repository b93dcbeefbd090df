"""Reward-training sets nearer the generator's own images, labelled by people only (experiments; neither helped).

Each rendered image of a fixed draw of prompts gets a copy that looks more like what the base generator draws, and
the copy inherits the original's human ratings and pairs. No gold is read. Two ways to make the copy:

- ``sdedit``: pushed part-way into noise and denoised by the base generator (SDEdit at 32 px with the policy's own
  sampler, DDIM eta 1, guidance 1; the strength cycles through ``--strengths`` per batch of ten prompts);
- ``degrade``: squeezed to 32 px, blurred (Gaussian radius 0.3-1.2 px), its contrast pulled toward its mean colour
  (x 0.3-0.9) and pixel noise added (sd 0.03-0.12), each drawn per image.

Output: a dataset directory with the originals (through a symlink to the source's images) and the copies of those
prompts, ready for ``rewarddance data prompt-states`` and ``rewarddance train pixel-reward``. Copies already
written are kept (a rerun resumes).

    python benchmarks/lookalike_data.py --mode sdedit --out data/shapes-sdedit --prompts 300 60 40 \\
        --strengths 0.5 0.7 0.9
    python benchmarks/lookalike_data.py --mode degrade --out data/shapes-corrupt --prompts 1500 200 100
    rewarddance data prompt-states data/shapes-sdedit
    rewarddance train pixel-reward --data data/shapes-sdedit --init exporter/rewarddance_exporter/default_model \\
        --scale cpu-xs --out runs/sd-ft --steps 400 --lr 2e-4 --warmup 50 --threads 1 --eval-every 50 \\
        --val-prompts 60 --test-prompts 40 --component-listwise-weight 1 --component-listwise-heads fidelity
    # degrade: the same with data/shapes-corrupt, --out runs/corrupt-ft --steps 800 --eval-every 100
    #   --val-prompts 200 --test-prompts 100

Measured in docs/rlhf.md (benchmarks/results/reward_on_samples.md, the two fine-tuned rows).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFilter
from rewarddance_trainer.generator.data import load_image
from rewarddance_trainer.generator.load import load_generator
from rewarddance_trainer.pixel_reward.train import fixed_draw

# mode -> (folder of the copies, suffix of their image ids)
COPIES = {"sdedit": ("sdedit", "-sd"), "degrade": ("corrupt", "-c")}
SIZE = 32  # the base generator's


def draw_prompts(src: Path, counts: list[int]) -> pd.DataFrame:
    """A fixed draw of train / val / test prompts (seed 1: not the draw the reward's val and test metrics use)."""
    prompts = pd.read_parquet(src / "prompts.parquet")
    keep = []
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        keep.append(fixed_draw(np.flatnonzero((prompts.split == split).to_numpy()), n, 1))
    return prompts.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)


def sdedit_copies(src: Path, images: pd.DataFrame, text: pd.Series, folder: Path, args) -> None:
    torch.set_num_threads(args.threads)
    pipe = load_generator(args.generator)
    sched = pipe.scheduler
    sched.set_timesteps(args.steps)
    timesteps = sched.timesteps
    by_prompt = [g for _, g in images.groupby("prompt_id", sort=True)]
    t0 = time.time()
    for b in range(0, len(by_prompt), 10):
        chunk = pd.concat(by_prompt[b : b + 10])
        chunk = chunk[[not (folder / f"{i}.png").exists() for i in chunk.image_id]]
        if chunk.empty:
            continue
        strength = args.strengths[(b // 10) % len(args.strengths)]
        k = round(args.steps * (1 - strength))
        g = torch.Generator().manual_seed(b)
        pixels = np.stack([load_image(src / p, SIZE) for p in chunk.path])
        x0 = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
        states, mask = pipe.encode([text[p] for p in chunk.prompt_id])
        x = sched.add_noise(x0, torch.randn(x0.shape, generator=g), timesteps[k : k + 1].repeat(len(x0)))
        with torch.no_grad():
            for t in timesteps[k:]:
                eps = pipe.unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
                x = sched.step(eps, t, x, eta=1.0, generator=g).prev_sample
        out = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, p in zip(chunk.image_id, out, strict=True):
            Image.fromarray(p).save(folder / f"{i}.png")
        if b % 100 == 0:
            print(f"{b + len(by_prompt[b : b + 10])}/{len(by_prompt)} prompts, {time.time() - t0:.0f} s", flush=True)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (32, 32, 3) -> a blurred, flattened, noisy uint8 copy."""
    img = Image.fromarray(image).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    x = np.asarray(img, np.float32) / 255
    mean = x.mean((0, 1), keepdims=True)
    x = mean + rng.uniform(0.3, 0.9) * (x - mean)
    x = x + rng.normal(0, rng.uniform(0.03, 0.12), x.shape)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def degraded_copies(src: Path, images: pd.DataFrame, folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)  # drawn for every image in order, written or not, so a rerun is the same
    for iid, path in zip(images.image_id, images.path, strict=True):
        copy = degrade(load_image(src / path, SIZE), rng)
        if not (folder / f"{iid}.png").exists():
            Image.fromarray(copy).save(folder / f"{iid}.png")


def write_tables(src: Path, out: Path, prompts: pd.DataFrame, images: pd.DataFrame, mode: str, settings: dict):
    """The originals' rows plus the copies' (new ids, their own paths), ratings and pairs duplicated onto them."""
    folder, suffix = COPIES[mode]
    if not (out / "images").exists():
        os.symlink(src / "images", out / "images")
    copy = images.assign(
        image_id=images.image_id + suffix, path=folder + "/" + images.image_id + ".png", width=SIZE, height=SIZE
    )
    pd.concat([images, copy]).to_parquet(out / "images.parquet", index=False)
    prompts.to_parquet(out / "prompts.parquet", index=False)
    ratings = pd.read_parquet(src / "ratings.parquet")
    ratings = ratings[ratings.image_id.isin(images.image_id)]
    both = pd.concat([ratings, ratings.assign(image_id=ratings.image_id + suffix)])
    both.to_parquet(out / "ratings.parquet", index=False)
    pairs = pd.read_parquet(src / "pairs.parquet")
    pairs = pairs[pairs.prompt_id.isin(prompts.prompt_id)]
    both = pd.concat([pairs, pairs.assign(image_a=pairs.image_a + suffix, image_b=pairs.image_b + suffix)])
    both.to_parquet(out / "pairs.parquet", index=False)
    card = json.loads((src / "card.json").read_text())
    card["derived"] = {"from": str(src), mode: settings}
    (out / "card.json").write_text(json.dumps(card, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=sorted(COPIES), required=True)
    ap.add_argument("--data", type=Path, default=Path("data/shapes20k"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prompts", nargs=3, type=int, default=[300, 60, 40], help="train val test (0: all)")
    ap.add_argument("--generator", type=Path, default=Path("runs/generator-base"), help="sdedit")
    ap.add_argument("--strengths", nargs="+", type=float, default=[0.5, 0.7, 0.9], help="sdedit")
    ap.add_argument("--steps", type=int, default=10, help="sdedit: DDIM steps of the whole chain")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="degrade")
    args = ap.parse_args()
    src, out = args.data.resolve(), args.out
    folder = out / COPIES[args.mode][0]
    folder.mkdir(parents=True, exist_ok=True)
    prompts = draw_prompts(src, args.prompts)
    images = pd.read_parquet(src / "images.parquet")
    images = images[images.prompt_id.isin(prompts.prompt_id)].reset_index(drop=True)
    t0 = time.time()
    if args.mode == "sdedit":
        sdedit_copies(src, images, prompts.set_index("prompt_id").text, folder, args)
    else:
        degraded_copies(src, images, folder, args.seed)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_tables(src, out, prompts, images, args.mode, settings)
    print(f"{len(prompts)} prompts: {len(images)} originals + {len(images)} copies in {out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
