"""What the importers share: prompt and image dedupe, fold/split assignment, and skip/unmapped bookkeeping.

Every row an importer cannot use is counted under a reason in card.json (never dropped silently), and every
source field that has no home in the schema is listed with why.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from rewarddance_trainer.data import schema

SKIP_EXAMPLES = 3  # locations kept per skip reason, so a user can find the offending source rows
NO_FIELD = "no corresponding field in the reward-dataset schema"
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


class ImportInputError(ValueError):
    """The source is missing, in the wrong format or lacks a required field, or --out is unusable."""


@dataclass(frozen=True)
class ImportReport:
    format: str
    src: Path
    out: Path
    records_read: int
    counts: dict[str, int]
    skipped: dict[str, int]
    unmapped: dict[str, dict[str, str]]


def split_for_fold(fold: int) -> str:
    return {schema.N_FOLDS - 1: "test", schema.N_FOLDS - 2: "val"}.get(fold, "train")


def image_info(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, file suffix) of encoded image bytes, or None when Pillow cannot read them."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height, _SUFFIXES.get(img.format or "", f".{(img.format or 'bin').lower()}")
    except (UnidentifiedImageError, OSError):
        return None


def winner_by_rank(rank_a: float, rank_b: float) -> str:
    """Lower rank is better (1 = best); equal ranks are a tie."""
    return "a" if rank_a < rank_b else "b" if rank_a > rank_b else "tie"


def ranked_pairs(ranked: Sequence[tuple[str | None, float]]) -> Iterator[tuple[str | None, str | None, str]]:
    """Every pair a ranking implies, in source order: (image_a, image_b, winner)."""
    for i, (image_a, rank_a) in enumerate(ranked):
        for image_b, rank_b in ranked[i + 1 :]:
            yield image_a, image_b, winner_by_rank(rank_a, rank_b)


def unmapped_fields(seen: Iterable[str], mapped: set[str], reasons: dict[str, str]) -> dict[str, str]:
    """Source fields present in the data that the importer did not map, each with why."""
    return {name: reasons.get(name, NO_FIELD) for name in sorted(set(seen) - mapped)}


def creation_command(fmt: str, src: Path, out: Path, limit: int | None, images_root: Path | None = None) -> str:
    argv = ["rewarddance", "data", "import", fmt, str(src), "--out", str(out)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if images_root is not None:
        argv += ["--images-root", str(images_root)]
    return shlex.join(argv)


def require_source(src: Path) -> None:
    if not src.exists():
        raise ImportInputError(f"SRC not found: {src}")


def prepare_output(out: Path) -> None:
    # Refuse to write into a non-empty directory: stale images or tables from another import would mix in.
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImportInputError(f"--out {out} exists and is not an empty directory")


def load_json_records(path: Path) -> list[dict[str, Any]]:
    require_source(path)
    if not path.is_file():
        raise ImportInputError(f"{path}: expected a JSON file, got a directory")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportInputError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ImportInputError(f"{path}: expected a JSON list of objects, one per record")
    return records


def require_field(path: Path, index: int, record: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """The field's value; a missing field or a wrong type is a format error that names the field."""
    if name not in record:
        raise ImportInputError(f"{path}: record {index} has no field '{name}'")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise ImportInputError(
            f"{path}: record {index} field '{name}' should be {expected}, got {type(value).__name__}"
        )
    return value


def progress(items: Iterable, total: int | None, desc: str) -> Iterable:
    return tqdm(items, total=total, desc=desc, unit="rec", disable=None)


