"""benchmarks/reward_on_samples.py's statistics and benchmarks/lookalike_data.py's derived datasets: the numbers
docs/rlhf.md reports on how reward models rank the generator's samples, and the copies they were fine-tuned on."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def samples():
    return load_script("reward_on_samples")


@pytest.fixture(scope="module")
def lookalike():
    return load_script("lookalike_data")


def test_within_prompt_spearman_is_the_mean_over_prompts_and_skips_constant_rows(samples):
    gold = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.2, 0.2, 0.2, 0.2]])
    r = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    # row 0 agrees (+1), row 1 disagrees (-1), row 2 has constant gold: skipped, not a NaN in the mean
    assert samples.within_prompt_spearman(r, gold) == pytest.approx(0.0)
    assert samples.within_prompt_spearman(r[:1], gold[:1]) == pytest.approx(1.0)
    assert samples.within_prompt_spearman(r[1:2], gold[1:2]) == pytest.approx(-1.0)


def test_best_of_n_takes_the_gold_of_the_rewards_pick_among_the_first_n(samples):
    gold = np.array([[0.1, 0.9, 0.5, 0.0], [0.3, 0.2, 0.1, 0.8]])
    r = np.array([[0.2, 0.1, 0.9, 5.0], [0.9, 0.1, 0.2, 0.3]])
    # first 2: picks column 0 in both rows; first 3: column 2 then 0; first 4: column 3 then 0
    assert samples.best_of(r, gold, 2) == pytest.approx((0.1 + 0.3) / 2)
    assert samples.best_of(r, gold, 3) == pytest.approx((0.5 + 0.3) / 2)
    assert samples.best_of(r, gold, 4) == pytest.approx((0.0 + 0.3) / 2)


def test_degrade_is_seeded_and_flattens_and_noises_the_image(lookalike):
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 8:24] = (230, 40, 40)  # a red square on black
    a = lookalike.degrade(image, np.random.default_rng(0))
    b = lookalike.degrade(image, np.random.default_rng(0))
    c = lookalike.degrade(image, np.random.default_rng(1))
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # contrast pulled toward the mean: the square's red channel minus the background's shrinks
    red = a[..., 0].astype(float)
    assert red[12:20, 12:20].mean() - red[:4, :4].mean() < 0.95 * 230
    assert red[:4, :4].std() > 1.0  # noise on what was a flat background


def test_degrade_mode_writes_a_loadable_dataset_whose_copies_carry_the_originals_labels(
    lookalike, shapes_dataset, tmp_path, monkeypatch
):
    from rewarddance_trainer.pixel_reward.data import Tables

    src, _ = shapes_dataset
    out = tmp_path / "lookalike"
    monkeypatch.setattr(
        sys,
        "argv",
        ["lookalike_data.py", "--mode", "degrade", "--data", str(src), "--out", str(out), "--prompts", "6", "2", "2"],
    )
    lookalike.main()
    prompts = pd.read_parquet(out / "prompts.parquet")
    assert prompts.split.value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    images = pd.read_parquet(out / "images.parquet")
    originals = images[~images.image_id.str.endswith("-c")]
    copies = images[images.image_id.str.endswith("-c")]
    assert len(originals) == len(copies) == 10 * 8
    assert all((out / p).exists() for p in images.path)
    ratings = pd.read_parquet(out / "ratings.parquet").groupby("image_id").mean(numeric_only=True)
    for iid in originals.image_id[:5]:
        assert ratings.loc[iid].equals(ratings.loc[iid + "-c"])
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert len(pairs) == 2 * len(
        pd.read_parquet(src / "pairs.parquet").pipe(lambda p: p[p.prompt_id.isin(prompts.prompt_id)])
    )
    tables = Tables.load(out)  # what `rewarddance train pixel-reward` reads
    assert len(tables.images) == 160 and len(tables.prompt_rows("train")) == 6
