"""Import a public preference dataset (Pick-a-Pic v2, HPDv2, ImageRewardDB) into the reward-dataset format.

Writes prompts/images/ratings/pairs parquet tables, content-addressed images and card.json into an empty --out
directory. card.json records the source fields that did not map and every skipped row with its reason.
Examples:
  rewarddance data import pickapic pickapic_v2/data --out datasets/pickapic --limit 10000
  rewarddance data import hpdv2 HPDv2/train.json --out datasets/hpdv2-train
  rewarddance data import imagereward ImageRewardDB/train.json --out datasets/imagereward
  rewarddance data import ab-votes runs/ab/votes.sqlite --out datasets/ab-votes   # people's votes (ab serve)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rewarddance_trainer.data.importers.common import ImportReport

FORMATS = ("pickapic", "hpdv2", "imagereward", "ab-votes")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="source dataset format")
    parser.add_argument("src", type=Path, help="pickapic: a parquet file or a directory of shards; else a JSON file")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to create (must be empty)")
    parser.add_argument("--limit", type=_positive_int, help="import only the first N source records")
    parser.add_argument(
        "--images-root",
        type=Path,
        help="hpdv2/imagereward: root of the JSON's relative image paths (default: the JSON's directory); "
        "ab-votes: the pair-set folder (default: the one recorded in the database)",
    )


def _summary(report: ImportReport) -> str:
    counts = ", ".join(f"{report.counts[name]} {name}" for name in ("prompts", "images", "pairs", "ratings"))
    lines = [f"imported {counts} from {report.records_read} {report.format} records ({report.src})"]
    lines += [f"  skipped {n}: {reason}" for reason, n in sorted(report.skipped.items())]
    if not report.skipped:
        lines.append("  skipped nothing")
    lines += [f"  source field not imported: {name}: {why}" for name, why in report.unmapped["source_fields"].items()]
    lines += [f"  schema field left empty: {name}: {why}" for name, why in report.unmapped["schema_fields"].items()]
    lines.append(f"  written to {report.out}; details in {report.out / 'card.json'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # Imported here so `rewarddance --help` works without the data extra (pyarrow) installed.
    from rewarddance_trainer.data.importers.abvotes import import_ab_votes
    from rewarddance_trainer.data.importers.common import ImportInputError
    from rewarddance_trainer.data.importers.hpdv2 import import_hpdv2
    from rewarddance_trainer.data.importers.imagereward import import_imagereward
    from rewarddance_trainer.data.importers.pickapic import import_pickapic

    try:
        if args.format == "pickapic":
            if args.images_root is not None:
                raise ImportInputError("--images-root does not apply to pickapic (its images are in the parquet)")
            report = import_pickapic(args.src, args.out, limit=args.limit)
        elif args.format == "ab-votes":
            report = import_ab_votes(args.src, args.out, pairs_root=args.images_root)
        else:
            importer = import_hpdv2 if args.format == "hpdv2" else import_imagereward
            report = importer(args.src, args.out, limit=args.limit, images_root=args.images_root)
    except ImportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(report))
    return 0
