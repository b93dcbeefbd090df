"""`rewarddance data validate`: a valid dataset is clean; each kind of damage is reported by its kind code."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from rewarddance_trainer.data import validate
from rewarddance_trainer.data.schema import (
    GOLD,
    GOLD_PROMPTS,
    TABLES,
    Layout,
    store_image,
    to_table,
    write_dataset,
    write_table,
)

Rows = dict[str, list[dict]]
RATERS = ("r0", "r1", "r2")
FOLD_SPLITS = ((0, "train"), (3, "val"), (4, "test"))


def png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def build_rows(root: Path) -> Rows:
    """3 prompts x 3 images, 3 raters per image (one leaves novelty unrated), 3 pairs per prompt, gold."""
    rows: Rows = {name: [] for name in ("prompts", "images", "ratings", "pairs", "gold", "gold_prompts")}
    for p, (fold, split) in enumerate(FOLD_SPLITS):
        pid = f"p{p}"
        text = f"a small red square number {p}"
        rows["prompts"].append(
            dict(prompt_id=pid, text=text, style="flat" if p else None, fold=fold, split=split, source="test")
        )
        rows["gold_prompts"].append(dict(prompt_id=pid, spec="{}"))
        for i in range(3):
            iid, width = f"{pid}-i{i}", 8 + i
            rel, sha = store_image(root, png((80 * p, 80 * i, 40), (width, 8)), ".png")
            rows["images"].append(
                dict(image_id=iid, prompt_id=pid, path=rel, width=width, height=8, sha256=sha)
                | dict(generator="test", seed=10 * p + i, settings="{}")
            )
            for r, rater in enumerate(RATERS):
                scores = dict(fidelity=1 + (i + r) % 5, style=5, composition=2, novelty=None if r == 2 else 3)
                rows["ratings"].append(dict(image_id=iid, rater_id=rater) | scores)
            gold = dict(fidelity=0.5, style=1.0, composition=0.0, novelty=0.25, utility=0.1 * i)
            rows["gold"].append(dict(image_id=iid, scene="{}") | gold)
        for a, b, winner in ((0, 1, "a"), (1, 2, "tie"), (0, 2, "b")):
            rows["pairs"].append(dict(prompt_id=pid, image_a=f"{pid}-i{a}", image_b=f"{pid}-i{b}", winner=winner))
            rows["pairs"][-1]["rater_id"] = RATERS[a]
    return rows


def write(root: Path, rows: Rows) -> None:
    """Write everything, card included, so that only the damage a test makes is wrong."""
    write_dataset(root, {name: to_table(rows[name], schema) for name, schema in TABLES.items()}, {"license": "test"})
    write_table(to_table(rows["gold"], GOLD), Layout(root).gold_table("gold"))
    write_table(to_table(rows["gold_prompts"], GOLD_PROMPTS), Layout(root).gold_table("prompts"))


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Rows]:
    root = tmp_path / "ds"
    rows = build_rows(root)
    write(root, rows)
    return root, rows


def run_validate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    return validate.run(parser.parse_args(argv))


def cli_main() -> Callable[[list[str]], int]:
    from rewarddance import cli

    return cli.main


def found(root: Path, **kwargs) -> set[tuple[str, str]]:
    return {(p.kind, p.key) for p in validate.validate_dataset(root, workers=1, **kwargs)}


def rating_key(row: dict) -> str:
    return f"{row['image_id']}/{row['rater_id']}"


def rewrite_table(root: Path, name: str, table: pa.Table) -> None:
    """Replace a table behind the card's back (the card then also disagrees)."""
    pq.write_table(table, Layout(root).table(name))


# ---- damage: each mutates the written dataset and returns the (kind, key) it must produce ------------------


def delete_image(root: Path, rows: Rows) -> tuple[str, str]:
    (root / rows["images"][0]["path"]).unlink()
    return "missing_image", "p0-i0"


def truncate_image(root: Path, rows: Rows) -> tuple[str, str]:
    path = root / rows["images"][1]["path"]
    path.write_bytes(path.read_bytes()[:-30])
    return "unreadable_image", "p0-i1"


def garbage_image(root: Path, rows: Rows) -> tuple[str, str]:
    rel, sha = store_image(root, b"not an image at all", ".png")
    rows["images"][2] |= dict(path=rel, sha256=sha)
    write(root, rows)
    return "unreadable_image", "p0-i2"


def wrong_size(root: Path, rows: Rows) -> tuple[str, str]:
    rows["images"][3]["width"] = 64
    write(root, rows)
    return "size_mismatch", "p1-i0"


def wrong_sha(root: Path, rows: Rows) -> tuple[str, str]:
    rows["images"][4]["sha256"] = "0" * 64
    write(root, rows)
    return "hash_mismatch", "p1-i1"


def escaping_path(root: Path, rows: Rows) -> tuple[str, str]:
    rows["images"][0]["path"] = "../elsewhere.png"
    write(root, rows)
    return "bad_path", "p0-i0"


