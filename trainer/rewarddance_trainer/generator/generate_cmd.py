"""Generate images for prompts with a trained generator run or a local diffusers pipeline; writes a contact sheet.

Examples:
  rewarddance generate --generator runs/generator --prompt "a large red circle in the center" --n 16 --out out/
  rewarddance generate --generator runs/sd-lora --prompts-file prompts.txt --n 4 --steps 50 --guidance 7.5 --out out/

--generator takes a ``rewarddance train generator`` run (its EMA pipeline, or base + LoRA adapters) or any local
diffusers pipeline directory. Writes OUT/<prompt#>_<sample#>.png, OUT/images.jsonl (file, prompt, seed, settings)
and OUT/contact_sheet.png (one row per prompt). Same prompts, seed and settings give the same pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", type=Path, required=True, help="generator run or diffusers pipeline directory")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    parser.add_argument("--prompts-file", type=Path, default=None, help="text file, one prompt per line")
    parser.add_argument("--n", type=int, default=16, help="images per prompt (default 16)")
    parser.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic DDIM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--cell", type=int, default=96, help="contact-sheet cell size in px (default 96)")


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from .load import generate_images, load_generator
    from .sheet import contact_sheet

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += [line.strip() for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if not prompts:
        print("error: give --prompt and/or --prompts-file", file=sys.stderr)
        return 2
    try:
        pipe = load_generator(args.generator, args.device)
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    images = generate_images(pipe, prompts, args.n, args.steps, args.guidance, args.seed, eta=args.eta)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"steps": args.steps, "guidance": args.guidance, "eta": args.eta, "generator": str(args.generator)}
    rows = []
    with (args.out / "images.jsonl").open("w") as f:
        for i, prompt in enumerate(prompts):
            row = images[i * args.n : (i + 1) * args.n]
            rows.append((prompt, list(row)))
            for j, img in enumerate(row):
                name = f"{i:03d}_{j:03d}.png"
                Image.fromarray(img).save(args.out / name)
                f.write(json.dumps({"file": name, "prompt": prompt, "seed": args.seed, **settings}) + "\n")
    sheet = contact_sheet(rows, args.out / "contact_sheet.png", cell=args.cell)
    print(f"wrote {len(images)} images for {len(prompts)} prompts to {args.out}; contact sheet {sheet}")
    return 0
