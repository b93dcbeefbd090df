"""Train the text-to-image generator (pixel-space diffusers UNet on frozen MiniLM states, or LoRA on --base); resumable.

Examples:
  rewarddance train generator --data data/shapes2k --out runs/generator --steps 4000
  rewarddance train generator --data data/shapes2k --out runs/sd-lora --base /models/my-sd-pipeline --lora-rank 8

Rerun the same command to resume from RUN/checkpoint (a larger --steps extends a finished run). Without --base the
run holds a ShapesDiffusionPipeline in RUN/pipeline (EMA weights, ``save_pretrained`` layout), sample grids in
RUN/samples and the loss curve in RUN/loss.png. With --base (a local diffusers pipeline directory with unet, vae,
text_encoder and tokenizer, e.g. a Stable Diffusion checkpoint) the UNet gets peft LoRA adapters and RUN/lora
holds them (``load_lora_weights`` layout); ``rewarddance generate --generator RUN`` loads either kind.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .config import GeneratorTrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None, help="reward dataset directory (error-free images)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (rerun to resume)")
    parser.add_argument("--base", type=Path, default=None, help="local diffusers pipeline to LoRA-fine-tune")
    for f in fields(GeneratorTrainConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"(default {f.default})"
        )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="end this call after that step, with a checkpoint (rerun to go on); not with --base",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = GeneratorTrainConfig(**{f.name: getattr(args, f.name) for f in fields(GeneratorTrainConfig)})
    if args.data is not None and not (args.data / "prompts.parquet").exists():
        print(f"error: {args.data} is not a dataset directory (no prompts.parquet)", file=sys.stderr)
        return 2
    if args.stop_at is not None and args.base is not None:
        print("error: --stop-at applies to the default generator's training, not to --base (LoRA)", file=sys.stderr)
        return 2
    if args.data is None and not cfg.synthetic:
        print("error: give --data and/or --synthetic N", file=sys.stderr)
        return 2
    try:
        if args.base is not None:
            from .lora import train_lora

            meta = train_lora(args.base, args.data, args.out, cfg, progress=not args.no_progress)
        else:
            from .train import train

            meta = train(args.data, args.out, cfg, progress=not args.no_progress, stop_at=args.stop_at)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loss = "not logged yet" if meta["final_loss"] is None else f"{meta['final_loss']:.4f}"
    seconds = meta["train_seconds"]
    print(f"trained {meta['steps_completed']} steps in {seconds:.0f} s, final loss {loss}; run {args.out}")
    return 0