def rating(component: str, value: int | None) -> Callable[[Path, Rows], tuple[str, str]]:
    def damage(root: Path, rows: Rows) -> tuple[str, str]:
        rows["ratings"][5][component] = value
        write(root, rows)
        return "rating_out_of_range", rating_key(rows["ratings"][5])

    return damage


def unrated(root: Path, rows: Rows) -> tuple[str, str]:
    rows["ratings"][0] |= dict(fidelity=None, style=None, composition=None, novelty=None)
    write(root, rows)
    return "empty_rating", rating_key(rows["ratings"][0])


def rating_of_unknown_image(root: Path, rows: Rows) -> tuple[str, str]:
    rows["ratings"][0]["image_id"] = "ghost"
    write(root, rows)
    return "unknown_id", "ghost/r0"


def duplicate_rating(root: Path, rows: Rows) -> tuple[str, str]:
    rows["ratings"].append(dict(rows["ratings"][0]))
    write(root, rows)
    return "duplicate_id", rating_key(rows["ratings"][0])


def null_rater(root: Path, rows: Rows) -> tuple[str, str]:
    rows["ratings"][4]["rater_id"] = None
    write(root, rows)
    return "null_value", "row 4"


def duplicate_image_id(root: Path, rows: Rows) -> tuple[str, str]:
    rows["images"][1]["image_id"] = "p0-i0"
    write(root, rows)
    return "duplicate_id", "p0-i0"


def image_of_unknown_prompt(root: Path, rows: Rows) -> tuple[str, str]:
    rows["images"][0]["prompt_id"] = "nowhere"
    write(root, rows)
    return "unknown_id", "p0-i0"


def pair_across_prompts(root: Path, rows: Rows) -> tuple[str, str]:
    rows["pairs"][0]["image_b"] = "p2-i2"
    write(root, rows)
    return "pair_across_prompts", "row 0"


def self_pair(root: Path, rows: Rows) -> tuple[str, str]:
    rows["pairs"][4]["image_b"] = rows["pairs"][4]["image_a"]
    write(root, rows)
    return "self_pair", "row 4"


def bad_winner(root: Path, rows: Rows) -> tuple[str, str]:
    rows["pairs"][2]["winner"] = "both"
    write(root, rows)
    return "bad_winner", "row 2"


def pair_of_unknown_image(root: Path, rows: Rows) -> tuple[str, str]:
    rows["pairs"][1]["image_a"] = "ghost"
    write(root, rows)
    return "unknown_id", "row 1"


def prompt_field(field: str, value: object, kind: str) -> Callable[[Path, Rows], tuple[str, str]]:
    def damage(root: Path, rows: Rows) -> tuple[str, str]:
        rows["prompts"][1][field] = value
        write(root, rows)
        return kind, "p1"

    return damage


def card_counts_wrong(root: Path, rows: Rows) -> tuple[str, str]:
    card = json.loads(Layout(root).card.read_text())
    card["counts"]["ratings"] += 1
    Layout(root).card.write_text(json.dumps(card))
    return "card_mismatch", "counts.ratings"


def table_changed_behind_card(root: Path, rows: Rows) -> tuple[str, str]:
    rewrite_table(root, "pairs", to_table(rows["pairs"], TABLES["pairs"]).slice(0, 8))
    return "card_mismatch", "table_sha256.pairs"


def garbage_card(root: Path, rows: Rows) -> tuple[str, str]:
    Layout(root).card.write_text("{ this is not json")
    return "unreadable_card", "card.json"


def garbage_table(root: Path, rows: Rows) -> tuple[str, str]:
    Layout(root).table("ratings").write_bytes(b"PAR1 garbage, not parquet")
    return "unreadable_table", "ratings.parquet"


def truncated_table(root: Path, rows: Rows) -> tuple[str, str]:
    path = Layout(root).table("images")
    path.write_bytes(path.read_bytes()[:200])
    return "unreadable_table", "images.parquet"


def missing_table(root: Path, rows: Rows) -> tuple[str, str]:
    Layout(root).table("pairs").unlink()
    return "missing_file", "pairs.parquet"


def missing_column(root: Path, rows: Rows) -> tuple[str, str]:
    rewrite_table(root, "ratings", to_table(rows["ratings"], TABLES["ratings"]).drop_columns(["novelty"]))
    return "missing_column", "novelty"


def wrong_type(root: Path, rows: Rows) -> tuple[str, str]:
    table = to_table(rows["ratings"], TABLES["ratings"])
    index = table.schema.get_field_index("fidelity")
    rewrite_table(root, "ratings", table.set_column(index, "fidelity", table["fidelity"].cast(pa.float64())))
    return "bad_type", "fidelity"


def gold_out_of_range(root: Path, rows: Rows) -> tuple[str, str]:
    rows["gold"][2]["utility"] = 1.5
    write(root, rows)
    return "gold_out_of_range", "p0-i2"


def gold_of_unknown_image(root: Path, rows: Rows) -> tuple[str, str]:
    rows["gold"][0]["image_id"] = "ghost"
    write(root, rows)
    return "unknown_id", "ghost"


