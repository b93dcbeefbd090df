"""ImageRewardDB (JSON, one record per image: rank in its prompt group, 1..7 ratings) -> reward dataset."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from rewarddance_trainer.data.importers.common import (
    DatasetBuilder,
    ImportInputError,
    ImportReport,
    creation_command,
    load_json_records,
    prepare_output,
    progress,
    ranked_pairs,
    require_field,
    unmapped_fields,
)

FORMAT = "imagereward"
SOURCE_MIN, SOURCE_MAX = 1, 7
FIELDS: dict[str, type | tuple[type, ...]] = {
    "image_path": str,
    "prompt_id": (str, int),
    "prompt": str,
    "rank": (int, float),
}
ALIGNMENT = "image_text_alignment_rating"
RESCALE_RULE = "fidelity = round_half_up(1 + (image_text_alignment_rating - 1) * 4 / 6): 1..7 -> 1..5"

MAPPING = {
    "prompts.text": "prompt (deduplicated)",
    "images": "files at image_path, relative to --images-root (default: the JSON's directory)",
    "images.settings": '{"source_path": image_path}',
    "ratings.fidelity": RESCALE_RULE,
    "ratings.rater_id": FORMAT,
    "pairs": "every pair within a prompt_id group: lower rank wins, equal rank -> tie; rater_id imagereward",
}
REASONS = {
    "overall_rating": "overall 1..7 impression; the schema has no overall column (rank gives the preference)",
    "fidelity_rating": "ImageReward 'fidelity' is image quality/artifacts, not our prompt fidelity",
    "classification": "prompt topic category, not a requested style",
    "image_amount_in_total": "group size, implied by the records",
}
SCHEMA_GAPS = {
    "ratings.style": "not rated in ImageRewardDB: null",
    "ratings.composition": "not rated in ImageRewardDB: null",
    "ratings.novelty": "not rated in ImageRewardDB: null",
    "prompts.style": "prompts carry no separate requested style: null",
    "images.generator": "not in the source JSON (ImageRewardDB images come from DiffusionDB): null",
    "images.seed": "not in the source JSON: null",
}


def rescale_rating(value: Any) -> int | None:
    """1..7 -> 1..5 on the same linear scale; None when the value is missing or out of range."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not SOURCE_MIN <= value <= SOURCE_MAX:
        return None
    # Half up, not Python's banker's rounding, so fractional source ratings map monotonically.
    return math.floor(1 + (value - SOURCE_MIN) * 4 / (SOURCE_MAX - SOURCE_MIN) + 0.5)


def _check(src: Path, records: list[dict[str, Any]]) -> None:
    for i, record in enumerate(records):
        for name, kind in FIELDS.items():
            require_field(src, i, record, name, kind)
        # Only presence is required: a null or out-of-range rating skips that rating, not the import.
        if ALIGNMENT not in record:
            raise ImportInputError(f"{src}: record {i} has no field '{ALIGNMENT}'")


def import_imagereward(
    src: Path, out: Path, *, limit: int | None = None, images_root: Path | None = None
) -> ImportReport:
    records = load_json_records(src)[:limit]
    _check(src, records)
    root = images_root if images_root is not None else src.parent
    prepare_output(out)
    builder = DatasetBuilder(FORMAT, out)
    groups: defaultdict[tuple[str, str], list[tuple[str | None, float]]] = defaultdict(list)
    for i, record in enumerate(progress(records, len(records), FORMAT)):
        where = f"{src.name}[{i}]"
        prompt_id = builder.prompt(record["prompt"])
        image_id = builder.image_file(prompt_id, root, record["image_path"])
        groups[(str(record["prompt_id"]), prompt_id)].append((image_id, record["rank"]))
        if image_id is None:
            continue
        fidelity = rescale_rating(record[ALIGNMENT])
        if fidelity is None:
            builder.skip(f"{ALIGNMENT} missing or outside 1..7 (rating not imported)", where)
        else:
            builder.rating(image_id, FORMAT, where, fidelity=fidelity)
    for (source_prompt, prompt_id), ranked in groups.items():
        for image_a, image_b, winner in ranked_pairs(ranked):
            builder.pair(prompt_id, image_a, image_b, winner, FORMAT, f"prompt_id {source_prompt}")
    seen = {key for record in records for key in record}
    card = {
        "license": "as ImageRewardDB (see its dataset card); not recorded in the JSON",
        "mapping": MAPPING,
        "rating_rescale": RESCALE_RULE,
        "unmapped": {
            "source_fields": unmapped_fields(seen, {*FIELDS, ALIGNMENT}, REASONS),
            "schema_fields": SCHEMA_GAPS,
        },
    }
    command = creation_command(FORMAT, src, out, limit, images_root)
    return builder.write(src=src, command=command, records_read=len(records), card=card)
