"""Pick-a-Pic v2 (parquet shards, one row per comparison of two generated images) -> reward dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rewarddance_trainer.data.importers.common import (
    DatasetBuilder,
    ImportInputError,
    ImportReport,
    creation_command,
    prepare_output,
    progress,
    require_source,
    unmapped_fields,
)

FORMAT = "pickapic"
REQUIRED = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")
OPTIONAL = ("has_label", "user_id", "model_0", "model_1", "image_0_uid", "image_1_uid")
WINNERS = {(1, 0): "a", (0, 1): "b", (0.5, 0.5): "tie"}
BATCH_ROWS = 256  # rows carry two encoded images each; small batches keep memory flat on 500 MB shards

MAPPING = {
    "prompts.text": "caption (deduplicated)",
    "images": "jpg_0 / jpg_1 bytes, stored as-is (JPEG stays .jpg); width/height decoded with Pillow",
    "images.generator": "model_0 / model_1",
    "images.settings": '{"uid": image_0_uid / image_1_uid}',
    "pairs.winner": "label_0/label_1: 1/0 -> a, 0/1 -> b, 0.5/0.5 -> tie",
    "pairs.rater_id": "pickapic-user-<user_id> (pickapic when user_id is absent)",
    "rows skipped": "has_label false",
}
REASONS = {
    "best_image_uid": "redundant with label_0/label_1",
    "are_different": "identical images are detected from the bytes instead (pair skipped)",
    "ranking_id": "comparison id; pairs have no id column (skip examples give the shard row instead)",
    "num_example_per_prompt": "source sampling statistic",
    "created_at": "no timestamp field in the schema",
}
SCHEMA_GAPS = {
    "ratings": "Pick-a-Pic has only pairwise choices, no per-component Likert ratings: the table is empty",
    "prompts.style": "captions carry no separate requested style: null",
    "images.seed": "not in the source: null",
}


def parquet_files(src: Path) -> list[Path]:
    require_source(src)
    files = sorted(src.glob("*.parquet")) if src.is_dir() else [src]
    if not files:
        raise ImportInputError(f"{src}: no .parquet files in the directory")
    return files


def _columns(path: Path) -> list[str]:
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except pa.ArrowException:
        raise ImportInputError(f"{path}: not a parquet file (Pick-a-Pic v2 is parquet)") from None
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ImportInputError(f"{path}: missing required column '{missing[0]}' (Pick-a-Pic v2 layout)")
    return names


def _rows(files: list[Path], limit: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, row) over all shards, reading only the columns the importer maps."""
    emitted = 0
    for path in files:
        parquet = pq.ParquetFile(path)
        columns = [c for c in (*REQUIRED, *OPTIONAL) if c in parquet.schema_arrow.names]
        index = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for row in batch.to_pylist():
                if limit is not None and emitted >= limit:
                    return
                yield f"{path.name}#{index}", row
                index += 1
                emitted += 1


def _image(builder: DatasetBuilder, prompt_id: str, row: dict[str, Any], side: str, where: str) -> str | None:
    data = row[f"jpg_{side}"]
    if isinstance(data, dict):  # Hugging Face `datasets` Image feature stores {"bytes", "path"}
        data = data.get("bytes")
    if not data:
        builder.skip("image bytes missing", f"{where} jpg_{side}")
        return None
    settings = {"uid": row.get(f"image_{side}_uid")}
    return builder.image(prompt_id, data, f"{where} jpg_{side}", generator=row.get(f"model_{side}"), settings=settings)


def _add_row(builder: DatasetBuilder, where: str, row: dict[str, Any]) -> None:
    if row.get("has_label") is False:
        builder.skip("has_label is false (no preference recorded)", where)
        return
    winner = WINNERS.get((row["label_0"], row["label_1"]))
    if winner is None:
        builder.skip("label_0/label_1 not 1/0, 0/1 or 0.5/0.5", where)
        return
    if not row["caption"]:
        builder.skip("caption missing", where)
        return
    prompt_id = builder.prompt(row["caption"])
    image_a = _image(builder, prompt_id, row, "0", where)
    image_b = _image(builder, prompt_id, row, "1", where)
    user = row.get("user_id")
    rater_id = FORMAT if user is None else f"{FORMAT}-user-{user}"
    builder.pair(prompt_id, image_a, image_b, winner, rater_id, where)


def import_pickapic(src: Path, out: Path, *, limit: int | None = None) -> ImportReport:
    files = parquet_files(src)
    seen = {name for path in files for name in _columns(path)}
    prepare_output(out)
    builder = DatasetBuilder(FORMAT, out)
    total = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    records = 0
    for where, row in progress(_rows(files, limit), min(total, limit or total), FORMAT):
        _add_row(builder, where, row)
        records += 1
    mapped = set(REQUIRED) | set(OPTIONAL)
    card = {
        "license": "as the Pick-a-Pic v2 dataset (see its dataset card); not recorded in the shards",
        "mapping": MAPPING,
        "unmapped": {"source_fields": unmapped_fields(seen, mapped, REASONS), "schema_fields": SCHEMA_GAPS},
    }
    return builder.write(src=src, command=creation_command(FORMAT, src, out, limit), records_read=records, card=card)
