"""`rewarddance eval generators` on tiny generators (seconds): the same prompts and seeds on both sides, every metric
with its interval, numbers that can be recomputed from the written pair set, the numpy statistics behind the
intervals against torchmetrics, and the simulated A/B against a known preference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from rewarddance_trainer.encoders.model import META_FILE, WEIGHTS_FILE, Encoder
from rewarddance_trainer.evaluation.features import (
    EncoderMetrics,
    encoder_score,
    fid_features,
    frechet_distance,
    kernel_distance,
    patch_diversity,
)
from rewarddance_trainer.evaluation.simulated import simulated_ab
from rewarddance_trainer.generator.pipeline import ShapesDiffusionPipeline, default_scheduler, make_unet
from rewarddance_trainer.generator.quality import fid_kid
from safetensors.torch import save_file

from rewarddance.ab.pairs import PairSet
from rewarddance.cli import main

METRICS = [f"{src}_{c}" for src in ("oracle", "reward") for c in ("fidelity", "style", "composition", "novelty")]
METRICS += ["oracle_utility", "reward_R", "encoder_score", "patch_diversity", "fid", "kid"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two tiny generators (16 px, random UNets), a random-init tiny encoder and the default served reward."""
    from rewarddance_exporter.bootstrap import DEFAULT_MODEL
    from rewarddance_exporter.pixel_export import export_pixel_run
    from rewarddance_trainer.generator.text import load_minilm

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ab-eval")
    text = load_minilm()
    for name, seed in (("gen-a", 0), ("gen-b", 1)):
        torch.manual_seed(seed)
        pipe = ShapesDiffusionPipeline(make_unet(16, 8), default_scheduler(), text[0], text[1])
        pipe.save_pretrained(root / name)
    torch.manual_seed(0)
    encoder = Encoder.create("shapes-clip-tiny")
    (root / "encoder").mkdir()
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, root / "encoder" / WEIGHTS_FILE)
    (root / "encoder" / META_FILE).write_text(json.dumps({"model": "shapes-clip-tiny"}))
    export_pixel_run(DEFAULT_MODEL, root / "repo")
    return {"root": root, "encoder": Encoder.load(root / "encoder")}


def _run(setup: dict, a: str, b: str, name: str) -> tuple[dict, PairSet]:
    root = setup["root"]
    args = ["eval", "generators", "--a", str(root / a), "--b", str(root / b), "--encoder", str(root / "encoder")]
    args += ["--repo", str(root / "repo"), "--name", name, "--out", str(root / "results")]
    args += ["--pairs-out", str(root / "pairs" / name), "--prompts", "4", "--n", "2", "--steps", "2"]
    args += ["--bootstrap", "300", "--set-bootstrap", "30", "--no-progress"]
    assert main(args) == 0
    for suffix in ("json", "md", "png"):
        assert (root / "results" / f"ab_{name}.{suffix}").stat().st_size > 0
    return json.loads((root / "results" / f"ab_{name}.json").read_text()), PairSet.read(root / "pairs" / name)


