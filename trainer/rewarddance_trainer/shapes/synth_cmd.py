"""Render a synthetic shapes-world reward dataset with simulated raters (resumable, parallel).

Example: rewarddance data synth --prompts 200 --images-per-prompt 8 --seed 0 --out data/shapes --preview sheet.png
Shifted evaluation world: rewarddance data synth --world shifted --seed 1 --out data/shapes-shifted
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    parser.add_argument("--prompts", type=int, default=200, help="number of prompts (default 200)")
    parser.add_argument("--images-per-prompt", type=int, default=8, help="candidates per prompt (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64, help="side of the square images in pixels")
    parser.add_argument("--raters-per-image", type=int, default=3)
    parser.add_argument("--rater-pool", type=int, default=60, help="number of distinct simulated raters")
    parser.add_argument("--rater-noise", type=float, default=1.0, help="noise multiplier (0 = noiseless raters)")
    parser.add_argument("--pairs-per-prompt", type=int, default=None, help="default: images per prompt")
    parser.add_argument("--bt-temperature", type=float, default=0.04, help="Bradley-Terry temperature")
    parser.add_argument("--tie-strength", type=float, default=0.3, help="Davidson tie parameter (0 = no ties)")
    parser.add_argument(
        "--utility-weights",
        type=float,
        nargs=4,
        default=(0.40, 0.25, 0.25, 0.10),
        metavar=("P", "S", "C", "N"),
        help="weights of the hidden human utility (default 0.40 0.25 0.25 0.10)",
    )
    parser.add_argument(
        "--world",
        choices=("standard", "shifted"),
        default="standard",
        help="standard (default) or shifted: other prompt wording and mix, for evaluation only",
    )
    parser.add_argument("--style-probability", type=float, default=0.75, help="share of prompts naming a style")
    parser.add_argument("--chunk-prompts", type=int, default=None, help="prompts per resumable chunk")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished or partial dataset")
    parser.add_argument("--preview", type=Path, default=None, help="also write a contact sheet PNG here")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .raters import RaterConfig
    from .synth import SynthConfig, default_chunk_prompts, synthesize

    try:
        config = SynthConfig(
            n_prompts=args.prompts,
            images_per_prompt=args.images_per_prompt,
            seed=args.seed,
            image_size=args.image_size,
            style_probability=args.style_probability,
            pairs_per_prompt=args.pairs_per_prompt,
            utility_weights=tuple(args.utility_weights),
            raters=RaterConfig(
                pool_size=args.rater_pool,
                per_image=args.raters_per_image,
                noise=args.rater_noise,
                temperature=args.bt_temperature,
                tie_strength=args.tie_strength,
            ),
            chunk_prompts=args.chunk_prompts or default_chunk_prompts(args.prompts),
            world=args.world,
        )
        command = "rewarddance " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        card = synthesize(
            args.out,
            config,
            workers=args.workers,
            overwrite=args.overwrite,
            command=command,
            progress=not args.no_progress,
        )
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_info = card["run"]
    ceiling = card["noise_ceiling"]
    print(f"wrote {card['counts']} to {args.out}")
    print(
        f"rendered {run_info['rendered_this_run']} images in {run_info['seconds']} s "
        f"({run_info['images_per_second']} img/s, {run_info['workers']} workers)"
    )
    rho = ", ".join(f"{k} {v:.3f}" for k, v in ceiling["spearman_vs_mean_rating"].items())
    print(f"noise ceiling: Spearman {rho}; pairwise accuracy {ceiling['pairwise_accuracy']:.3f}")
    if args.preview:
        from .preview import contact_sheet

        contact_sheet(args.out, args.preview)
        print(f"contact sheet: {args.preview}")
    return 0
