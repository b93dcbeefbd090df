"""The on-disk reward-dataset contract: table names, columns and types, shared by every writer and reader.

A dataset directory holds prompts/images/ratings/pairs parquet tables, ``card.json``, content-addressed image
files under ``images/``, and (synthetic data only) ``gold/`` tables that training code never reads.
See docs/dataset.md for the meaning of each field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = "1.0"
COMPONENTS = ("fidelity", "style", "composition", "novelty")
LIKERT_MIN, LIKERT_MAX = 1, 5
WINNERS = ("a", "b", "tie")
SPLITS = ("train", "val", "test")
N_FOLDS = 5

PROMPTS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("text", pa.string()),
        ("style", pa.string()),  # requested style, null when the prompt names none
        ("fold", pa.int8()),  # 0..4, grouped by prompt
        ("split", pa.string()),  # train | val | test (fold 3 -> val, fold 4 -> test)
        ("source", pa.string()),
    ]
)
IMAGES = pa.schema(
    [
        ("image_id", pa.string()),
        ("prompt_id", pa.string()),
        ("path", pa.string()),  # relative to the dataset directory; content-addressed by sha256
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("generator", pa.string()),
        ("seed", pa.int64()),
        ("settings", pa.string()),  # JSON: sampler, steps, guidance or perturbation parameters
    ]
)
RATINGS = pa.schema(
    [
        ("image_id", pa.string()),
        ("rater_id", pa.string()),
        # 5-point Likert 1..5; null where the source did not rate that component.
        ("fidelity", pa.int8()),
        ("style", pa.int8()),
        ("composition", pa.int8()),
        ("novelty", pa.int8()),
    ]
)
PAIRS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("image_a", pa.string()),
        ("image_b", pa.string()),
        ("winner", pa.string()),  # a | b | tie
        ("rater_id", pa.string()),
    ]
)
GOLD = pa.schema(
    [
        ("image_id", pa.string()),
        ("fidelity", pa.float32()),
        ("style", pa.float32()),
        ("composition", pa.float32()),
        ("novelty", pa.float32()),
        ("utility", pa.float32()),  # hidden human utility the pairwise labels were drawn from
        ("scene", pa.string()),  # JSON of the scene actually rendered
    ]
)
GOLD_PROMPTS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("spec", pa.string()),  # JSON of the scene the prompt describes (only the attributes it names)
    ]
)

TABLES: dict[str, pa.Schema] = {"prompts": PROMPTS, "images": IMAGES, "ratings": RATINGS, "pairs": PAIRS}
GOLD_TABLES: dict[str, pa.Schema] = {"gold": GOLD, "prompts": GOLD_PROMPTS}


@dataclass(frozen=True)
class Layout:
    """Paths inside one dataset directory."""

    root: Path

    def table(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def gold_table(self, name: str) -> Path:
        return self.root / "gold" / f"{name}.parquet"

    @property
    def card(self) -> Path:
        return self.root / "card.json"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def image_relpath(digest: str, suffix: str) -> str:
    """Content-addressed location of an image: images/<2 hex>/<sha256><suffix>."""
    return f"images/{digest[:2]}/{digest}{suffix}"


def store_image(root: Path, data: bytes, suffix: str) -> tuple[str, str]:
    """Write encoded image bytes under their hash (idempotent); returns (relative path, sha256)."""
    digest = sha256_bytes(data)
    rel = image_relpath(digest, suffix)
    dest = root / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return rel, digest


def to_table(rows: list[dict] | dict[str, list], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly the contract's columns and types (extra keys are an error)."""
    if isinstance(rows, dict):
        extra = set(rows) - set(schema.names)
        if extra:
            raise ValueError(f"columns not in the schema: {sorted(extra)}")
        return pa.Table.from_pydict({name: rows.get(name, [None] * _len(rows)) for name in schema.names}, schema)
    return pa.Table.from_pylist(rows, schema=schema)


def _len(columns: dict[str, list]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def write_table(table: pa.Table, path: Path) -> str:
    """Write atomically; returns the file's sha256 for the card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return sha256_file(path)


def write_card(root: Path, card: dict) -> None:
    path = Layout(root).card
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def write_dataset(root: Path, tables: dict[str, pa.Table], card: dict) -> dict:
    """Write the four public tables and the card (with counts and table hashes filled in)."""
    layout = Layout(root)
    root.mkdir(parents=True, exist_ok=True)
    hashes = {name: write_table(tables[name], layout.table(name)) for name in TABLES}
    card = {
        **card,
        "format_version": FORMAT_VERSION,
        "counts": {name: tables[name].num_rows for name in TABLES},
        "table_sha256": hashes,
    }
    write_card(root, card)
    return card
