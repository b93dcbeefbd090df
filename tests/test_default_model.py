"""The default reward model that ships with the project (exporter/rewarddance_exporter/default_model/): small
enough for git, exported by `rewarddance bootstrap` into a repository that scores its recorded samples exactly,
and it reads the prompt: each held-out sample, and the README's hand-drawn example, scores a clearly higher
fidelity for its own prompt than for other prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from rewarddance_exporter.bootstrap import DEFAULT_MODEL

from rewarddance.cli import main
from rewarddance.preprocess import load_pixels
from rewarddance.scoring.pipeline import RewardPipeline

SAMPLES = json.loads((DEFAULT_MODEL / "samples" / "samples.json").read_text())["samples"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> RewardPipeline:
    repo = tmp_path_factory.mktemp("default") / "model_repository"
    assert main(["bootstrap", "--repo", str(repo), "--if-missing"]) == 0
    assert main(["bootstrap", "--repo", str(repo), "--if-missing"]) == 0  # second call: nothing to do
    run = json.loads((DEFAULT_MODEL / "run.json").read_text())
    return RewardPipeline(repo, f"reward_{run['scale']}").load()


def _pixels(paths: list[Path]) -> np.ndarray:
    return load_pixels(paths, 64)


def test_shipped_files_are_small_and_describe_themselves():
    weights = DEFAULT_MODEL / "reward.safetensors"
    assert weights.stat().st_size < 30 * 2**20
    run = json.loads((DEFAULT_MODEL / "run.json").read_text())
    metrics = run["metrics"]
    assert run["kind"] == "pixel_reward" and metrics["n_eval_images"] >= 10_000
    # the v1 default it replaced: test Spearman R 0.42 and fidelity -0.10 in its own manifest
    assert metrics["spearman_reward"] > 0.42 and metrics["spearman_fidelity"] > 0.0
    readme = (DEFAULT_MODEL / "README.md").read_text()
    assert "rewarddance train pixel-reward" in readme and f"Spearman R {metrics['spearman_reward']:.3f}" in readme


def test_exported_model_scores_the_recorded_samples(pipeline: RewardPipeline):
    pixels = _pixels([DEFAULT_MODEL / "samples" / s["image"] for s in SAMPLES])
    scores = pipeline.score(pixels, [s["prompt"] for s in SAMPLES], use_cache=False)
    recorded = np.array([[s["scores"][k] for k in ("fidelity", "style", "composition", "novelty")] for s in SAMPLES])
    assert np.abs(scores.components - recorded).max() < 1e-4
    assert np.abs(scores.reward - np.array([s["scores"]["reward"] for s in SAMPLES])).max() < 1e-4
    run = json.loads((DEFAULT_MODEL / "run.json").read_text())
    assert pipeline.manifest.metrics["spearman_reward"] == pytest.approx(run["metrics"]["spearman_reward"])


def test_an_image_scores_higher_fidelity_for_its_own_prompt(pipeline: RewardPipeline):
    paths = [DEFAULT_MODEL / "samples" / s["image"] for s in SAMPLES]
    prompts = [s["prompt"] for s in SAMPLES]
    n = len(SAMPLES)
    # every image with every prompt: row i = image i, column j = prompt j
    images = np.repeat(_pixels(paths), n, axis=0)
    fidelity = pipeline.score(images, prompts * n, use_cache=False).components[:, 0].reshape(n, n)
    own = np.diag(fidelity)
    others = (fidelity.sum(axis=1) - own) / (n - 1)
    # v1 gave the README's red circle 0.788 for its prompt and 0.799 for a wrong one: a margin of -0.01.
    # Even samples are their prompt's faithful candidate; odd ones carry the simulator's errors (a missing or
    # wrong object may fit its own prompt no better than another), so only the faithful ones must all win.
    faithful = np.arange(n) % 2 == 0
    assert (own[faithful] > others[faithful]).all(), (own, others)
    assert float(np.mean(own - others)) > 0.1


def test_the_readme_example_reads_the_prompt(pipeline: RewardPipeline):
    """The README's curl example (a red disc drawn with PIL) and two more like it."""
    cases = [
        ("red", "ellipse", "a red circle in the centre", "a blue square at the top left"),
        ("blue", "rectangle", "a blue square in the center", "a yellow star at the bottom right"),
        ("green", "ellipse", "a large green circle in the middle", "a small red triangle at the top"),
    ]
    for colour, shape, right, wrong in cases:
        image = Image.new("RGB", (64, 64), "white")
        getattr(ImageDraw.Draw(image), shape)((16, 16, 48, 48), fill=colour)
        fidelity = pipeline.score(_pixels([image, image]), [right, wrong], use_cache=False).components[:, 0]
        assert fidelity[0] > fidelity[1] + 0.1, (right, wrong, fidelity)


