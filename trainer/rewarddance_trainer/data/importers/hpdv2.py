"""HPDv2 (train.json: one preferred image of two; test.json: a ranking of N images) -> reward dataset."""

from __future__ import annotations

from dataclasses import dataclass
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

FORMAT = "hpdv2"
RANK_RATER = "hpdv2-rank"
PATH_KEYS = ("image_path", "file_path")  # releases differ in the key naming the image list
PREFERENCE_RANKS = {(1, 0): [1, 2], (0, 1): [2, 1]}

MAPPING = {
    "prompts.text": "prompt (deduplicated)",
    "images": "files at image_path / file_path, relative to --images-root (default: the JSON's directory)",
    "images.settings": '{"source_path": <relative path>}',
    "pairs (train.json)": "human_preference [1, 0] -> a, [0, 1] -> b",
    "pairs (test.json)": "every pair of the ranking: lower rank wins, equal rank -> tie",
    "pairs.rater_id": "train: hpdv2-<user_hash> (hpdv2 when absent); test: hpdv2-rank",
}
REASONS = {
    "raw_annotations": "individual annotators' rankings; the consensus 'rank' is imported instead",
}
SCHEMA_GAPS = {
    "ratings": "HPDv2 has only preferences and rankings, no per-component Likert ratings: the table is empty",
    "prompts.style": "prompts carry no separate requested style: null",
    "images.generator": "not in the source JSON: null",
    "images.seed": "not in the source JSON: null",
}


@dataclass(frozen=True)
class Entry:
    """One source record: a prompt, its images, and their ranks (train.json preferences become ranks 1/2)."""

    prompt: str
    paths: list[str]
    ranks: list[Any] | None  # None: a train.json preference that is not [1, 0] or [0, 1]
    rater_id: str


def _paths(src: Path, index: int, record: dict[str, Any]) -> list[str]:
    key = next((k for k in PATH_KEYS if k in record), None)
    if key is None:
        raise ImportInputError(f"{src}: record {index} has no field 'image_path' (or 'file_path')")
    paths = require_field(src, index, record, key, list)
    if not all(isinstance(p, str) for p in paths):
        raise ImportInputError(f"{src}: record {index} field '{key}' must be a list of relative paths")
    return paths


def _preference_ranks(preference: list[Any]) -> list[int] | None:
    """[1, 0] means the first image is preferred: ranks 1 and 2. Anything else is unusable: None."""
    if not all(isinstance(v, int | float) for v in preference):
        return None
    return PREFERENCE_RANKS.get(tuple(preference))


def _entry(src: Path, index: int, record: dict[str, Any]) -> Entry:
    """Check one record's structure; a structural problem is a format error, a bad value a skip later."""
    prompt = require_field(src, index, record, "prompt", str)
    paths = _paths(src, index, record)
    if "human_preference" in record:
        ranks = _preference_ranks(require_field(src, index, record, "human_preference", list))
        user = record.get("user_hash")
        return Entry(prompt, paths, ranks, FORMAT if user is None else f"{FORMAT}-{user}")
    if "rank" in record:
        return Entry(prompt, paths, require_field(src, index, record, "rank", list), RANK_RATER)
    raise ImportInputError(
        f"{src}: record {index} has neither field 'human_preference' (train.json) nor 'rank' (test.json)"
    )


def _add_entry(builder: DatasetBuilder, images_root: Path, where: str, entry: Entry) -> None:
    if len(entry.paths) < 2:
        builder.skip("fewer than two images", where)
        return
    if entry.ranks is None:
        builder.skip("human_preference is not [1, 0] or [0, 1]", where)
        return
    if len(entry.ranks) != len(entry.paths) or not all(isinstance(r, int | float) for r in entry.ranks):
        builder.skip("rank / human_preference is not one number per image", where)
        return
    prompt_id = builder.prompt(entry.prompt)
    image_ids = [builder.image_file(prompt_id, images_root, path) for path in entry.paths]
    for image_a, image_b, winner in ranked_pairs(list(zip(image_ids, entry.ranks, strict=True))):
        builder.pair(prompt_id, image_a, image_b, winner, entry.rater_id, where)


def import_hpdv2(src: Path, out: Path, *, limit: int | None = None, images_root: Path | None = None) -> ImportReport:
    records = load_json_records(src)[:limit]
    entries = [_entry(src, i, record) for i, record in enumerate(records)]
    root = images_root if images_root is not None else src.parent
    prepare_output(out)
    builder = DatasetBuilder(FORMAT, out)
    for i, entry in enumerate(progress(entries, len(entries), FORMAT)):
        _add_entry(builder, root, f"{src.name}[{i}]", entry)
    mapped = {"prompt", "human_preference", "rank", "user_hash", *PATH_KEYS}
    seen = {key for record in records for key in record}
    card = {
        "license": "as the HPDv2 dataset (see its dataset card); not recorded in the JSON",
        "mapping": MAPPING,
        "unmapped": {"source_fields": unmapped_fields(seen, mapped, REASONS), "schema_fields": SCHEMA_GAPS},
    }
    command = creation_command(FORMAT, src, out, limit, images_root)
    return builder.write(src=src, command=command, records_read=len(records), card=card)
