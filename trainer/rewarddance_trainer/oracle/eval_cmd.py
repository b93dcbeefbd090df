"""Estimate the four gold scores of shapes-world images from their pixels (independent of the reward model).

Examples:
  rewarddance eval oracle --images out/ --prompts prompts.txt          # one prompt per image (sorted file names)
  rewarddance eval oracle --images out/ --prompts "a red circle" "a blue star"   # the same, given inline
  rewarddance eval oracle --images out/                                # a `rewarddance generate` folder (images.jsonl)
  rewarddance eval oracle --images out/ --prompt "a red circle"        # one prompt for every image
  rewarddance eval oracle --data data/shapes2k --split test --json v.json   # validate against the simulator's gold
  rewarddance eval oracle --fit DIR                                    # refit the oracle (fresh renders, ~10 min)

The oracle: colour segmentation and contour features (classical CV) with small gradient-boosted heads for shape,
colour, size and validity, a style CNN, all fitted on fresh renders of the shapes world; gold formulas applied to
the detected scene against the prompt's parsed scene. Prints one line per image: fidelity, style, composition,
novelty and what it detected.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, default=None, help="folder of images to score")
    parser.add_argument(
        "--prompts",
        nargs="+",
        default=None,
        help="one prompt per image in file-name order: the prompts themselves, or one text file with one per line",
    )
    parser.add_argument("--prompt", default=None, help="one prompt for every image")
    parser.add_argument("--data", type=Path, default=None, help="shapes-world dataset: validate against its gold")
    parser.add_argument("--split", default="test", help="dataset split to validate on (default test; 'all' for all)")
    parser.add_argument("--limit", type=int, default=None, help="validate on a random subset of this many images")
    parser.add_argument("--oracle", type=Path, default=None, help="fitted oracle directory (default: the shipped one)")
    parser.add_argument("--fit", type=Path, default=None, metavar="DIR", help="fit a new oracle into DIR and exit")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")


def _image_prompts(args) -> tuple[list[Path], list[str]]:
    folder = args.images
    index = folder / "images.jsonl"
    if args.prompt is None and args.prompts is None and index.exists():
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        return [folder / r["file"] for r in rows], [r["prompt"] for r in rows]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name != "contact_sheet.png")
    if args.prompt is not None:
        return files, [args.prompt] * len(files)
    if args.prompts is None:
        raise ValueError("give --prompt or --prompts (or a folder written by `rewarddance generate`)")
    prompts = list(args.prompts)
    if len(prompts) == 1 and Path(prompts[0]).is_file():
        prompts = [line.strip() for line in Path(prompts[0]).read_text().splitlines() if line.strip()]
    if len(prompts) != len(files):
        raise ValueError(f"{len(prompts)} prompts for {len(files)} images in {folder}")
    return files, prompts


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    if args.fit is not None:
        from .fit import fit_oracle

        meta = fit_oracle(args.fit)
        print(f"fitted oracle in {args.fit} ({meta['seconds']:.0f} s)")
        return 0
    from .oracle import Oracle, composition, fidelity, novelty, style_score
    from .parse import parse_prompt

    try:
        oracle = Oracle.load(args.oracle)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.data is not None:
        from .validate import validate

        result = validate(oracle, args.data, None if args.split == "all" else args.split, args.limit)
        rho = ", ".join(f"{k} {v:.3f}" for k, v in result["spearman"].items())
        print(f"{result['images']} images of {args.data} ({args.split}): Spearman vs gold: {rho}")
        a = result["attributes"]
        print(
            "attribute accuracy: "
            + ", ".join(
                f"{k} {a[k + '_accuracy']:.3f}" for k in ("shape", "color", "size", "position", "count", "background")
            )
            + f"; detection recall {a['recall']:.3f} precision {a['precision']:.3f}; "
            f"style top-1 (pure) {a['style_top1_accuracy_pure']:.3f}"
        )
    else:
        if args.images is None:
            print("error: give --images (with --prompt/--prompts) or --data", file=sys.stderr)
            return 2
        try:
            files, prompts = _image_prompts(args)
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        readings = oracle.read([np.asarray(Image.open(f).convert("RGB")) for f in files])
        rows = []
        print("file\tfidelity\tstyle\tcomposition\tnovelty\tdetected")
        for f, p, r in zip(files, prompts, readings, strict=True):
            spec = parse_prompt(p)
            scores = [fidelity(spec, r), style_score(spec, r), composition(r), novelty(r)]
            seen = ", ".join(f"{d.size} {d.color} {d.shape} @ {d.position}" for d in r.objects) or "nothing"
            style = max(r.style_weights, key=r.style_weights.get)
            print(f"{f.name}\t" + "\t".join(f"{s:.3f}" for s in scores) + f"\t{seen}; {r.background} bg; {style}")
            keys = ("fidelity", "style", "composition", "novelty")
            rows.append({"file": f.name, "prompt": p, **dict(zip(keys, scores, strict=True)), "reading": r.to_dict()})
        mean = np.mean([[row[k] for k in ("fidelity", "style", "composition", "novelty")] for row in rows], axis=0)
        print("mean\t" + "\t".join(f"{m:.3f}" for m in mean))
        result = {
            "images": rows,
            "mean": dict(zip(("fidelity", "style", "composition", "novelty"), mean.tolist(), strict=True)),
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0
