"""Reward model: scale parameter counts, the two losses, model invariants (masking, R, export), and training on
the session's ``tiny`` fixture: it improves held-out Spearman, selects the best val step (and keeps it across a
resume and an early stop), saves the component scorers behind its signals, resumes on the same curve, never reads
gold, runs cross-validation / leave-one-style-out, errors cleanly from the CLI, and trains identically on 2 DDP
processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rewarddance_trainer.components.fit import Table, component_signals
from rewarddance_trainer.reward import evaluate
from rewarddance_trainer.reward import train as train_mod
from rewarddance_trainer.reward.config import RewardModelConfig, RewardTrainConfig, load_scale
from rewarddance_trainer.reward.data import build_examples, cv_splits, default_split, load_pairs, style_splits
from rewarddance_trainer.reward.model import WEIGHTS_FILE, RewardModel, count_parameters, load_model
from rewarddance_trainer.reward.train import bt_loss, mse_loss
from safetensors.torch import load_file

from rewarddance.components.bundle import ComponentSet
from rewarddance.components.style import StyleScorer

TINY = RewardTrainConfig(scale="tiny", steps=8, warmup=2, lr=1e-3, eval_every=4, ckpt_every=4)
REPO = Path(__file__).resolve().parents[1]


def _train(tiny: dict, out: Path, cfg: RewardTrainConfig = TINY, **kwargs) -> dict:
    return train_mod.train(tiny["data"], tiny["cache"], tiny["run"] / "components", out, cfg, progress=False, **kwargs)


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _examples(tiny: dict, split=None):
    table = Table.load(tiny["data"], tiny["cache"])
    style = StyleScorer.load(tiny["run"] / "components")
    return table, build_examples(table, load_pairs(tiny["data"], table), split or default_split(table), style)


# --- architecture ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "target"), [("small", 2e6), ("base", 20e6), ("large", 200e6)])
def test_each_scale_is_within_15_percent_of_its_target(scale, target):
    assert abs(count_parameters(load_scale(scale)) / target - 1) <= 0.15


def _random_inputs(cfg: RewardModelConfig, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(cfg.prompt_tokens) < torch.randint(3, cfg.prompt_tokens, (n, 1), generator=g)
    return {
        "prompt_tokens": torch.randn(n, cfg.prompt_tokens, cfg.prompt_dim, generator=g),
        "prompt_mask": mask,
        "image_tokens": torch.randn(n, cfg.image_tokens, cfg.image_dim, generator=g),
        "signals": torch.rand(n, 4, generator=g),
    }


def test_model_ignores_padding_and_r_is_the_weighted_heads():
    cfg = replace(load_scale("tiny"), prompt_dim=16, image_tokens=16, image_dim=8)
    model = RewardModel(cfg, weights={"novelty": 0.5}).eval()
    inputs = _random_inputs(cfg, 5)
    components, reward = model(**inputs)
    assert components.shape == (5, 4) and ((components > 0) & (components < 1)).all()
    torch.testing.assert_close(reward, components @ model.weights)
    assert model.weights.sum().item() == pytest.approx(1.0) and model.weights[3].item() > 0.3
    noisy_padding = inputs["prompt_tokens"].masked_fill(~inputs["prompt_mask"].unsqueeze(-1), 1e3)
    torch.testing.assert_close(model(**{**inputs, "prompt_tokens": noisy_padding})[0], components)
    alone = model(**{k: v[2:3] for k, v in inputs.items()})[0]
    torch.testing.assert_close(alone, components[2:3], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(model(**{**inputs, "signals": 1 - inputs["signals"]})[0], components)


def test_model_exports_with_a_dynamic_batch():
    """torch.export (what the ONNX exporter traces) needs one static graph for every batch size."""
    cfg = replace(load_scale("tiny"), prompt_dim=16, image_tokens=16, image_dim=8)
    model = RewardModel(cfg).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    inputs = _random_inputs(cfg, 3)
    exported = torch.export.export(model, (), kwargs=inputs, dynamic_shapes={k: {0: batch} for k in inputs})
    other = _random_inputs(cfg, 7, seed=1)
    for got, want in zip(exported.module()(**other), model(**other), strict=True):
        torch.testing.assert_close(got, want)


# --- losses ----------------------------------------------------------------------------------------------------


def test_bt_loss_prefers_the_right_order_and_centres_ties():
    scale = torch.tensor(10.0)
    high, low, a_wins, tie = torch.tensor([0.8]), torch.tensor([0.3]), torch.ones(1), torch.full((1,), 0.5)
    right, wrong = bt_loss(high, low, a_wins, scale), bt_loss(low, high, a_wins, scale)
    assert right.item() == pytest.approx(math.log1p(math.exp(-5.0)), rel=1e-5)  # -log sigmoid(10 * 0.5)
    assert wrong.item() == pytest.approx(math.log1p(math.exp(5.0)))
    assert bt_loss(low, high, torch.zeros(1), scale).item() == pytest.approx(right.item(), rel=1e-5)  # b wins
    equal = bt_loss(high, high, tie, scale)
    assert equal.item() == pytest.approx(math.log(2))  # a tie is best explained by equal rewards
    assert bt_loss(high, low, tie, scale) > equal
    assert bt_loss(high, low, tie, scale).item() == pytest.approx(bt_loss(low, high, tie, scale).item())
    r_a = torch.tensor([0.5], requires_grad=True)
    bt_loss(r_a, torch.tensor([0.5]), a_wins, scale).backward()
    assert r_a.grad.item() < 0  # descending the loss raises the winner's reward


def test_mse_loss_on_known_targets_skips_unrated_entries():
    pred = torch.tensor([[0.5, 0.2, 1.0, 0.0], [0.25, 0.5, 0.5, 0.5]], requires_grad=True)
    target = torch.tensor([[1.0, float("nan"), 0.0, 0.0], [0.25, 0.5, 0.5, 1.0]])
    loss = mse_loss(pred, target)
    assert loss.item() == pytest.approx((0.25 + 1.0 + 0.0 + 0.0 + 0.0 + 0.0 + 0.25) / 7)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 1] == 0
    assert mse_loss(pred, target, normalizer=14).item() == pytest.approx(loss.item() / 2)


# --- training --------------------------------------------------------------------------------------------------


def test_training_improves_held_out_spearman_over_the_untrained_model(tiny, tmp_path):
    cfg = replace(TINY, steps=150, warmup=15, eval_every=50, ckpt_every=150)
    run_json = _train(tiny, tmp_path / "run", cfg)
    table, examples = _examples(tiny)
    torch.manual_seed(cfg.seed)
    untrained = RewardModel(train_mod.model_config(cfg, table.cache))
    before = evaluate.validate(untrained, examples, torch.device("cpu"))
    after = run_json["metrics"]
    assert after["spearman_reward"] > before["spearman_reward"] + 0.15, (before, after)
    assert after["pair_accuracy"] > 0.6
    loaded = load_model(tmp_path / "run")
    assert evaluate.validate(loaded, examples, torch.device("cpu"))["spearman_reward"] == after["spearman_reward"]
    run = tmp_path / "run"
    for name in ("curves.png", "calibration.png", "metrics.csv", WEIGHTS_FILE):
        assert (run / name).stat().st_size > 0, name
    assert run_json["data"]["table_sha256"] == json.loads((tiny["data"] / "card.json").read_text())["table_sha256"]
    assert run_json["parameters"] == sum(t.numel() for k, t in load_file(run / WEIGHTS_FILE).items() if k != "weights")
    assert run_json["peak_rss_mb"] > 0 and run_json["code_version"]["commit"]
    assert len(pd.read_csv(run / "metrics.csv")) == 150


# --- splits and model selection --------------------------------------------------------------------------------


def test_splits_keep_train_val_and_test_disjoint_and_grouped_by_prompt(tiny):
    table = Table.load(tiny["data"], tiny["cache"])
    prompt = table.images.prompt_row.to_numpy()
    split = table.images.split.to_numpy()
    default = default_split(table)
    assert (split[default.train_rows] == "train").all() and (split[default.val_rows] == "val").all()
    assert (split[default.eval_rows] == "test").all() and len(default.val_rows) > 0
    for s in [default, *cv_splits(table, 5), *style_splits(table)]:
        parts = [set(prompt[rows].tolist()) for rows in (s.train_rows, s.val_rows, s.eval_rows)]
        assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]), s.name
    folds = table.images.fold.to_numpy()
    fold_1 = cv_splits(table, 5)[1]
    assert set(folds[fold_1.eval_rows]) == {1} and set(folds[fold_1.val_rows]) == {2}
    assert set(folds[fold_1.train_rows]) == {0, 3, 4}
    with pytest.raises(ValueError, match="k >= 3"):
        cv_splits(table, 2)


def test_selected_weights_reproduce_the_best_logged_val_metric(tiny, tmp_path):
    cfg = replace(TINY, steps=60, warmup=5, lr=3e-3, eval_every=5, ckpt_every=60)
    run_json = _train(tiny, tmp_path / "run", cfg)
    evals = [r for r in _log(tmp_path / "run") if "val_spearman_reward" in r]
    assert [r["step"] for r in evals] == list(range(5, 61, 5))
    best = max(evals, key=lambda r: (r["val_spearman_reward"], -r["step"]))  # ties -> the earlier step
    assert run_json["selected_step"] == best["step"]
    assert run_json["val_metrics"]["spearman_reward"] == best["val_spearman_reward"]
    _, examples = _examples(tiny)
    model = load_model(tmp_path / "run")
    device = torch.device("cpu")
    assert evaluate.validate(model, examples, device, "val") == run_json["val_metrics"]
    test = evaluate.validate(model, examples, device, "test")
    assert test == run_json["metrics"] and test["n_eval_images"] == len(examples.split.eval_rows)
    assert run_json["split"]["val_images"] == len(examples.split.val_rows) > 0


def _scripted_val(monkeypatch, values: dict[int, float]) -> None:
    """val Spearman R at each evaluation step from ``values`` (the test split keeps the real metrics)."""
    real = evaluate.validate
    calls = {"step": 0}

    def fake(model, examples, device, part="test"):
        out = real(model, examples, device, part)
        if part == "val":
            out["spearman_reward"] = values[calls["step"]]
        return out

    real_step = train_mod.learning_rate

    def counting(step, cfg):  # called once per step before its evaluation: tells the fake which step it scores
        calls["step"] = step + 1
        return real_step(step, cfg)

    monkeypatch.setattr(evaluate, "validate", fake)
    monkeypatch.setattr(train_mod, "learning_rate", counting)


def test_selection_keeps_an_earlier_step_across_a_resume_and_an_early_stop(tiny, tmp_path, monkeypatch):
    _scripted_val(monkeypatch, {2: 0.5, 4: 0.3, 6: 0.5, 8: 0.2})  # best at step 2; step 6 only ties it
    cfg = replace(TINY, eval_every=2, ckpt_every=4)
    straight = _train(tiny, tmp_path / "straight", cfg)
    assert straight["selected_step"] == 2 and straight["steps_done"] == 8 and not straight["stopped_early"]
    assert straight["val_metrics"]["spearman_reward"] == 0.5
    selected = load_file(tmp_path / "straight" / WEIGHTS_FILE)
    last = load_file(tmp_path / "straight" / train_mod.CHECKPOINT)
    assert any(not torch.equal(selected[k], last[k]) for k in selected)  # the selected model is not the last one

    real_save = train_mod.save_checkpoint

    def save_then_die(run, model, optimizer, step, identity, selection=None):
        real_save(run, model, optimizer, step, identity, selection)
        if step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, tmp_path / "resumed", cfg)
    assert sorted(p.name for p in (tmp_path / "resumed").glob("best-*")) == ["best-step00000002.safetensors"]
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = _train(tiny, tmp_path / "resumed", cfg)  # steps 5..8 only: step 2's weights come from the checkpoint
    assert resumed["selected_step"] == 2 and resumed["selection"]["evaluations"] == 4
    for name, tensor in load_file(tmp_path / "resumed" / WEIGHTS_FILE).items():
        assert torch.equal(tensor, selected[name]), name

    stopped = _train(tiny, tmp_path / "patience", replace(cfg, patience=2))  # evals at 4 and 6 do not improve
    assert stopped["steps_done"] == 6 and stopped["stopped_early"] and not stopped["stopped_by_time_limit"]
    assert stopped["selected_step"] == 2 and max(_losses(tmp_path / "patience")) == 6
    again = _train(tiny, tmp_path / "patience", replace(cfg, patience=2))  # rerun: stays stopped, same model
    assert again["steps_done"] == 6 and again["metrics"] == stopped["metrics"]
    for name, tensor in load_file(tmp_path / "patience" / WEIGHTS_FILE).items():
        assert torch.equal(tensor, selected[name]), name


def test_run_saves_the_component_scorers_behind_its_val_and_test_signals(tiny, tmp_path):
    run_json = _train(tiny, tmp_path / "run", replace(TINY, steps=2))
    table, examples = _examples(tiny)
    assert run_json["components_dir"] == "components"
    assert run_json["encoder"] == json.loads((tiny["cache"] / "meta.json").read_text())["identity"]["encoder"]
    saved = ComponentSet.load(tmp_path / "run" / run_json["components_dir"])
    for rows in (examples.split.val_rows, examples.split.eval_rows):
        assert np.array_equal(component_signals(saved, table, rows), examples.signals[rows])
    train_rows = examples.split.train_rows  # cross-fitted: not what the saved (all-rows) scorers give
    assert not np.array_equal(component_signals(saved, table, train_rows), examples.signals[train_rows])
    card = json.loads((tmp_path / "run" / "components" / "components.json").read_text())
    assert card["fit_rows"] == len(train_rows) and card["encoder"] == run_json["encoder"]


def test_resumed_run_continues_the_same_curve(tiny, tmp_path, monkeypatch):
    _train(tiny, tmp_path / "straight")  # tiny has dropout 0.1: the masks must repeat too
    real_save = train_mod.save_checkpoint

    def save_then_die(run, model, optimizer, step, identity, selection=None):
        real_save(run, model, optimizer, step, identity, selection)
        if step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, tmp_path / "resumed")
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    _train(tiny, tmp_path / "resumed")
    straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 9))
    for step in range(5, 9):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        _train(tiny, tmp_path / "resumed", replace(TINY, lr=1e-2))


def test_training_never_reads_gold(tiny, tmp_path, monkeypatch):
    real_read = pd.read_parquet

    def guarded(path, *args, **kwargs):
        assert "gold" not in Path(path).parts, f"training read {path}"
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", guarded)
    assert _train(tiny, tmp_path / "run", replace(TINY, steps=2))["steps_done"] == 2


def test_cross_validation_and_leave_one_style_out_write_per_fold_summaries(tiny, tmp_path):
    cfg = replace(TINY, steps=2)
    cv = _train(tiny, tmp_path / "cv", cfg, cv=5)
    assert sorted(cv["folds"]) == [f"fold-{k}" for k in range(5)]
    evaluated = [json.loads((tmp_path / "cv" / f / "run.json").read_text())["split"] for f in cv["folds"]]
    assert sum(s["eval_images"] for s in evaluated) == len(pd.read_parquet(tiny["data"] / "images.parquet"))
    rho = [fold["spearman_reward"] for fold in cv["folds"].values()]
    assert cv["mean"]["spearman_reward"] == pytest.approx(np.mean(rho))
    assert cv["std"]["spearman_reward"] == pytest.approx(np.std(rho, ddof=1))
    assert "mean ± std" in (tmp_path / "cv" / "cv.md").read_text()

    loso = _train(tiny, tmp_path / "loso", cfg, leave_one_style_out=True)
    styles = pd.read_parquet(tiny["data"] / "prompts.parquet")["style"].dropna().unique()
    assert sorted(loso["folds"]) == sorted(f"style-{s}" for s in styles)
    assert json.loads((tmp_path / "loso" / "loso.json").read_text())["mean"] == loso["mean"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rewarddance.cli", "train", "reward", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


def test_cli_errors_clearly_without_a_feature_cache(tiny, tmp_path):
    missing = _cli("--data", str(tiny["data"]), "--features", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert missing.returncode == 2
    assert "no finished feature cache" in missing.stderr and "Traceback" not in missing.stderr
    dataset_only = tmp_path / "dataset"
    dataset_only.mkdir()
    (dataset_only / "prompts.parquet").write_bytes((tiny["data"] / "prompts.parquet").read_bytes())
    none = _cli("--data", str(dataset_only), "--out", str(tmp_path / "r"))
    assert none.returncode == 2 and "exactly one cache, found none" in none.stderr
    no_loss = _cli("--data", str(tiny["data"]), "--out", str(tmp_path / "r"), "--no-mse", "--no-bt")
    assert no_loss.returncode == 2 and "both losses" in no_loss.stderr and "Traceback" not in no_loss.stderr


def test_two_ddp_processes_stay_in_sync_and_match_one_process(tiny, tmp_path):
    common = ["--data", str(tiny["data"]), "--scale", "tiny", "--steps", "4", "--warmup", "1", "--lr", "1e-3"]
    common += ["--dropout", "0", "--eval-every", "2", "--patience", "1", "--no-progress"]  # rank 0 decides
    env = {**os.environ, train_mod.CHECKSUM_ENV: "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run(
        [*launcher, "-m", "rewarddance.cli", "train", "reward", *common, "--out", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _cli(*common, "--out", str(tmp_path / "single"), env=env)
    assert single.returncode == 0, single.stderr[-3000:]

    sums = [json.loads((tmp_path / "ddp" / f"checksum-rank{r}.json").read_text())["sha256"] for r in (0, 1)]
    assert sums[0] == sums[1]
    ddp_run, single_run = (json.loads((tmp_path / r / "run.json").read_text()) for r in ("ddp", "single"))
    assert ddp_run["world_size"] == 2 and ddp_run["selection"]["evaluations"] == single_run["selection"]["evaluations"]
    assert ddp_run["selected_step"] == single_run["selected_step"] and ddp_run["steps_done"] == single_run["steps_done"]
    ddp_weights, single_weights = (
        load_file(tmp_path / "ddp" / WEIGHTS_FILE),
        load_file(tmp_path / "single" / WEIGHTS_FILE),
    )
    torch.manual_seed(0)  # the trainer's initialization (seed 0)
    initial = RewardModel(load_model(tmp_path / "single").cfg)
    moved = max((single_weights[k] - v).abs().max().item() for k, v in initial.state_dict().items())
    assert moved > 1e-3  # the comparison below is about trained weights
    for name, tensor in single_weights.items():
        assert (ddp_weights[name] - tensor).abs().max().item() < 1e-4, name
    ddp_losses, single_losses = _losses(tmp_path / "ddp"), _losses(tmp_path / "single")
    assert ddp_losses == pytest.approx(single_losses, abs=1e-4)


def test_a_run_stopped_by_its_time_limit_resumes_under_a_larger_one(tiny, tmp_path):
    cut = _train(tiny, tmp_path / "run", replace(TINY, time_limit=1e-9))  # out of time before the first step
    assert cut["steps_done"] == 0 and cut["stopped_by_time_limit"] and cut["selected_step"] == 0
    full = _train(tiny, tmp_path / "run", TINY)  # the time limit is a budget, not part of the run's identity
    assert full["steps_done"] == 8 and not full["stopped_by_time_limit"] and full["selected_step"] in (4, 8)
    _train(tiny, tmp_path / "straight")
    assert _losses(tmp_path / "run") == _losses(tmp_path / "straight")
    assert full["metrics"] == json.loads((tmp_path / "straight" / "run.json").read_text())["metrics"]
