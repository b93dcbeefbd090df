"""The pixel reward model (v2): architecture invariants, losses, the training recipe (learning, resume), export
parity through the serving pipeline, and evaluation."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rewarddance_trainer.pixel_reward import train as pixel_train
from rewarddance_trainer.pixel_reward.config import PixelTrainConfig, load_scale, scales
from rewarddance_trainer.pixel_reward.data import PairIndex, Tables
from rewarddance_trainer.pixel_reward.model import PixelRewardModel, count_parameters, load_model
from rewarddance_trainer.pixel_reward.text import build_cache, load_cache
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize

TINY = PixelTrainConfig(
    scale="tiny",
    steps=8,
    prompts_per_batch=4,
    images_per_prompt=4,
    lr=3e-3,
    warmup=2,
    eval_every=4,
    val_prompts=10,
    test_prompts=0,
    ckpt_every=4,
    workers=0,
)


@pytest.fixture(scope="session")
def pixel_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pixel") / "data"
    synthesize(data, SynthConfig(n_prompts=60, images_per_prompt=4, seed=11, chunk_prompts=30), progress=False)
    build_cache(data, progress=False)
    return data


@pytest.fixture(scope="session")
def pixel_run(pixel_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pixel-run") / "run"
    pixel_train.train(pixel_data, run, TINY, progress=False)
    return run


def _inputs(n: int = 3, length: int = 32, real: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 64, 64, 3), generator=g, dtype=torch.uint8)
    tokens = torch.randn(n, length, 384, generator=g)
    mask = torch.zeros(n, length, dtype=torch.bool)
    mask[:, :real] = True
    return pixels, tokens, mask


def test_scales_are_config_files_sized_as_the_ladders_promise():
    counts = {s: count_parameters(load_scale(s)) for s in scales()}
    assert 1.5e6 < counts["small"] < 2.5e6
    assert 15e6 < counts["base"] < 25e6
    assert 150e6 < counts["large"] < 250e6
    assert counts["cpu-xs"] < counts["cpu-s"] < counts["small"] < counts["cpu-m"] < counts["base"]


def test_reward_is_the_weighted_heads_and_padding_is_ignored():
    torch.manual_seed(0)
    model = PixelRewardModel(load_scale("tiny"), {"fidelity": 1, "style": 0, "composition": 0, "novelty": 0}).eval()
    pixels, tokens, mask = _inputs()
    with torch.no_grad():
        components, reward = model(pixels, tokens, mask)
        assert components.shape == (3, 4) and ((components > 0) & (components < 1)).all()
        assert torch.allclose(reward, components[:, 0])
        noisy = tokens.clone()
        noisy[:, 7:] = torch.randn_like(noisy[:, 7:]) * 100  # padded slots: must not matter
        assert torch.allclose(model(pixels, noisy, mask)[0], components, atol=1e-6)
        trimmed = model(pixels, tokens[:, :7], mask[:, :7])[0]  # training trims unused padding columns
        assert torch.allclose(trimmed, components, atol=1e-5)
        other = model(torch.flip(pixels, dims=[1]), tokens, mask)[0]
        assert not torch.allclose(other, components)  # it looks at the pixels, geometry included
        fused = torch.sigmoid(model.fuse(model.image_tokens(pixels), tokens, mask))
        assert torch.allclose(fused, components)  # training's split path is the same function


def test_swap_loss_rewards_reading_the_prompt():
    torch.manual_seed(0)
    model = PixelRewardModel(load_scale("tiny"))
    pixels, tokens, mask = _inputs(n=4)
    image = model.image_tokens(pixels)
    group = np.array([0, 0, 1, 1])
    own = model.fuse(image, tokens, mask)
    base = pixel_train.swap_loss(model, image, own, tokens, mask, group, per_group=2)
    assert float(base) == pytest.approx(
        float(
            torch.nn.functional.softplus(
                model.fuse(image, tokens[[2, 2, 0, 0]], mask[[2, 2, 0, 0]])[:, 0] - own[:, 0]
            ).mean()
        ),
        rel=1e-5,
    )
    higher_own = own.clone()
    higher_own[:, 0] += 5.0
    assert float(pixel_train.swap_loss(model, image, higher_own, tokens, mask, group, 2)) < float(base)
    assert float(pixel_train.swap_loss(model, image, own, tokens, mask, np.zeros(4, int), 2)) == 0.0


def test_listwise_loss_prefers_the_rated_order():
    utility = torch.tensor([0.9, 0.5, 0.1, 0.2, 0.8])
    group = np.array([0, 0, 0, 1, 1])
    right = pixel_train.listwise_loss(torch.tensor([0.9, 0.5, 0.1, 0.2, 0.8]), utility, group, 0.05)
    wrong = pixel_train.listwise_loss(torch.tensor([0.1, 0.5, 0.9, 0.8, 0.2]), utility, group, 0.05)
    assert float(right) < float(wrong)
    # a group's loss is the cross-entropy of its softmaxes: check one group by hand
    p = torch.softmax(utility[:3] / 0.05, 0)
    expected = -(p * torch.log_softmax(torch.tensor([0.9, 0.5, 0.1]) / 0.05, 0)).sum()
    single = pixel_train.listwise_loss(torch.tensor([0.9, 0.5, 0.1]), utility[:3], np.zeros(3, int), 0.05)
    assert torch.isclose(single, expected)


def test_component_listwise_loss_ranks_each_head_by_its_own_rating():
    """Each head is asked to order a prompt's candidates by its own rating: heads in the rated order cost less
    than the same heads swapped between two components whose ratings disagree."""
    from rewarddance_trainer.pixel_reward.config import PixelTrainConfig

    cfg = PixelTrainConfig(component_listwise_weight=1.0)
    targets = torch.tensor([[0.9, 0.1, 0.5, 0.5], [0.1, 0.9, 0.5, 0.5]])  # fidelity and style disagree
    group = np.zeros(2, int)
    right = pixel_train.component_listwise_loss(targets.clone(), targets, group, cfg)
    swapped = targets[:, [1, 0, 2, 3]]  # each of the first two heads ranks the pair the wrong way round
    wrong = pixel_train.component_listwise_loss(swapped, targets, group, cfg)
    assert float(right) < float(wrong)
    with pytest.raises(ValueError, match=">= 0"):
        PixelTrainConfig(component_listwise_weight=-1.0)


def test_component_listwise_heads_choose_which_heads_are_ranked():
    """Naming heads restricts the term to them: a mistake in the style head costs nothing when only fidelity is
    ranked, and the same mistake in fidelity does; an unknown name is refused."""
    from rewarddance_trainer.pixel_reward.config import PixelTrainConfig

    targets = torch.tensor([[0.9, 0.1, 0.5, 0.5], [0.1, 0.9, 0.5, 0.5]])
    group = np.zeros(2, int)
    style_wrong = targets.clone()
    style_wrong[:, 1] = targets[:, 1].flip(0)
    fidelity_wrong = targets.clone()
    fidelity_wrong[:, 0] = targets[:, 0].flip(0)
    only_fidelity = PixelTrainConfig(component_listwise_weight=1.0, component_listwise_heads="fidelity")
    assert only_fidelity.listwise_heads == ("fidelity",)
    right = float(pixel_train.component_listwise_loss(targets.clone(), targets, group, only_fidelity))
    assert float(pixel_train.component_listwise_loss(style_wrong, targets, group, only_fidelity)) == right
    assert float(pixel_train.component_listwise_loss(fidelity_wrong, targets, group, only_fidelity)) > right + 1.0
    every_head = PixelTrainConfig(component_listwise_weight=1.0)
    assert float(pixel_train.component_listwise_loss(style_wrong, targets, group, every_head)) > float(
        pixel_train.component_listwise_loss(targets.clone(), targets, group, every_head)
    )
    with pytest.raises(ValueError, match="unknown"):
        PixelTrainConfig(component_listwise_heads="fidelity,beauty")


def test_pairs_are_found_inside_a_batch(pixel_data: Path):
    tables = Tables.load(pixel_data)
    index = PairIndex(tables.pair_rows, tables.pair_target, len(tables.images))
    prompt = tables.images.prompt_row.to_numpy()
    rows = np.flatnonzero(np.isin(prompt, [0, 1]))
    a, b, target = index.within(rows)
    expected = np.isin(tables.pair_rows, rows).all(axis=1)
    assert len(a) == expected.sum() > 0
    found = sorted(zip(rows[a].tolist(), rows[b].tolist(), strict=True))
    assert found == sorted(map(tuple, tables.pair_rows[expected].tolist()))
    assert set(np.unique(target)) <= {0.0, 0.5, 1.0}


def test_training_learns_and_records_a_complete_run(pixel_run: Path):
    records = [json.loads(x) for x in (pixel_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, TINY.steps + 1))
    run_json = json.loads((pixel_run / "run.json").read_text())
    assert run_json["kind"] == "pixel_reward" and run_json["steps_done"] == TINY.steps
    assert run_json["selected_step"] in (4, 8)
    assert np.isfinite(run_json["metrics"]["spearman_reward"])
    assert (pixel_run / "curves.png").stat().st_size > 0
    assert all(np.isfinite(r["swap"]) for r in records)
    first, last = np.mean([r["mse"] for r in records[:2]]), np.mean([r["mse"] for r in records[-2:]])
    assert last < first  # the heads moved toward the ratings


@pytest.mark.parametrize("prompt_noise", [0.0, 0.5])
def test_resume_after_interruption_matches_an_uninterrupted_run(
    pixel_data: Path, tmp_path: Path, monkeypatch, prompt_noise: float
):
    cfg = replace(TINY, eval_every=100, ckpt_every=3, prompt_noise=prompt_noise)
    whole = tmp_path / "whole"
    pixel_train.train(pixel_data, whole, cfg, progress=False)
    cut = tmp_path / "cut"
    real_save = pixel_train.save_checkpoint

    def crash_after_step_3(run, model, optimizer, step, identity, best):
        real_save(run, model, optimizer, step, identity, best)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(pixel_train, "save_checkpoint", crash_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        pixel_train.train(pixel_data, cut, cfg, progress=False)
    monkeypatch.setattr(pixel_train, "save_checkpoint", real_save)
    pixel_train.train(pixel_data, cut, cfg, progress=False)
    a = [json.loads(x)["loss"] for x in (whole / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x)["loss"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert a == pytest.approx(b, rel=1e-4)


def test_a_grown_model_starts_as_the_model_it_grows_from_then_trains_its_new_blocks(
    pixel_run: Path, pixel_data: Path, tmp_path: Path
):
    from rewarddance_trainer.pixel_reward.train import load_init

    small = load_model(pixel_run)
    deeper = replace(
        small.cfg,
        image_layers=small.cfg.image_layers + 1,
        fusion_layers=small.cfg.fusion_layers + 2,
        stem_blocks=small.cfg.stem_blocks + 1,
    )
    grown = PixelRewardModel(deeper)
    load_init(grown, pixel_run)
    pixels, tokens, mask = _inputs(4)
    with torch.no_grad():
        assert torch.equal(grown.eval()(pixels, tokens, mask)[0], small(pixels, tokens, mask)[0])
    with pytest.raises(ValueError, match="pass --scale"):  # a shallower model cannot take the weights
        load_init(PixelRewardModel(replace(small.cfg, fusion_layers=small.cfg.fusion_layers - 1)), pixel_run)
    with pytest.raises(ValueError, match="pass --init"):
        pixel_train.train(pixel_data, tmp_path / "nothing", replace(TINY, grow_fusion_layers=1), progress=False)

    cfg = replace(TINY, grow_image_layers=1, grow_fusion_layers=2, grow_stem_blocks=1, steps=4, eval_every=2)
    run = tmp_path / "grown"
    m = pixel_train.train(pixel_data, run, cfg, progress=False, init=pixel_run)
    depth = (m["model"]["image_layers"], m["model"]["fusion_layers"], m["model"]["stem_blocks"])
    assert depth == (deeper.image_layers, deeper.fusion_layers, deeper.stem_blocks)
    assert m["parameters"] > json.loads((pixel_run / "run.json").read_text())["parameters"]
    trained = load_model(run)
    assert trained.fusion_blocks[-1].proj.weight.abs().max() > 0  # the new blocks moved off the identity
    assert trained.stem_blocks[-1].conv2.weight.abs().max() > 0
    from rewarddance_exporter.pixel_export import export_pixel_run

    exported = export_pixel_run(run, tmp_path / "repo", log=lambda _: None)  # the grown graph exports, at parity
    assert exported.export.end_to_end_max_abs_diff <= 1e-4
    # a further stage from the grown run keeps its depth without asking to grow again
    again = pixel_train.train(pixel_data, tmp_path / "next", replace(TINY, steps=2, eval_every=2), False, init=run)
    assert again["model"] == m["model"]


def test_prompt_noise_is_a_share_of_each_tokens_rms_and_drawn_from_its_seed(pixel_data: Path, tmp_path: Path):
    losses = {}
    for noise in (0.0, 0.5):
        cfg = replace(TINY, steps=2, eval_every=2, prompt_noise=noise)
        run = pixel_train.train(pixel_data, tmp_path / str(noise), cfg, progress=False)
        assert run["train"]["prompt_noise"] == noise
        losses[noise] = json.loads((tmp_path / str(noise) / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert losses[0.0] != pytest.approx(losses[0.5], rel=1e-4)  # the first step's loss already sees the noise
    tokens = torch.randn(5, 12, 384) * torch.linspace(0.1, 3.0, 12)[None, :, None]
    a = pixel_train.noisy_prompt(tokens, 0.5, torch.Generator().manual_seed(3))
    b = pixel_train.noisy_prompt(tokens, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    ratio = (a - tokens).pow(2).mean(-1).sqrt() / tokens.pow(2).mean(-1).sqrt()
    assert ratio.numpy() == pytest.approx(np.full((5, 12), 0.5), rel=0.15)  # per token, whatever its scale
    assert not torch.equal(a, pixel_train.noisy_prompt(tokens, 0.5, torch.Generator().manual_seed(4)))


def test_export_scores_the_same_through_the_serving_pipeline(pixel_run: Path, tmp_path: Path):
    from rewarddance_exporter.pixel_export import export_pixel_run, real_samples
    from rewarddance_trainer.pixel_reward.text import PromptStates

    from rewarddance.scoring.pipeline import RewardPipeline

    repo = tmp_path / "repo"
    manifest = export_pixel_run(pixel_run, repo, log=lambda _: None)
    assert manifest.pixel and manifest.export.end_to_end_max_abs_diff <= 1e-4
    assert sorted(p.name for p in repo.iterdir()) == ["prompt_encoder", "reward_tiny"]
    pipeline = RewardPipeline(repo, "reward_tiny").load()
    pixels, texts = real_samples(json.loads((pixel_run / "run.json").read_text()), 64)
    served = pipeline.score(pixels, texts)
    model, states = load_model(pixel_run), PromptStates()
    tokens, mask = states.encode(texts)
    with torch.no_grad():
        c, r = model(torch.from_numpy(pixels), torch.from_numpy(tokens), torch.from_numpy(mask))
    assert np.abs(served.components - c.numpy()).max() < 1e-4
    assert np.abs(served.reward - r.numpy()).max() < 1e-4
    assert served.signals is None and pipeline.versions()[0].name == "prompt_encoder"
    again = export_pixel_run(pixel_run, repo, log=lambda _: None)  # a second export reuses the prompt encoder
    assert again.version == 2 and again.encoders["text"].version == 1


def test_eval_command_reports_ratings_and_gold(pixel_run: Path, pixel_data: Path, tmp_path: Path):
    from rewarddance.cli import main

    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "reward",
                "--run",
                str(pixel_run),
                "--data",
                str(pixel_data),
                "--split",
                "all",
                "--out",
                str(out),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["in_domain"]["n_eval_images"] == 240
    assert set(result["gold"]) == {"fidelity", "style", "composition", "novelty", "reward"}
    assert all(-1 <= v <= 1 for v in result["gold"].values())


def test_prompt_state_cache_is_refused_when_stale(pixel_data: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(pixel_data, copy)
    meta = copy / "prompt_states" / "minilm-l6" / "meta.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"done": 3}))
    with pytest.raises(ValueError, match="prompt-state cache"):
        load_cache(copy)


def test_leave_one_style_out_splits_hold_the_style_out_of_training(pixel_data: Path):
    tables = Tables.load(pixel_data)
    styles = tables.prompts["style"].fillna("").to_numpy()
    style = next(s for s in styles if s)
    train, val, test = (tables.prompt_rows(part, style) for part in ("train", "val", "test"))
    assert not (styles[train] == style).any() and not (styles[val] == style).any()
    assert set(test) == set(np.flatnonzero(styles == style))
    assert set(train) < set(tables.prompt_rows("train"))
    with pytest.raises(ValueError, match="no prompt has style"):
        tables.prompt_rows("train", "cubism")


def test_a_soup_is_the_mean_of_arms_from_one_start_and_is_measured_as_a_run(
    pixel_run: Path, pixel_data: Path, tmp_path: Path
):
    from rewarddance_trainer.pixel_reward.eval_cmd import evaluate_run
    from rewarddance_trainer.pixel_reward.soup import make_soup
    from safetensors.torch import load_file

    arms = [tmp_path / f"arm{s}" for s in (1, 2)]
    for arm, seed in zip(arms, (1, 2), strict=True):
        pixel_train.train(pixel_data, arm, replace(TINY, steps=2, eval_every=2, seed=seed), False, init=pixel_run)
    soup = make_soup(arms, tmp_path / "soup")
    a, b, s = (load_file(r / "reward.safetensors") for r in (*arms, tmp_path / "soup"))
    moved = [k for k in a if not torch.equal(a[k], b[k])]
    assert moved  # the arms differ, so the soup is neither of them
    for k in a:  # float tensors averaged, integer buffers kept
        assert torch.allclose(s[k], (a[k] + b[k]) / 2) if a[k].is_floating_point() else torch.equal(s[k], a[k])
    arm_json = [json.loads((r / "run.json").read_text()) for r in arms]
    assert soup["wall_seconds"] == pytest.approx(sum(m["wall_seconds"] for m in arm_json), abs=0.02)
    assert [m["seed"] for m in soup["soup"]["members"]] == [1, 2]
    measured = evaluate_run(tmp_path / "soup", pixel_data, "test")["in_domain"]
    assert soup["metrics"]["spearman_reward"] == pytest.approx(measured["spearman_reward"], abs=1e-6)
    with pytest.raises(ValueError, match="same weights"):  # a run from another start is no arm of this soup
        make_soup([arms[0], pixel_run], tmp_path / "bad")
    with pytest.raises(ValueError, match="from scratch"):  # runs from scratch share no basin
        make_soup([pixel_run, pixel_run], tmp_path / "bad")
    with pytest.raises(ValueError, match="at least two"):
        make_soup(arms[:1], tmp_path / "bad")
