"""Importers on small fixtures in each public format: values, skips, unmapped fields and CLI errors."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from rewarddance_trainer.data import schema
from rewarddance_trainer.data.importers import cli
from rewarddance_trainer.data.importers.common import ImportInputError, split_for_fold
from rewarddance_trainer.data.importers.hpdv2 import import_hpdv2
from rewarddance_trainer.data.importers.imagereward import import_imagereward, rescale_rating
from rewarddance_trainer.data.importers.pickapic import import_pickapic
from rewarddance_trainer.data.validate import validate_dataset


def encode(color: tuple[int, int, int], size: tuple[int, int] = (8, 6), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def save_image(root: Path, rel: str, color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(color, size))
    return rel


def read(out: Path) -> tuple[dict[str, list[dict]], dict]:
    layout = schema.Layout(out)
    tables = {name: pq.read_table(layout.table(name)).to_pylist() for name in schema.TABLES}
    return tables, json.loads(layout.card.read_text())


def check_dataset(out: Path) -> None:
    problems = validate_dataset(out)
    assert problems == [], problems


def pickapic_row(caption: str, jpg_0: bytes, jpg_1: bytes, labels: tuple[float, float], **extra) -> dict:
    return {
        "caption": caption,
        "jpg_0": jpg_0,
        "jpg_1": jpg_1,
        "label_0": labels[0],
        "label_1": labels[1],
        "image_0_uid": f"uid-{len(jpg_0)}-{jpg_0[-8:].hex()}",
        "image_1_uid": f"uid-{len(jpg_1)}-{jpg_1[-8:].hex()}",
        "user_id": 7,
        "ranking_id": 100,
        "model_0": "sdxl",
        "model_1": "sd15",
        "best_image_uid": "",
        "are_different": True,
        "has_label": True,
        "num_example_per_prompt": 1,
        "created_at": "2023-05-01",
        **extra,
    }


@pytest.fixture
def pickapic_src(tmp_path: Path) -> Path:
    red, green, blue, white, black = (
        encode(c, (16, 12), "JPEG") for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)]
    )
    shards = tmp_path / "pickapic"
    shards.mkdir()
    first = [pickapic_row("a red cat", red, green, (1, 0)), pickapic_row("a red cat", red, blue, (0.5, 0.5))]
    second = [
        pickapic_row("a blue dog", white, black, (0, 1), user_id=9),
        pickapic_row("an unlabeled prompt", white, green, (0, 0), has_label=False),
    ]
    pq.write_table(pa.Table.from_pylist(first), shards / "train-000.parquet")
    pq.write_table(pa.Table.from_pylist(second), shards / "train-001.parquet")
    return shards


def test_pickapic_maps_comparisons_to_pairs(pickapic_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = import_pickapic(pickapic_src, out)
    tables, card = read(out)

    assert report.counts == {"prompts": 2, "images": 5, "ratings": 0, "pairs": 3}
    assert sorted(row["text"] for row in tables["prompts"]) == ["a blue dog", "a red cat"]
    assert [row["winner"] for row in tables["pairs"]] == ["a", "tie", "b"]
    assert [row["rater_id"] for row in tables["pairs"]] == ["pickapic-user-7"] * 2 + ["pickapic-user-9"]
    # The red image appears in two comparisons and is stored once, as the same id in both pairs.
    assert tables["pairs"][0]["image_a"] == tables["pairs"][1]["image_a"]
    assert len(list((out / "images").rglob("*.jpg"))) == 5
    image = tables["images"][0]
    assert (image["width"], image["height"], image["generator"]) == (16, 12, "sdxl")
    assert image["image_id"] == f"pickapic-{image['sha256'][:16]}"
    assert json.loads(image["settings"])["uid"].startswith("uid-")

    assert card["skipped"]["counts"] == {"has_label is false (no preference recorded)": 1}
    assert card["skipped"]["examples"]["has_label is false (no preference recorded)"] == ["train-001.parquet#1"]
    assert "ratings" in card["unmapped"]["schema_fields"]
    assert set(card["unmapped"]["source_fields"]) == {
        "best_image_uid",
        "are_different",
        "ranking_id",
        "num_example_per_prompt",
        "created_at",
    }
    assert card["source"] == {"format": "pickapic", "path": str(pickapic_src), "records_read": 4}
    assert card["creation_command"].startswith("rewarddance data import pickapic ")
    check_dataset(out)


def test_folds_group_by_prompt_text(pickapic_src: Path, tmp_path: Path) -> None:
    assert [split_for_fold(fold) for fold in range(5)] == ["train", "train", "train", "val", "test"]
    import_pickapic(pickapic_src, tmp_path / "out")
    tables, _ = read(tmp_path / "out")
    for row in tables["prompts"]:
        digest = hashlib.sha256(row["text"].encode()).hexdigest()
        assert (row["fold"], row["split"], row["source"]) == (
            int(digest[:8], 16) % 5,
            split_for_fold(int(digest[:8], 16) % 5),
            "pickapic",
        )


def test_pickapic_limit_reads_first_records(pickapic_src: Path, tmp_path: Path) -> None:
    report = import_pickapic(pickapic_src, tmp_path / "out", limit=1)
    assert (report.records_read, report.counts["pairs"], report.counts["images"]) == (1, 1, 2)


def write_hpdv2(root: Path) -> tuple[Path, Path]:
    a = save_image(root, "train/a.png", (10, 0, 0))
    b = save_image(root, "train/b.png", (20, 0, 0))
    c = save_image(root, "train/c.png", (30, 0, 0))
    train = [
        {"prompt": "a castle", "image_path": [a, b], "human_preference": [1, 0], "user_hash": "u1"},
        {"prompt": "a castle", "file_path": [b, c], "human_preference": [0, 1], "user_hash": "u2"},
        {"prompt": "a boat", "image_path": [a, "train/missing.png"], "human_preference": [1, 0]},
        {"prompt": "a draw?", "image_path": [a, b], "human_preference": [1, 1]},
    ]
    x = save_image(root, "test/x.png", (0, 10, 0), (5, 5))
    y = save_image(root, "test/y.png", (0, 20, 0), (5, 5))
    z = save_image(root, "test/z.png", (0, 30, 0), (5, 5))
    test = [{"prompt": "a lake", "image_path": [x, y, z], "rank": [2, 1, 2], "raw_annotations": [[2, 1, 3]]}]
    (root / "train.json").write_text(json.dumps(train))
    (root / "test.json").write_text(json.dumps(test))
    return root / "train.json", root / "test.json"


def test_hpdv2_train_preferences_and_missing_file(tmp_path: Path) -> None:
    train, _ = write_hpdv2(tmp_path / "hpdv2")
    out = tmp_path / "out"
    report = import_hpdv2(train, out)
    tables, card = read(out)

    # "a boat" lost its second image, so its pair is skipped; its first image is still imported.
    assert report.counts == {"prompts": 2, "images": 4, "ratings": 0, "pairs": 2}
    texts = {row["prompt_id"]: row["text"] for row in tables["prompts"]}
    ids = {
        (texts[row["prompt_id"]], json.loads(row["settings"])["source_path"]): row["image_id"]
        for row in tables["images"]
    }
    a, b, c = (ids[("a castle", f"train/{name}.png")] for name in "abc")
    pairs = [(p["image_a"], p["image_b"], p["winner"], p["rater_id"]) for p in tables["pairs"]]
    assert pairs == [(a, b, "a", "hpdv2-u1"), (b, c, "b", "hpdv2-u2")]
    assert ("a boat", "train/a.png") in ids
    assert card["skipped"]["counts"] == {
        "image file missing": 1,
        "pair references an image that was skipped": 1,
        "human_preference is not [1, 0] or [0, 1]": 1,
    }
    assert card["skipped"]["examples"]["image file missing"] == ["train/missing.png"]
    check_dataset(out)


def test_hpdv2_test_ranking_becomes_all_pairs(tmp_path: Path) -> None:
    _, test = write_hpdv2(tmp_path / "hpdv2")
    out = tmp_path / "out"
    import_hpdv2(test, out)
    tables, card = read(out)

    ids = {json.loads(row["settings"])["source_path"]: row["image_id"] for row in tables["images"]}
    x, y, z = ids["test/x.png"], ids["test/y.png"], ids["test/z.png"]
    pairs = {(p["image_a"], p["image_b"]): (p["winner"], p["rater_id"]) for p in tables["pairs"]}
    assert pairs == {(x, y): ("b", "hpdv2-rank"), (x, z): ("tie", "hpdv2-rank"), (y, z): ("a", "hpdv2-rank")}
    assert "raw_annotations" in card["unmapped"]["source_fields"]
    assert tables["images"][0]["width"] == 5
    check_dataset(out)


def write_imagereward(root: Path, records_extra: dict | None = None) -> Path:
    def record(prompt_id: str, prompt: str, path: str, rank: int, alignment: int) -> dict:
        return {
            "image_path": path,
            "prompt_id": prompt_id,
            "prompt": prompt,
            "classification": "Arts",
            "image_amount_in_total": 3,
            "rank": rank,
            "overall_rating": 5,
            "image_text_alignment_rating": alignment,
            "fidelity_rating": 6,
            **(records_extra or {}),
        }

    images = [save_image(root, f"images/{i}.png", (0, 0, 40 * i)) for i in range(5)]
    (root / "images" / "dup.png").write_bytes((root / images[0]).read_bytes())
    records = [
        record("p1", "a fox in snow", images[0], 1, 7),
        record("p1", "a fox in snow", images[1], 2, 4),
        record("p1", "a fox in snow", images[2], 3, 1),
        record("p2", "a red bicycle", images[3], 1, 2),
        record("p2", "a red bicycle", images[4], 1, 6),
        record("p2", "a red bicycle", "images/dup.png", 2, 5),
    ]
    path = root / "train.json"
    path.write_text(json.dumps(records))
    return path


def test_imagereward_ratings_and_rank_pairs(tmp_path: Path) -> None:
    src = write_imagereward(tmp_path / "ir")
    out = tmp_path / "out"
    report = import_imagereward(src, out)
    tables, card = read(out)

    assert report.counts == {"prompts": 2, "images": 6, "ratings": 6, "pairs": 6}
    ids = {json.loads(row["settings"])["source_path"]: row["image_id"] for row in tables["images"]}
    fidelity = {row["image_id"]: row["fidelity"] for row in tables["ratings"]}
    assert [fidelity[ids[f"images/{i}.png"]] for i in range(5)] == [5, 3, 1, 2, 4]
    assert {(r["style"], r["composition"], r["novelty"], r["rater_id"]) for r in tables["ratings"]} == {
        (None, None, None, "imagereward")
    }
    i0, i1, i2, i3, i4, dup = (ids[f"images/{i}.png"] for i in (*range(5), "dup"))
    # dup.png has i0's bytes under another prompt: one file on disk, one row per prompt.
    assert dup != i0 and len(list((out / "images").rglob("*.png"))) == 5
    pairs = {(p["image_a"], p["image_b"]): p["winner"] for p in tables["pairs"]}
    assert pairs == {
        (i0, i1): "a",
        (i0, i2): "a",
        (i1, i2): "a",
        (i3, i4): "tie",
        (i3, dup): "a",
        (i4, dup): "a",
    }
    assert {"overall_rating", "fidelity_rating", "classification"} <= set(card["unmapped"]["source_fields"])
    assert "round_half_up" in card["rating_rescale"]
    assert card["skipped"]["counts"] == {}
    check_dataset(out)


def test_rating_rescale() -> None:
    assert [rescale_rating(r) for r in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 2, 3, 4, 4, 5]
    assert [rescale_rating(r) for r in (0, 8, None, "7", True)] == [None] * 5


def test_same_image_twice_in_a_group_is_stored_once(tmp_path: Path) -> None:
    root = tmp_path / "ir"
    src = write_imagereward(root)
    records = json.loads(src.read_text())
    records.append({**records[0], "rank": 4})
    src.write_text(json.dumps(records))
    report = import_imagereward(src, tmp_path / "out")
    assert report.counts["images"] == 6
    assert report.skipped == {
        "image rated again by the same rater (first rating kept)": 1,
        "both sides of the pair are the same image": 1,
    }


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_cli_imports_and_summarises(pickapic_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("pickapic", str(pickapic_src), "--out", str(tmp_path / "out")) == 0
    printed = capsys.readouterr().out
    assert "imported 2 prompts, 5 images, 3 pairs, 0 ratings from 4 pickapic records" in printed
    assert "skipped 1: has_label is false" in printed
    assert "source field not imported: best_image_uid: redundant with label_0/label_1" in printed
    assert "schema field left empty: ratings: Pick-a-Pic has only pairwise choices" in printed
    assert cli.__doc__ and cli.__doc__.splitlines()[0].startswith("Import a public preference dataset")


@pytest.mark.parametrize(
    ("fmt", "make_src", "message"),
    [
        ("imagereward", "missing_rank", "record 1 has no field 'rank'"),
        ("hpdv2", "missing_paths", "record 0 has no field 'image_path' (or 'file_path')"),
        ("pickapic", "missing_column", "missing required column 'label_1'"),
        ("pickapic", "json_file", "not a parquet file"),
        ("hpdv2", "parquet_file", "not a JSON file"),
        ("imagereward", "no_such_file", "SRC not found"),
    ],
)
def test_cli_rejects_bad_sources(
    fmt: str, make_src: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "src"
    if make_src == "missing_rank":
        src = write_imagereward(tmp_path)
        records = json.loads(src.read_text())
        del records[1]["rank"]
        src.write_text(json.dumps(records))
    elif make_src == "missing_paths":
        src.write_text(json.dumps([{"prompt": "x", "human_preference": [1, 0]}]))
    elif make_src in ("missing_column", "parquet_file"):
        pq.write_table(pa.table({"caption": ["x"], "jpg_0": [b""], "jpg_1": [b""], "label_0": [1.0]}), src)
    elif make_src == "json_file":
        src.write_text("[]")
    out = tmp_path / "out"
    assert run_cli(fmt, str(src), "--out", str(out)) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()  # nothing is written when the source is rejected


def test_out_must_be_empty(pickapic_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    with pytest.raises(ImportInputError, match="not an empty directory"):
        import_pickapic(pickapic_src, out)
