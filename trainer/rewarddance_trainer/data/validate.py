"""Check a reward dataset directory against the on-disk contract and list every problem found.

Reads card.json, the prompts/images/ratings/pairs tables, every image file (decoded and hashed in parallel)
and, when a gold/ directory exists, the gold tables. Each problem carries a stable kind code; the report
groups them by kind with counts and examples, and says which checks could not run and why.

Exit status: 0 no problems, 1 problems found, 2 DIR does not exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import posixpath
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from rewarddance_trainer.data.schema import (
    COMPONENTS,
    FORMAT_VERSION,
    GOLD,
    GOLD_TABLES,
    LIKERT_MAX,
    LIKERT_MIN,
    N_FOLDS,
    SPLITS,
    TABLES,
    WINNERS,
    Layout,
    image_relpath,
    sha256_bytes,
    sha256_file,
)

# Stable codes (scripts match on them) and what each means; the report lists kinds in this order.
KINDS: dict[str, str] = {
    "missing_file": "a required file does not exist",
    "unreadable_table": "a parquet table cannot be read",
    "unreadable_card": "card.json is not a JSON object",
    "missing_column": "a contract column is absent",
    "extra_column": "a column the contract does not define",
    "bad_type": "a column's type differs from the contract",
    "null_value": "a required value is null",
    "duplicate_id": "an id (or image/rater pair) occurs more than once",
    "unknown_id": "a reference to a prompt or image that does not exist",
    "bad_path": "an image path is unsafe or not its content address",
    "bad_hash": "a sha256 value is not 64 lowercase hex digits",
    "missing_image": "an image file does not exist",
    "unreadable_image": "an image file cannot be read or decoded",
    "hash_mismatch": "an image file's sha256 differs from images.sha256",
    "size_mismatch": "an image's decoded size differs from width/height",
    "check_failed": "a check crashed and its results are incomplete",
    "rating_out_of_range": f"a rating is neither null nor an integer in {LIKERT_MIN}..{LIKERT_MAX}",
    "empty_rating": "a rating row has every component null",
    "bad_winner": f"a pair's winner is not one of {', '.join(WINNERS)}",
    "self_pair": "a pair compares an image with itself",
    "pair_across_prompts": "a pair's images do not both belong to the pair's prompt",
    "card_mismatch": "card.json disagrees with the files (counts, table hashes, format version)",
    "bad_fold": f"a prompt's fold is not in 0..{N_FOLDS - 1}",
    "bad_split": f"a prompt's split is not one of {', '.join(SPLITS)} or disagrees with its fold",
    "empty_text": "a prompt's text is null or blank",
    "gold_out_of_range": "a gold score is not in [0, 1]",
}

# Columns that identify a row: checked for uniqueness and used as the problem key ("row N" for other tables).
_KEYS: dict[str, tuple[str, ...]] = {
    "prompts": ("prompt_id",),
    "images": ("image_id",),
    "ratings": ("image_id", "rater_id"),
    "gold/gold": ("image_id",),
    "gold/prompts": ("prompt_id",),
}
# Nullable-by-contract columns are left out, and so are text/fold/split/winner, whose own checks report nulls.
_NOT_NULL: dict[str, tuple[str, ...]] = {
    "prompts": ("prompt_id", "source"),
    "images": ("image_id", "prompt_id", "path", "width", "height", "sha256"),
    "ratings": ("image_id", "rater_id"),
    "pairs": ("prompt_id", "image_a", "image_b"),
    "gold/gold": ("image_id",),
    "gold/prompts": ("prompt_id",),
}
# docs/dataset.md: the last fold is test, the one before it val, the rest train.
_SPLIT_OF_FOLD = {fold: "train" for fold in range(N_FOLDS - 2)} | {N_FOLDS - 2: "val", N_FOLDS - 1: "test"}
_GOLD_SCORES = tuple(f.name for f in GOLD if pa.types.is_floating(f.type))
_HEX64 = r"[0-9a-f]{64}"
# Chunks small enough for a smooth progress bar, large enough that pickling per chunk is negligible.
_MIN_CHUNK, _MAX_CHUNK = 64, 1000


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # one of KINDS
    table: str  # prompts | images | ratings | pairs | card | gold/gold | gold/prompts
    key: str  # the row's id, "row N", a column name, or a file name
    message: str


# (key, path relative to the dataset, sha256, width, height) for one image file.
_FileTask = tuple[str, str, str | None, int | None, int | None]


@dataclass
class _Context:
    root: Path
    problems: list[Problem] = field(default_factory=list)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # only columns whose type matches
    rows: dict[str, int] = field(default_factory=dict)
    # (table, column or None for the whole table) -> index of the problem that makes it unusable
    blockers: dict[tuple[str, str | None], int] = field(default_factory=dict)
    skipped: dict[int, list[str]] = field(default_factory=dict)

    def add(self, kind: str, table: str, key: str, message: str) -> int:
        self.problems.append(Problem(kind, table, key, message))
        return len(self.problems) - 1

    def block(self, table: str, column: str | None, kind: str, key: str, message: str) -> None:
        self.blockers[(table, column)] = self.add(kind, table, key, message)

    def skip(self, check: str, table: str, column: str | None = None) -> bool:
        """Record that ``check`` cannot run if (table, column) is blocked; True when it is."""
        index = self.blockers.get((table, None), self.blockers.get((table, column)) if column else None)
        if index is None:
            return False
        self.skipped.setdefault(index, []).append(check)
        return True

    def usable(self, check: str, needs: Iterable[tuple[str, str]]) -> bool:
        blocked = [self.skip(check, table, column) for table, column in needs]
        return not any(blocked)

    def finish(self) -> list[Problem]:
        """Name, on each blocking problem, the checks it prevented: a skipped check is never silent."""
        for index, checks in self.skipped.items():
            problem = self.problems[index]
            note = f"{problem.message}; not checked because of this: {', '.join(dict.fromkeys(checks))}"
            self.problems[index] = dataclasses.replace(problem, message=note)
        return self.problems


def validate_dataset(
    root: Path, *, check_images: bool = True, workers: int | None = None, progress: bool = False
) -> list[Problem]:
    """Every problem in the dataset at ``root``; an empty list means it meets the contract."""
    ctx = _Context(Path(root))
    layout = Layout(ctx.root)
    card = _load_card(ctx)
    for name, schema in TABLES.items():
        _load_table(ctx, name, layout.table(name), schema)
    _check_card(ctx, card)
    _check_prompts(ctx)
    _check_images(ctx)
    _check_ratings(ctx)
    _check_pairs(ctx)
    if check_images:
        _check_image_files(ctx, workers or os.cpu_count() or 1, progress)
    if (ctx.root / "gold").exists():
        _check_gold(ctx)
    return ctx.finish()


# ---- loading ---------------------------------------------------------------------------------------------


def _load_card(ctx: _Context) -> dict | None:
    path = Layout(ctx.root).card
    if not path.is_file():
        ctx.block("card", None, "missing_file", "card.json", "card.json does not exist")
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        ctx.block("card", None, "unreadable_card", "card.json", f"cannot parse card.json: {_describe(exc)}")
        return None
    if not isinstance(card, dict):
        ctx.block("card", None, "unreadable_card", "card.json", f"card.json holds a {type(card).__name__}")
        return None
    return card


def _load_table(ctx: _Context, name: str, path: Path, schema: pa.Schema) -> None:
    rel = path.relative_to(ctx.root).as_posix()
    if not path.is_file():
        ctx.block(name, None, "missing_file", rel, f"{rel} does not exist")
        return
    try:
        table = pq.read_table(path)
        issues = _column_issues(table.schema, schema)
        usable = [f.name for f in schema if f.name not in issues]
        frame = table.select(usable).to_pandas()
    except Exception as exc:  # pyarrow raises many types for corrupt files; each is a finding, not a crash
        ctx.block(name, None, "unreadable_table", rel, f"cannot read {rel}: {_describe(exc)}")
        return
    for column, (kind, message) in issues.items():
        if kind == "extra_column":
            ctx.add(kind, name, column, message)
        else:
            ctx.block(name, column, kind, column, message)
    ctx.frames[name] = frame
    ctx.rows[name] = table.num_rows


def _column_issues(actual: pa.Schema, contract: pa.Schema) -> dict[str, tuple[str, str]]:
    issues = {}
    for expected in contract:
        if expected.name not in actual.names:
            issues[expected.name] = ("missing_column", f"no column {expected.name!r}")
            continue
        found = actual.field(expected.name).type
        if found != expected.type:
            issues[expected.name] = (
                "bad_type",
                f"{expected.name} is {found}, the contract says {expected.type}",
            )
    for name in actual.names:
        if name not in contract.names:
            issues[name] = ("extra_column", f"column {name!r} is not in the contract")
    return issues


# ---- generic row checks ----------------------------------------------------------------------------------


def _flag(
    ctx: _Context, kind: str, table: str, frame: pd.DataFrame, mask: pd.Series, message: Callable[[Any], str]
) -> None:
    selected = mask.to_numpy(dtype=bool)
    if not selected.any():  # the usual case; skips building an empty frame per check
        return
    for row in frame[selected].itertuples():
        ctx.add(kind, table, _row_key(table, row), message(row))


def _row_key(table: str, row: Any) -> str:
    values = [getattr(row, column, None) for column in _KEYS.get(table, ())]
    if values and all(isinstance(v, str) for v in values):
        return "/".join(values)
    return f"row {row.Index}"


def _flag_value(ctx: _Context, kind: str, table: str, column: str, bad: pd.Series, allowed: str) -> None:
    message = f"{column}={{}} not in {allowed}"
    _flag(ctx, kind, table, ctx.frames[table], bad, lambda row: message.format(_show(getattr(row, column))))


def _show(value: Any) -> str:
    if pd.isna(value):
        return "null"
    # :g prints a nullable integer column's 6.0 as the 6 that was stored, and float32 0.1 as 0.1
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _describe(exc: BaseException) -> str:
    """One line per problem: pyarrow messages can span many lines (a whole schema)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' * (len(text) > 300)}"