def test_the_differentiable_reward_matches_the_served_one(pipeline: RewardPipeline):
    """RLHF's reward-gradient path scores the generator's 32-pixel float output with the shipped torch weights: on
    the same images it agrees with the gateway's pipeline (PIL bicubic to 64 px, ONNX) to 0.01, and has a gradient."""
    import torch
    from rewarddance_trainer.rlhf.reward import DifferentiableReward

    images = [Image.open(DEFAULT_MODEL / "samples" / s["image"]).convert("RGB") for s in SAMPLES]
    small = np.stack([np.asarray(im.resize((32, 32))) for im in images])
    prompts = [s["prompt"] for s in SAMPLES]
    served = pipeline.score(load_pixels(list(small), 64), prompts, use_cache=False).reward
    reward = DifferentiableReward(DEFAULT_MODEL)
    x = torch.from_numpy(small).permute(0, 3, 1, 2).float().div(127.5).sub(1).requires_grad_(True)
    ours = reward(x, prompts)
    assert np.abs(ours.detach().numpy() - served).max() < 0.01, (ours, served)
    assert np.corrcoef(ours.detach().numpy(), served)[0, 1] > 0.98
    ours.sum().backward()
    assert x.grad.abs().mean() > 0


def test_an_ensemble_reward_is_its_members_mean_less_a_share_of_their_spread(tmp_path: Path):
    """Several --reward-run directories: R = mean of the members' R - penalty * their standard deviation, with the
    gradient of that; one member with a penalty is refused (there is no spread to penalise)."""
    import shutil

    import torch
    from rewarddance_trainer.rlhf.reward import DifferentiableReward
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(DEFAULT_MODEL / "run.json", other / "run.json")
    state = load_file(DEFAULT_MODEL / "reward.safetensors")
    # a member that disagrees on every image: each head's bias raised, so no shift of one head cancels another's
    state["head_bias"] = state["head_bias"] + torch.tensor([0.8, 0.3, 0.2, 0.1])
    save_file(state, other / "reward.safetensors")

    images = [Image.open(DEFAULT_MODEL / "samples" / s["image"]).convert("RGB") for s in SAMPLES]
    x = torch.from_numpy(np.stack([np.asarray(im.resize((32, 32))) for im in images]))
    x = x.permute(0, 3, 1, 2).float().div(127.5).sub(1)
    prompts = [s["prompt"] for s in SAMPLES]
    a = DifferentiableReward(DEFAULT_MODEL)(x, prompts)
    b = DifferentiableReward(other)(x, prompts)
    assert (a - b).abs().min() > 1e-3  # the members do disagree
    for penalty in (0.0, 0.5):
        ensemble = DifferentiableReward(f"{DEFAULT_MODEL},{other}", penalty=penalty)
        assert ensemble.describe()["ensemble"] == 2
        expected = (a + b) / 2 - penalty * (a - b).abs() / np.sqrt(2)  # the sample sd of two values
        y = x.clone().requires_grad_(True)
        got = ensemble(y, prompts)
        assert torch.allclose(got, expected, atol=1e-5)
        got.sum().backward()
        assert y.grad.abs().mean() > 0
    with pytest.raises(ValueError, match="two or more"):
        DifferentiableReward(DEFAULT_MODEL, penalty=0.5)