class DatasetBuilder:
    """Accumulates one import's rows: prompts deduplicated by text, images by content, skips by reason."""

    def __init__(self, fmt: str, out: Path) -> None:
        self.fmt = fmt
        self.out = out
        self.prompts: dict[str, dict] = {}  # text -> row
        self.images: dict[tuple[str, str], dict] = {}  # (sha256, prompt_id) -> row
        self.ratings: dict[tuple[str, str], dict] = {}  # (image_id, rater_id) -> row
        self.pairs: list[dict] = []
        self.skipped: Counter[str] = Counter()
        self.skip_examples: defaultdict[str, list[str]] = defaultdict(list)
        self._image_ids: set[str] = set()
        self._files: dict[tuple[Path, str], str | None] = {}

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        if len(self.skip_examples[reason]) < SKIP_EXAMPLES:
            self.skip_examples[reason].append(where)

    def prompt(self, text: str) -> str:
        row = self.prompts.get(text)
        if row is None:
            digest = hashlib.sha256(text.encode()).hexdigest()
            # Fold from the text alone (not the source), so a prompt shared by two datasets gets one fold.
            fold = int(digest[:8], 16) % schema.N_FOLDS
            row = {
                "prompt_id": f"{self.fmt}-prompt-{digest[:16]}",
                "text": text,
                "style": None,
                "fold": fold,
                "split": split_for_fold(fold),
                "source": self.fmt,
            }
            self.prompts[text] = row
        return row["prompt_id"]

    def image(
        self, prompt_id: str, data: bytes, where: str, *, generator: str | None, settings: dict[str, Any]
    ) -> str | None:
        """Store encoded bytes once; returns the image id, or None (recorded as skipped) if unreadable."""
        digest = schema.sha256_bytes(data)
        known = self.images.get((digest, prompt_id))
        if known is not None:
            return known["image_id"]
        info = image_info(data)
        if info is None:
            self.skip("image bytes are not a readable image", where)
            return None
        width, height, suffix = info
        path, _ = schema.store_image(self.out, data, suffix)
        image_id = f"{self.fmt}-{digest[:16]}"
        if image_id in self._image_ids:
            # The same picture under a second prompt: one file on disk, but a row (and id) per prompt.
            image_id += "-" + prompt_id.rsplit("-", 1)[1][:8]
        self._image_ids.add(image_id)
        self.images[(digest, prompt_id)] = {
            "image_id": image_id,
            "prompt_id": prompt_id,
            "path": path,
            "width": width,
            "height": height,
            "sha256": digest,
            "generator": generator,
            "seed": None,
            "settings": json.dumps(settings, sort_keys=True),
        }
        return image_id

    def image_file(self, prompt_id: str, root: Path, relpath: str) -> str | None:
        """Import an image file referenced by a source record (read once however often it is referenced)."""
        key = (root / relpath, prompt_id)
        if key not in self._files:
            if key[0].is_file():
                data = key[0].read_bytes()
                self._files[key] = self.image(
                    prompt_id, data, relpath, generator=None, settings={"source_path": relpath}
                )
            else:
                self.skip("image file missing", relpath)
                self._files[key] = None
        return self._files[key]

    def pair(
        self, prompt_id: str, image_a: str | None, image_b: str | None, winner: str, rater_id: str, where: str
    ) -> None:
        if image_a is None or image_b is None:
            self.skip("pair references an image that was skipped", where)
        elif image_a == image_b:
            self.skip("both sides of the pair are the same image", where)
        else:
            self.pairs.append(
                {
                    "prompt_id": prompt_id,
                    "image_a": image_a,
                    "image_b": image_b,
                    "winner": winner,
                    "rater_id": rater_id,
                }
            )

    def rating(self, image_id: str, rater_id: str, where: str, **components: int | None) -> None:
        if (image_id, rater_id) in self.ratings:
            self.skip("image rated again by the same rater (first rating kept)", where)
            return
        row = {"image_id": image_id, "rater_id": rater_id} | {c: components.get(c) for c in schema.COMPONENTS}
        self.ratings[(image_id, rater_id)] = row

    def _prompt_rows(self) -> list[dict]:
        # A prompt whose every image was skipped would be an orphan row; count it instead of writing it.
        used = {row["prompt_id"] for row in self.images.values()}
        for row in self.prompts.values():
            if row["prompt_id"] not in used:
                self.skip("prompt has no importable image", row["prompt_id"])
        return [row for row in self.prompts.values() if row["prompt_id"] in used]

    def write(self, *, src: Path, command: str, records_read: int, card: dict[str, Any]) -> ImportReport:
        """Write tables and card.json; ``card`` brings the format's mapping, unmapped and license notes."""
        tables = {
            "prompts": schema.to_table(self._prompt_rows(), schema.PROMPTS),
            "images": schema.to_table(list(self.images.values()), schema.IMAGES),
            "ratings": schema.to_table(list(self.ratings.values()), schema.RATINGS),
            "pairs": schema.to_table(self.pairs, schema.PAIRS),
        }
        full_card = {
            **card,
            "source": {"format": self.fmt, "path": str(src.resolve()), "records_read": records_read},
            "creation_command": command,
            "skipped": {"counts": dict(self.skipped), "examples": dict(self.skip_examples)},
        }
        written = schema.write_dataset(self.out, tables, full_card)
        return ImportReport(
            format=self.fmt,
            src=src,
            out=self.out,
            records_read=records_read,
            counts=written["counts"],
            skipped=dict(self.skipped),
            unmapped=card["unmapped"],
        )