def _check_not_null(ctx: _Context, table: str) -> None:
    for column in _NOT_NULL[table]:
        if ctx.usable(f"{table}.{column} not null", [(table, column)]):
            frame = ctx.frames[table]
            _flag(ctx, "null_value", table, frame, frame[column].isna(), lambda _, c=column: f"{c} is null")


def _check_unique(ctx: _Context, table: str) -> None:
    columns = list(_KEYS[table])
    label = "/".join(columns)
    if not ctx.usable(f"unique {table}.{label}", [(table, c) for c in columns]):
        return
    sizes = ctx.frames[table].dropna(subset=columns).groupby(columns).size()
    for key, count in sizes[sizes > 1].items():
        text = "/".join(key) if isinstance(key, tuple) else key
        ctx.add("duplicate_id", table, text, f"{label} {text!r} occurs {count} times")


def _isin(values: pd.Series, allowed: pd.Series) -> pd.Series:
    """Series.isin through pyarrow: pandas converts arrow-backed strings to Python objects (20x slower)."""
    found = pc.is_in(pa.array(values), value_set=pa.array(allowed)).fill_null(False)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=values.index)


def _check_refs(ctx: _Context, table: str, column: str, target: str, target_column: str) -> None:
    check = f"{table}.{column} refers to a known {target_column}"
    if not ctx.usable(check, [(table, column), (target, target_column)]):
        return
    frame = ctx.frames[table]
    values = frame[column]
    unknown = values.notna() & ~_isin(values, ctx.frames[target][target_column])
    message = f"{column} {{!r}} is not in {target}.parquet"
    _flag(ctx, "unknown_id", table, frame, unknown, lambda row: message.format(getattr(row, column)))


