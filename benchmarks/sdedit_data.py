"""A reward-training set nearer the generator's own images, labelled by people only (an experiment; it did not help).

Every rendered image of a fixed draw of prompts is pushed part-way into noise and denoised by the base generator
(SDEdit, 32 px, the policy's own sampler: DDIM eta 1, guidance 1), and the copy inherits the original's human
ratings and pairs. No gold is read. Output: a dataset directory with the originals (a symlink to the source's
images) and the copies of those prompts, ready for ``rewarddance data prompt-states`` and ``train pixel-reward``.
Resumable: copies already written are skipped.

    python benchmarks/sdedit_data.py --out data/shapes-sdedit --prompts 300 60 40 --strengths 0.5 0.7 0.9
    rewarddance data prompt-states data/shapes-sdedit
    rewarddance train pixel-reward --data data/shapes-sdedit --init exporter/rewarddance_exporter/default_model \
        --scale cpu-xs --out runs/sd-ft --steps 400 --lr 2e-4 --warmup 50 --threads 1 --eval-every 50 \
        --val-prompts 60 --test-prompts 40 --component-listwise-weight 1 --component-listwise-heads fidelity

Measured in docs/rlhf.md (benchmarks/results/reward_on_samples.md, row "v10 + SDEdit fine-tune").
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from rewarddance_trainer.generator.data import load_image
from rewarddance_trainer.generator.load import load_generator
from rewarddance_trainer.pixel_reward.train import fixed_draw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/shapes20k"))
    ap.add_argument("--generator", type=Path, default=Path("runs/generator-base"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prompts", nargs=3, type=int, default=[300, 60, 40], help="train val test (0: all)")
    ap.add_argument("--strengths", nargs="+", type=float, default=[0.3, 0.5])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    src, out = args.data.resolve(), args.out
    (out / "sdedit").mkdir(parents=True, exist_ok=True)
    prompts = pd.read_parquet(src / "prompts.parquet")
    keep = []
    for split, n in zip(("train", "val", "test"), args.prompts, strict=True):
        rows = np.nonzero((prompts.split == split).to_numpy())[0]
        keep.append(fixed_draw(rows, n, 1))  # seed 1: not the draw the reward's val/test metrics use
    keep = np.sort(np.concatenate(keep))
    sub_prompts = prompts.iloc[keep].reset_index(drop=True)
    images = pd.read_parquet(src / "images.parquet")
    images = images[images.prompt_id.isin(sub_prompts.prompt_id)].reset_index(drop=True)
    text = sub_prompts.set_index("prompt_id").text
    pipe = load_generator(args.generator)
    sched = pipe.scheduler
    sched.set_timesteps(args.steps)
    timesteps = sched.timesteps
    t0 = time.time()
    by_prompt = list(images.groupby("prompt_id", sort=True))
    for b in range(0, len(by_prompt), 10):
        chunk = pd.concat([g for _, g in by_prompt[b : b + 10]])
        todo = [i for i in chunk.image_id if not (out / "sdedit" / f"{i}.png").exists()]
        if not todo:
            continue
        chunk = chunk[chunk.image_id.isin(todo)]
        strength = args.strengths[(b // 10) % len(args.strengths)]
        k = round(args.steps * (1 - strength))
        g = torch.Generator().manual_seed(b)
        x0 = (
            torch.from_numpy(np.stack([load_image(src / p, 32) for p in chunk.path])).permute(0, 3, 1, 2).float()
            / 127.5
            - 1
        )
        states, mask = pipe.encode([text[p] for p in chunk.prompt_id])
        x = sched.add_noise(x0, torch.randn(x0.shape, generator=g), timesteps[k : k + 1].repeat(len(x0)))
        with torch.no_grad():
            for t in timesteps[k:]:
                eps = pipe.unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
                x = sched.step(eps, t, x, eta=1.0, generator=g).prev_sample
        pix = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, p in zip(chunk.image_id, pix, strict=True):
            Image.fromarray(p).save(out / "sdedit" / f"{i}.png")
        if b % 100 == 0:
            print(f"{b + len(by_prompt[b : b + 10])}/{len(by_prompt)} prompts, {time.time() - t0:.0f} s", flush=True)

    # tables: originals (paths through a symlink to the source images) + copies with their ratings and pairs
    if not (out / "images").exists():
        os.symlink(src / "images", out / "images")
    copy = images.copy()
    copy["image_id"] = copy.image_id + "-sd"
    copy["path"] = "sdedit/" + images.image_id + ".png"
    copy["width"] = copy["height"] = 32
    copy["generator"] = f"sdedit({args.generator.name})"
    pd.concat([images, copy]).to_parquet(out / "images.parquet", index=False)
    sub_prompts.to_parquet(out / "prompts.parquet", index=False)
    ratings = pd.read_parquet(src / "ratings.parquet")
    ratings = ratings[ratings.image_id.isin(images.image_id)]
    pd.concat([ratings, ratings.assign(image_id=ratings.image_id + "-sd")]).to_parquet(
        out / "ratings.parquet", index=False
    )
    pairs = pd.read_parquet(src / "pairs.parquet")
    pairs = pairs[pairs.prompt_id.isin(sub_prompts.prompt_id)]
    pd.concat([pairs, pairs.assign(image_a=pairs.image_a + "-sd", image_b=pairs.image_b + "-sd")]).to_parquet(
        out / "pairs.parquet", index=False
    )
    card = json.loads((src / "card.json").read_text())
    card["derived"] = {
        "from": str(src),
        "sdedit": vars(args) | {"data": str(args.data), "generator": str(args.generator), "out": str(args.out)},
    }
    (out / "card.json").write_text(json.dumps(card, indent=1))
    print(f"done: {len(sub_prompts)} prompts, {len(images)} originals + {len(copy)} copies in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
