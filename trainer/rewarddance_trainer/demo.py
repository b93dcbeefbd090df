"""Run the shapes-world demo end to end: synthesize a dataset, validate it, write its contact sheet.

This is what the README's first command runs until the serving stack lands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="working directory (default runs/demo)")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--images-per-prompt", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from .data.validate import validate_dataset
    from .shapes.preview import contact_sheet
    from .shapes.synth import SynthConfig, synthesize

    data = args.out / "shapes"
    config = SynthConfig(
        n_prompts=args.prompts,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        chunk_prompts=max(5, min(100, args.prompts // 16 or 1)),
    )
    card = synthesize(data, config, overwrite=True, command=f"rewarddance demo --out {args.out}")
    problems = validate_dataset(data)
    sheet = contact_sheet(data, args.out / "contact_sheet.png")
    ceiling = card["noise_ceiling"]
    print(f"dataset     {data}  {card['counts']}")
    print(f"speed       {card['run']['images_per_second']} images/s on {card['run']['workers']} workers")
    print(f"validate    {'clean' if not problems else f'{len(problems)} problems'}")
    rho = ", ".join(f"{k} {v:.3f}" for k, v in ceiling["spearman_vs_mean_rating"].items())
    print(f"ceiling     Spearman(gold, mean rating): {rho}")
    print(
        f"            pairwise accuracy {ceiling['pairwise_accuracy']:.3f} "
        f"(expected {ceiling['pairwise_accuracy_expected']:.3f}), tie rate {ceiling['tie_rate']:.3f}"
    )
    print(f"sheet       {sheet}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(out=Path("runs/demo"), prompts=200, images_per_prompt=8, seed=0)))