# ---- table checks ----------------------------------------------------------------------------------------


def _check_card(ctx: _Context, card: dict | None) -> None:
    if card is None:
        ctx.skip("card counts, table hashes and format version", "card")
        return
    version = str(card.get("format_version"))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        message = f"format_version {version}, this validator reads {FORMAT_VERSION}"
        ctx.add("card_mismatch", "card", "format_version", message)
    counts, hashes = card.get("counts"), card.get("table_sha256")
    for section, value in (("counts", counts), ("table_sha256", hashes)):
        if not isinstance(value, dict):
            ctx.add("card_mismatch", "card", section, f"card.json has no {section} object")
    for name in TABLES:
        if isinstance(counts, dict) and not ctx.skip(f"card count of {name}", name):
            _compare_card(ctx, f"counts.{name}", counts.get(name), ctx.rows[name])
        if isinstance(hashes, dict) and not ctx.skip(f"card table_sha256 of {name}", name):
            _compare_card(ctx, f"table_sha256.{name}", hashes.get(name), sha256_file(Layout(ctx.root).table(name)))


def _compare_card(ctx: _Context, key: str, claimed: Any, actual: Any) -> None:
    if claimed != actual:
        ctx.add("card_mismatch", "card", key, f"card.json says {_show(claimed)}, the file has {actual!r}")