def test_different_generators_every_metric_with_an_interval_recomputable_from_the_pair_set(setup: dict):
    result, pair_set = _run(setup, "gen-a", "gen-b", "tiny-a-vs-b")
    assert set(result["metrics"]) == set(METRICS)
    for key, m in result["metrics"].items():
        assert all(np.isfinite([m["a"], m["b"], m["diff"], *m["diff_ci95"], *m["a_ci95"], *m["b_ci95"]])), key
        assert m["diff"] == pytest.approx(m["b"] - m["a"])
        if key not in ("fid", "kid"):  # per-prompt means: the percentile interval holds the point estimate
            assert m["diff_ci95"][0] <= m["diff"] + 1e-9 <= m["diff_ci95"][1] + 2e-9, key
    assert result["metrics"]["fid"]["diff"] != 0  # different UNets sample different images
    assert len(result["prompts"]) == 4 and len(pair_set.pairs) == 8
    # the pair set holds the very images that were measured: the oracle and the served reward, recomputed
    from rewarddance_trainer.oracle.oracle import Oracle
    from rewarddance_trainer.oracle.parse import parse_prompt

    from rewarddance.preprocess import load_pixels
    from rewarddance.scoring.pipeline import RewardPipeline

    oracle = Oracle.load()
    served = RewardPipeline(setup["root"] / "repo", "reward_cpu-xs").load()
    for side in ("a", "b"):
        files = [pair_set.root / getattr(p, f"image_{side}") for p in pair_set.pairs]
        images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        texts = [p.prompt for p in pair_set.pairs]
        gold = oracle.score(list(images), [parse_prompt(t) for t in texts])
        assert gold[:, 0].mean() == pytest.approx(result["metrics"]["oracle_fidelity"][side], abs=1e-9)
        rewards = served.score(load_pixels(list(images), served.image_size), texts).reward
        stored = np.array([getattr(p, f"reward_{side}") for p in pair_set.pairs])
        np.testing.assert_allclose(rewards, stored, atol=1e-5)
        assert rewards.mean() == pytest.approx(result["metrics"]["reward_R"][side], abs=1e-5)
    sim = result["simulated_ab"]
    assert sim["votes"] == 8 * 3 and np.array(sim["votes_by_pair"]).shape == (8, 3)
    rates = sim["b_preferred"]["mean"] + sim["tie"]["mean"] + sim["a_preferred"]["mean"]
    assert rates == pytest.approx(1.0)


def test_a_generator_against_itself_differs_by_exactly_nothing(setup: dict):
    result, _ = _run(setup, "gen-a", "gen-a", "tiny-a-vs-a")
    for key, m in result["metrics"].items():
        tolerance = 1e-5 * max(1.0, abs(m["a"]))  # FID / KID: float32 features
        assert m["diff"] == pytest.approx(0.0, abs=tolerance), key
        assert m["diff_ci95"] == pytest.approx([0, 0], abs=tolerance), key
    assert result["simulated_ab"]["reward_agrees_with_raters"]["n"] == 0  # equal rewards order no pair


def test_numpy_statistics_of_the_intervals_match_torchmetrics(setup: dict):
    metrics = EncoderMetrics(setup["encoder"])
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-60, 60, real.shape), 0, 255).astype(np.uint8)
    fake[:30] = 255 - fake[:30]
    point = fid_kid(real, fake, metrics.fid_features, subset_size=30, subsets=200)
    fr, ff = fid_features(metrics, real), fid_features(metrics, fake)
    assert frechet_distance(fr, ff) == pytest.approx(point["fid"], rel=2e-3)
    assert abs(kernel_distance(fr, ff) - point["kid_mean"]) < 3 * point["kid_std"] + 1e-6
    assert frechet_distance(fr, fr) == pytest.approx(0.0, abs=1e-6)


def test_encoder_score_and_patch_diversity_follow_their_formulas():
    image = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    text = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(encoder_score(image, text), [2.5, 1.5, 0.0])
    same = np.repeat(np.eye(4)[None], 2, axis=0)  # 2 samples x 4 tokens x 4 dims, identical
    flipped = np.stack([np.eye(4), np.roll(np.eye(4), 1, axis=1)])  # every token differs: |e_i - e_j|^2 = 2
    np.testing.assert_allclose(patch_diversity(np.concatenate([same, flipped]), 2), [0.0, 2.0])


def test_simulated_raters_prefer_the_better_side_and_the_reward_agreement_follows_the_reward():
    rng = np.random.default_rng(1)
    u_a = rng.uniform(0.2, 0.6, 400)
    u_b = u_a + rng.uniform(0.0, 0.3, 400)
    sim = simulated_ab(u_a, u_b, u_a, u_b, n_per_prompt=4, raters=3, n_boot=200)
    assert sim["b_preferred"]["mean"] > 0.75 and sim["a_preferred"]["mean"] < 0.1
    lo, hi = sim["b_preferred"]["ci95"]
    assert lo < sim["b_preferred"]["mean"] < hi and hi - lo < 0.1
    assert sim["reward_agrees_with_raters"]["mean"] == pytest.approx(sim["oracle_utility_agrees_with_raters"]["mean"])
    backwards = simulated_ab(u_a, u_b, u_b, u_a, n_per_prompt=4, raters=3, n_boot=200)
    assert backwards["reward_agrees_with_raters"]["mean"] < 0.2
