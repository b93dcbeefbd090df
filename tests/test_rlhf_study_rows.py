"""benchmarks/rlhf_study.py --keep: a study grows by one reward model without losing the earlier rows, and refuses
to mix studies that are not comparable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rlhf_study.py"


@pytest.fixture(scope="module")
def study():
    return load_script("rlhf_study")


def _row(model: str, method: str, k: int, gold: float) -> dict:
    step = {"steps": k, "lr": "5e-3"} if method == "rlhf" else {"n": k}  # RL rows name their learning rate
    values = {"proxy_base": 0.4, "proxy_tuned": 0.5, "gold_base": 0.2, "gold_tuned": gold}
    return {
        "reward_model": model,
        "method": method,
        **step,
        "kl": None,
        **values,
        "gold_gain_rel": gold / 0.2 - 1,
        "hacking_gap": 0.25 - (gold / 0.2 - 1),
    }


def _payload(rows: list[dict], **kw) -> dict:
    base = {"generator": "runs/g", "rl_config": {"lr": 5e-3}, "rows": rows, "bon_prompts": None, "bon_n": None}
    return base | {"network": None, "command": "now", "load": (0.5, 0.5, 0.5)} | kw


def test_keep_adds_the_earlier_rows_this_report_does_not_remake(study, tmp_path):
    earlier = _payload(
        [_row("m v3", "rlhf", 10, 0.27), _row("m v3", "rlhf", 20, 0.26), _row("m v3", "best_of_n", 16, 0.25)],
        bon_prompts=48,
        bon_n=16,
        command="then",
    )
    path = tmp_path / "rlhf.json"
    path.write_text(json.dumps(earlier))
    now = _payload([_row("m v4", "rlhf", 10, 0.28), _row("m v3", "rlhf", 20, 0.30)])
    study.keep_earlier(now, path)
    got = {(r["reward_model"], r["method"], r.get("steps", r.get("n"))): r for r in now["rows"]}
    assert len(now["rows"]) == 4
    assert got[("m v3", "rlhf", 20)]["gold_tuned"] == 0.30 and not got[("m v3", "rlhf", 20)].get("earlier")
    assert got[("m v3", "rlhf", 10)]["earlier"] and got[("m v3", "best_of_n", 16)]["gold_tuned"] == 0.25
    assert now["bon_prompts"] == 48 and now["earlier"] == {
        "file": str(path),
        "rows": 2,
        "command": "then",
        "load": [0.5, 0.5, 0.5],
    }
    assert "\\* 2 rows carried over" in study.markdown(now | {"machine": {}, "eval_prompts": 200})


def test_keep_refuses_another_generator_or_other_settings(study, tmp_path):
    path = tmp_path / "rlhf.json"
    path.write_text(json.dumps(_payload([_row("m v3", "rlhf", 10, 0.27)], generator="runs/other")))
    with pytest.raises(SystemExit, match="not comparable"):
        study.keep_earlier(_payload([]), path)
    path.write_text(json.dumps(_payload([], rl_config={"lr": 5e-3, "sample_steps": 20})))
    with pytest.raises(SystemExit, match="not comparable"):
        study.keep_earlier(_payload([]), path)


def test_seed_rows_are_summarised_with_their_spread(study):
    rows = [_row("m v3", "rlhf", 10, g) | {"seed": k, "kl": 0.01} for k, g in enumerate([0.27, 0.25, 0.26])]
    rows.reverse()  # listed out of seed order: the summary sorts them
    rows.append(_row("m v4", "rlhf", 10, 0.28) | {"kl": 0.02})  # one seed: no summary line
    lines = study.seed_summary(rows)
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| m ")]
    assert len(table) == 1
    # gains +35 / +25 / +30 %: mean +30.0, sample sd 5.0
    assert "| 3 | +30.0% ± 5.0 | +35.0% (seed 0), +25.0% (seed 1), +30.0% (seed 2) | 0.260 |" in table[0]
    keys = {study._row_key(r) for r in rows[:3]}
    assert len(keys) == 3  # the seed is part of a row's identity


def test_keep_accepts_another_seed_of_the_same_settings(study, tmp_path):
    path = tmp_path / "rlhf.json"
    path.write_text(json.dumps(_payload([_row("m v3", "rlhf", 10, 0.27)], rl_config={"lr": 5e-3, "seed": 0})))
    now = _payload([_row("m v3", "rlhf", 10, 0.25) | {"seed": 1}], rl_config={"lr": 5e-3, "seed": 1})
    study.keep_earlier(now, path)
    assert sorted(r.get("seed", 0) for r in now["rows"]) == [0, 1]


def test_rows_of_another_learning_rate_are_kept_and_named(study, tmp_path):
    """A constant-lr study and a cosine one share a table; each RL row says which it was, the seed summary keeps
    them apart, and rows the earlier file had carried over keep their origin."""
    path = tmp_path / "rlhf.json"
    old = [_row("m v3", "rlhf", 10, g) | {"seed": k, "kl": 0.01} for k, g in enumerate([0.27, 0.25])]
    for r in old:
        del r["lr"]  # written before rows named their learning rate: the earlier study's rl_config says it
    origin = {"file": "older.json", "rows": 1, "command": "long ago", "load": [1, 1, 1]}
    path.write_text(json.dumps(_payload(old, rl_config={"lr": 5e-3}, earlier=origin)))
    new = [
        _row("m v3", "rlhf", 10, g) | {"seed": k, "kl": 0.01, "lr": "6e-3 cosine"} for k, g in enumerate([0.3, 0.28])
    ]
    now = _payload(new, rl_config={"lr": 6e-3, "lr_schedule": "cosine"})
    study.keep_earlier(now, path)
    assert len(now["rows"]) == 4
    assert sorted(r["lr"] for r in now["rows"]) == ["5e-3", "5e-3", "6e-3 cosine", "6e-3 cosine"]
    assert now["earlier"]["earlier"] == origin
    table = "\n".join(study.seed_summary(now["rows"])).splitlines()
    rows = [line for line in table if line.startswith("| m v3")]
    assert len(rows) == 2
    assert any("| 5e-3 | 10 | 2 | +30.0% ± 7.1 |" in line for line in rows), rows
    assert any("| 6e-3 cosine | 10 | 2 | +45.0% ± 7.1 |" in line for line in rows), rows
    text = study.markdown(now | {"machine": {}, "eval_prompts": 200})
    assert "rlhf (seed 1, lr 6e-3 cosine)" in text and "rlhf (lr 5e-3)" in text


def test_lr_label_names_value_and_schedule(study):
    assert study.lr_label({"lr": 5e-3}) == "5e-3"
    assert study.lr_label({"lr": 6e-3, "lr_schedule": "cosine"}) == "6e-3 cosine"
    assert study.lr_label({"lr": 1.5e-3, "lr_schedule": "constant"}) == "1.5e-3"
    # which weights trained is part of a row's settings: LoRA on every convolution, or the whole UNet
    assert study.lr_label({"lr": 2e-3, "lora_targets": "all"}) == "2e-3 lora-all"
    assert study.lr_label({"lr": 5e-3, "lora_targets": "all", "conv_lr_scale": 0.2}) == "5e-3 lora-all conv x0.2"
    assert study.lr_label({"lr": 1e-4, "lora": False, "lora_targets": "all"}) == "1e-4 full"
    assert study.lr_label({"lr": 5e-3, "lora": True, "lora_targets": "attention", "kl_coef": 0.01}) == "5e-3"
    assert study.lr_label({"lr": 5e-3, "kl_coef": 0.1, "lora_targets": "all"}) == "5e-3 lora-all beta 0.1"
    assert study.lr_label({"lr": 5e-3, "reward_weights": "fidelity=1"}) == "5e-3 weights fidelity=1"
    # the reward's gradient instead of PPO, through the chain's last K steps
    grad = {"lr": 1e-3, "algorithm": "reward-grad", "grad_steps": 2, "lora_targets": "all", "conv_lr_scale": 0.2}
    assert study.lr_label(grad | {"kl_coef": 0.2}) == "1e-3 reward-grad K2 lora-all conv x0.2 beta 0.2"
    assert study.lr_label({"lr": 1e-3, "algorithm": "ppo", "grad_steps": 2}) == "1e-3"
    # an ensemble of reward runs gives the gradient (and, with a penalty, only where its members agree)
    three = grad | {"reward_run": "runs/a,/tmp/b/, c"}
    assert study.lr_label(three) == "1e-3 reward-grad K2 ensemble a+b+c lora-all conv x0.2"
    assert "ensemble a+b+c - 1 sd " in study.lr_label(three | {"reward_ensemble_penalty": 1.0})
    assert "ensemble" not in study.lr_label(grad | {"reward_run": "a"})
    # the batch's shape, when it is not the 8 prompts x 4 samples every earlier study used
    assert study.lr_label(grad | {"prompts_per_step": 16, "samples_per_prompt": 2}).endswith(" batch 16x2")
    assert study.lr_label(grad | {"prompts_per_step": 8, "samples_per_prompt": 4}).endswith("conv x0.2")


def test_keep_earlier_accepts_a_report_that_differs_only_in_adapter_placement(study, tmp_path):
    path = tmp_path / "earlier.json"
    old = [_row("m v3", "rlhf", 10, 0.3) | {"lr": "5e-3"}]
    path.write_text(json.dumps(_payload(old, rl_config={"lr": 5e-3})))
    now = _payload(
        [_row("m v3", "rlhf", 10, 0.35) | {"lr": "5e-3 lora-all"}], rl_config={"lr": 5e-3, "lora_targets": "all"}
    )
    study.keep_earlier(now, path)
    assert sorted(r["lr"] for r in now["rows"]) == ["5e-3", "5e-3 lora-all"]
    other = _payload([], rl_config={"lr": 5e-3, "clip_range": 1e-3})
    with pytest.raises(SystemExit, match="not comparable"):
        study.keep_earlier(other, path)


def test_rows_select_the_evaluation_with_the_best_val_proxy(study, tmp_path, monkeypatch):
    """Early stopping reads only the val split's proxy: at 20 steps the step-10 policy is chosen, gold comes along."""
    from types import SimpleNamespace

    monkeypatch.setattr(study, "model_metrics", lambda repo, name, version: {})
    run = tmp_path / "m-v3"
    run.mkdir()
    secs = {f"seconds_{k}": 1.0 for k in ("sampling", "scoring", "gold", "update")}
    rows = [{"kind": "train", "step": s, **secs} for s in range(20)]
    for step, gold, val in ((0, 0.20, 0.40), (10, 0.26, 0.45), (20, 0.22, 0.43)):
        ev = {"kind": "eval", "step": step, "proxy": 0.5 + step / 100, "gold_utility": gold, "gold_fidelity": 0.1}
        rows += [ev | {"kl": step / 1000}, {"kind": "val", "step": step, "proxy": val}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = study._rows_rl(SimpleNamespace(runs=tmp_path, repo=None), "m@3:20", 0, {"lr": 5e-3})
    assert [r["steps"] for r in out] == [10, 20]
    assert out[1]["gold_tuned"] == 0.22 and out[1]["selected_step"] == 10 and out[1]["gold_selected"] == 0.26
    assert out[1]["gold_gain_selected_rel"] == pytest.approx(0.3)
    assert out[0]["selected_step"] == 10