def _check_prompts(ctx: _Context) -> None:
    _check_not_null(ctx, "prompts")
    _check_unique(ctx, "prompts")
    frame = ctx.frames.get("prompts")
    if ctx.usable("prompts.text not blank", [("prompts", "text")]):
        blank = frame["text"].isna() | frame["text"].str.strip().eq("")
        _flag(ctx, "empty_text", "prompts", frame, blank, lambda row: f"text is {_show(row.text)}")
    if ctx.usable("prompts.fold range", [("prompts", "fold")]):
        bad = ~frame["fold"].isin(range(N_FOLDS))
        _flag_value(ctx, "bad_fold", "prompts", "fold", bad, f"0..{N_FOLDS - 1}")
    if ctx.usable("prompts.split values", [("prompts", "split")]):
        _flag_value(ctx, "bad_split", "prompts", "split", ~frame["split"].isin(SPLITS), ", ".join(SPLITS))
    if ctx.usable("prompts.split agrees with fold", [("prompts", "fold"), ("prompts", "split")]):
        expected = frame["fold"].map(_SPLIT_OF_FOLD)
        disagree = expected.notna() & frame["split"].isin(SPLITS) & (frame["split"] != expected)
        message = "split {!r} but fold {} is {!r}"
        _flag(
            ctx,
            "bad_split",
            "prompts",
            frame.assign(expected=expected),
            disagree,
            lambda row: message.format(row.split, _show(row.fold), row.expected),
        )


def _check_images(ctx: _Context) -> None:
    _check_not_null(ctx, "images")
    _check_unique(ctx, "images")
    _check_refs(ctx, "images", "prompt_id", "prompts", "prompt_id")
    frame = ctx.frames.get("images")
    if ctx.usable("images.sha256 format", [("images", "sha256")]):
        sha = frame["sha256"]
        bad = sha.notna() & ~sha.fillna("").str.fullmatch(_HEX64)
        _flag(
            ctx,
            "bad_hash",
            "images",
            frame,
            bad,
            lambda row: f"sha256 {row.sha256!r} is not 64 lowercase hex",
        )
    if ctx.usable("images.path layout", [("images", "path"), ("images", "sha256")]):
        issues = pd.Series([_path_issue(p, s) for p, s in zip(frame["path"], frame["sha256"], strict=True)])
        _flag(ctx, "bad_path", "images", frame.assign(issue=issues), issues.notna(), lambda row: row.issue)


def _unsafe_path(path: str) -> bool:
    # string tests, not PurePosixPath: this runs once per image (500k)
    return path.startswith("/") or "\\" in path or ".." in path.split("/")


def _path_issue(path: Any, sha: Any) -> str | None:
    if not isinstance(path, str):
        return None
    if _unsafe_path(path):
        return f"path {path!r} is not a relative path inside the dataset"
    if isinstance(sha, str):
        expected = image_relpath(sha, posixpath.splitext(path)[1])
        if path != expected:
            return f"path {path!r} is not the content address {expected!r}"
    return None


def _check_ratings(ctx: _Context) -> None:
    _check_not_null(ctx, "ratings")
    _check_unique(ctx, "ratings")
    _check_refs(ctx, "ratings", "image_id", "images", "image_id")
    frame = ctx.frames.get("ratings")
    for column in COMPONENTS:
        if ctx.usable(f"ratings.{column} range", [("ratings", column)]):
            values = frame[column]
            bad = values.notna() & ~values.isin(range(LIKERT_MIN, LIKERT_MAX + 1))
            _flag_value(ctx, "rating_out_of_range", "ratings", column, bad, f"{LIKERT_MIN}..{LIKERT_MAX}")
    if ctx.usable("ratings with no component rated", [("ratings", c) for c in COMPONENTS]):
        empty = frame[list(COMPONENTS)].isna().all(axis=1)
        _flag(ctx, "empty_rating", "ratings", frame, empty, lambda _: "all four components are null")