DAMAGE = [
    delete_image,
    truncate_image,
    garbage_image,
    wrong_size,
    wrong_sha,
    escaping_path,
    pytest.param(rating("fidelity", 0), id="rating_0"),
    pytest.param(rating("novelty", 6), id="rating_6"),
    unrated,
    rating_of_unknown_image,
    duplicate_rating,
    null_rater,
    duplicate_image_id,
    image_of_unknown_prompt,
    pair_across_prompts,
    self_pair,
    bad_winner,
    pair_of_unknown_image,
    pytest.param(prompt_field("fold", 7, "bad_fold"), id="bad_fold"),
    pytest.param(prompt_field("split", "dev", "bad_split"), id="bad_split"),
    pytest.param(prompt_field("split", "train", "bad_split"), id="split_disagrees_with_fold"),
    pytest.param(prompt_field("text", "  ", "empty_text"), id="empty_text"),
    card_counts_wrong,
    table_changed_behind_card,
    garbage_card,
    garbage_table,
    truncated_table,
    missing_table,
    missing_column,
    wrong_type,
    gold_out_of_range,
    gold_of_unknown_image,
]


def test_valid_dataset_is_clean(dataset: tuple[Path, Rows], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = dataset
    assert validate.validate_dataset(root, workers=1) == []
    assert run_validate([str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "OK: no problems found"


def test_gold_is_optional(dataset: tuple[Path, Rows]) -> None:
    root, _ = dataset
    shutil.rmtree(root / "gold")
    assert validate.validate_dataset(root, workers=1) == []


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_reported(
    dataset: tuple[Path, Rows],
    damage: Callable[[Path, Rows], tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, rows = dataset
    kind, key = damage(root, rows)
    assert (kind, key) in found(root)
    assert run_validate([str(root), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert f"\n{kind}: " in out and out.splitlines()[-1].startswith("FAIL: ")
    assert "Traceback" not in out


def test_every_problem_is_listed_not_just_the_first(dataset: tuple[Path, Rows]) -> None:
    root, rows = dataset
    expected = {delete_image(root, rows), bad_winner(root, rows), rating("style", 9)(root, rows)}
    assert expected <= found(root)


def test_unreadable_table_names_the_checks_it_prevented(dataset: tuple[Path, Rows]) -> None:
    root, rows = dataset
    garbage_table(root, rows)
    (problem,) = [p for p in validate.validate_dataset(root, workers=1) if p.kind == "unreadable_table"]
    assert "not checked because of this" in problem.message
    assert "ratings.fidelity range" in problem.message and "card count of ratings" in problem.message


def test_no_image_check_skips_files_and_says_so(dataset: tuple[Path, Rows], capsys: pytest.CaptureFixture[str]) -> None:
    root, rows = dataset
    delete_image(root, rows)
    assert found(root, check_images=False) == set()
    assert run_validate([str(root), "--no-image-check"]) == 0
    out = capsys.readouterr().out
    assert "image files NOT checked" in out
    assert out.splitlines()[-1] == "OK: no problems found (image files not checked)"


def test_parallel_image_check_matches_serial(dataset: tuple[Path, Rows], monkeypatch: pytest.MonkeyPatch) -> None:
    root, rows = dataset
    delete_image(root, rows)
    truncate_image(root, rows)
    serial = validate.validate_dataset(root, workers=1)
    monkeypatch.setattr(validate, "_MIN_CHUNK", 1)  # 9 images -> 9 chunks over 2 processes
    assert validate.validate_dataset(root, workers=2) == serial
    assert {p.key for p in serial if p.table == "images"} == {"p0-i0", "p0-i1"}


def test_max_examples_and_json(dataset: tuple[Path, Rows], capsys: pytest.CaptureFixture[str]) -> None:
    root, rows = dataset
    for row in rows["ratings"]:
        row["composition"] = 7
    write(root, rows)
    report = root.parent / "report.json"
    assert run_validate([str(root), "--max-examples", "2", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "rating_out_of_range: 27 " in out and "  ... and 25 more" in out
    data = json.loads(report.read_text())
    assert data["ok"] is False and data["counts"] == {"rating_out_of_range": 27}
    assert data["problems"][0] == {
        "kind": "rating_out_of_range",
        "table": "ratings",
        "key": "p0-i0/r0",
        "message": "composition=7 not in 1..5",
    }


def test_missing_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_through_the_rewarddance_cli(dataset: tuple[Path, Rows], capsys: pytest.CaptureFixture[str]) -> None:
    main = cli_main()
    root, rows = dataset
    assert main(["data", "validate", str(root)]) == 0
    pair_across_prompts(root, rows)
    garbage_table(root, rows)
    assert main(["data", "validate", str(root)]) == 1
    out = capsys.readouterr().out
    assert "pair_across_prompts: 1" in out and "unreadable_table: 1" in out and "Traceback" not in out
    assert main(["data", "validate", str(root.parent / "nope")]) == 2