def _check_pairs(ctx: _Context) -> None:
    _check_not_null(ctx, "pairs")
    _check_refs(ctx, "pairs", "prompt_id", "prompts", "prompt_id")
    for side in ("image_a", "image_b"):
        _check_refs(ctx, "pairs", side, "images", "image_id")
    frame = ctx.frames.get("pairs")
    if ctx.usable("pairs.winner values", [("pairs", "winner")]):
        _flag_value(ctx, "bad_winner", "pairs", "winner", ~frame["winner"].isin(WINNERS), ", ".join(WINNERS))
    if ctx.usable("pairs of an image with itself", [("pairs", "image_a"), ("pairs", "image_b")]):
        same = frame["image_a"].notna() & (frame["image_a"] == frame["image_b"])
        _flag(
            ctx,
            "self_pair",
            "pairs",
            frame,
            same,
            lambda row: f"image_a and image_b are both {row.image_a!r}",
        )
    _check_pair_prompts(ctx)


def _check_pair_prompts(ctx: _Context) -> None:
    needs = [("pairs", c) for c in ("prompt_id", "image_a", "image_b")] + [
        ("images", c) for c in ("image_id", "prompt_id")
    ]
    if not ctx.usable("pair images belong to the pair's prompt", needs):
        return
    images = ctx.frames["images"].dropna(subset=["image_id"]).drop_duplicates("image_id")
    owner = images.set_index("image_id")["prompt_id"]
    pairs = ctx.frames["pairs"]
    owners = pairs.assign(owner_a=pairs["image_a"].map(owner), owner_b=pairs["image_b"].map(owner))
    foreign = [
        owners[o].notna() & owners["prompt_id"].notna() & (owners[o] != owners["prompt_id"])
        for o in ("owner_a", "owner_b")
    ]
    _flag(ctx, "pair_across_prompts", "pairs", owners, foreign[0] | foreign[1], _across_message)


def _across_message(row: Any) -> str:
    sides = [(row.image_a, row.owner_a), (row.image_b, row.owner_b)]
    wrong = ", ".join(f"{image!r} belongs to {owner!r}" for image, owner in sides if owner != row.prompt_id)
    return f"pair is for prompt {row.prompt_id!r} but {wrong}"


def _check_gold(ctx: _Context) -> None:
    layout = Layout(ctx.root)
    for name, schema in GOLD_TABLES.items():
        table = f"gold/{name}"
        _load_table(ctx, table, layout.gold_table(name), schema)
        _check_not_null(ctx, table)
        _check_unique(ctx, table)
    _check_refs(ctx, "gold/gold", "image_id", "images", "image_id")
    _check_refs(ctx, "gold/prompts", "prompt_id", "prompts", "prompt_id")
    for column in _GOLD_SCORES:
        if ctx.usable(f"gold/gold.{column} range", [("gold/gold", column)]):
            outside = ~ctx.frames["gold/gold"][column].between(0.0, 1.0)  # NaN is outside too
            _flag_value(ctx, "gold_out_of_range", "gold/gold", column, outside, "[0, 1]")


# ---- image files -----------------------------------------------------------------------------------------


def _check_image_files(ctx: _Context, workers: int, progress: bool) -> None:
    needs = [("images", c) for c in ("path", "sha256", "width", "height")]
    if not ctx.usable("image files (existence, decoding, size, sha256)", needs):
        return
    frame = ctx.frames["images"]
    tasks = [
        (_row_key("images", row), row.path, _text(row.sha256), _int(row.width), _int(row.height))
        for row in frame.itertuples()
        if isinstance(row.path, str) and not _unsafe_path(row.path)
    ]
    ctx.problems.extend(_run_file_checks(str(ctx.root), tasks, workers, progress))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _run_file_checks(root: str, tasks: list[_FileTask], workers: int, progress: bool) -> list[Problem]:
    size = max(_MIN_CHUNK, min(_MAX_CHUNK, math.ceil(len(tasks) / (workers * 4))))
    chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]
    results: list[list[Problem]] = [[] for _ in chunks]
    with tqdm(total=len(tasks), unit="img", desc="image files", file=sys.stderr, disable=not progress) as bar:
        if min(workers, len(chunks)) <= 1:
            for index, chunk in enumerate(chunks):
                results[index] = _check_files(root, chunk)
                bar.update(len(chunk))
            return [p for chunk in results for p in chunk]
        try:
            with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
                futures = {pool.submit(_check_files, root, chunk): i for i, chunk in enumerate(chunks)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(len(chunks[futures[future]]))
        except BrokenProcessPool as exc:
            crash = Problem("check_failed", "images", "image files", f"a worker process died ({exc}); results partial")
            return [*(p for chunk in results for p in chunk), crash]
    return [p for chunk in results for p in chunk]


def _check_files(root: str, tasks: list[_FileTask]) -> list[Problem]:
    base = Path(root).resolve()
    return [problem for task in tasks for problem in _check_file(base, *task)]


def _check_file(
    base: Path, key: str, rel: str, sha: str | None, width: int | None, height: int | None
) -> list[Problem]:
    def problem(kind: str, message: str) -> list[Problem]:
        return [Problem(kind, "images", key, message)]

    path = base / rel
    try:
        if not path.resolve().is_relative_to(base):
            return problem("bad_path", f"{rel} resolves outside the dataset")
        if not path.exists():
            return problem("missing_image", f"{rel} does not exist")
        if not path.is_file():
            return problem("unreadable_image", f"{rel} is not a regular file")
        data = path.read_bytes()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on Python < 3.13
        return problem("unreadable_image", f"cannot read {rel}: {_describe(exc)}")
    found = []
    digest = sha256_bytes(data)
    if sha is not None and digest != sha:
        found += problem("hash_mismatch", f"{rel} has sha256 {digest}, the table says {sha}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel: verify() alone misses truncated data
            decoded = image.size
    except Exception as exc:  # Pillow raises many types for bad data; each is a finding
        return [*found, *problem("unreadable_image", f"{rel} does not decode: {_describe(exc)}")]
    if width is not None and height is not None and decoded != (width, height):
        found += problem("size_mismatch", f"{rel} is {decoded[0]}x{decoded[1]}, the table says {width}x{height}")
    return found


# ---- command line ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", type=Path, help="dataset directory")
    parser.add_argument(
        "--max-examples", type=int, default=20, metavar="N", help="examples shown per kind (default 20)"
    )
    parser.add_argument(
        "--no-image-check", action="store_true", help="do not open, decode or hash the image files (fast)"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="processes for image checks (default: all CPUs)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON to PATH")


def run(args: argparse.Namespace) -> int:
    root: Path = args.dir
    if not root.is_dir():
        print(f"error: dataset directory {root} does not exist", file=sys.stderr)
        return 2
    check_images = not args.no_image_check
    problems = validate_dataset(root, check_images=check_images, workers=args.workers, progress=True)
    print(format_report(root, problems, max_examples=args.max_examples, images_checked=check_images))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report_json(problems, images_checked=check_images), indent=2) + "\n")
    return 1 if problems else 0


def format_report(root: Path, problems: list[Problem], *, max_examples: int, images_checked: bool) -> str:
    counts = _counts(problems)
    lines = [f"dataset: {root}"]
    if not images_checked:
        lines.append("NOTE: image files NOT checked (--no-image-check): existence, decoding, size, sha256 unverified")
    for kind, count in counts.items():
        lines.append(f"{kind}: {count}  ({KINDS[kind]})")
        examples = [p for p in problems if p.kind == kind][:max_examples]
        lines += [f"  {p.table} {p.key}: {p.message}" for p in examples]
        if count > len(examples):
            lines.append(f"  ... and {count - len(examples)} more")
    lines.append(_verdict(counts, images_checked))
    return "\n".join(lines)


def _verdict(counts: dict[str, int], images_checked: bool) -> str:
    caveat = "" if images_checked else " (image files not checked)"
    if not counts:
        return f"OK: no problems found{caveat}"
    total = sum(counts.values())
    return f"FAIL: {total} problem{'s' * (total != 1)} of {len(counts)} kind{'s' * (len(counts) != 1)}{caveat}"


def _counts(problems: list[Problem]) -> dict[str, int]:
    found = Counter(p.kind for p in problems)
    return {kind: found[kind] for kind in KINDS if kind in found}


def report_json(problems: list[Problem], *, images_checked: bool) -> dict:
    return {
        "ok": not problems,
        "images_checked": images_checked,
        "counts": _counts(problems),
        "problems": [dataclasses.asdict(p) for p in problems],
    }
