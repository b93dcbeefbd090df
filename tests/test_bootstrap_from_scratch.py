"""`rewarddance bootstrap --from-scratch` runs the default model's whole recipe: every training stage, resumable."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import torch
from rewarddance_exporter.bootstrap import ScratchConfig, from_scratch
from rewarddance_trainer.pixel_reward.model import WEIGHTS_FILE
from safetensors.torch import load_file


def test_from_scratch_trains_each_stage_from_the_one_before(tmp_path):
    cfg = ScratchConfig(
        prompts=30,
        images_per_prompt=3,
        scale="tiny",
        steps=3,
        eval_every=3,
        continue_steps=2,
        continue_lr=2e-3,
        continue_stages=2,
        final_steps=2,
        final_stages=2,
        fresh_stages=1,
        soup_arms=2,
    )
    soup = from_scratch(tmp_path, cfg, progress=False)
    fresh = tmp_path / "pixel-tiny-stage6"
    first, second, run = tmp_path / "pixel-tiny", tmp_path / "pixel-tiny-stage2", tmp_path / "pixel-tiny-stage3"
    last = tmp_path / "pixel-tiny-stage5"
    # the last stage twice from the same weights (seeds 5 and 6), and the model returned is their soup
    assert soup == tmp_path / "pixel-tiny-soup"
    members = json.loads((soup / "run.json").read_text())["soup"]["members"]
    assert [(m["path"], m["seed"]) for m in members] == [(str(fresh), 5), (str(tmp_path / "pixel-tiny-stage6-arm2"), 6)]
    arm2 = json.loads((tmp_path / "pixel-tiny-stage6-arm2" / "run.json").read_text())
    assert arm2["init"]["path"] == str(last) and arm2["data"]["path"] == str(tmp_path / "shapes-seed1")
    # the fresh-prompt stage renders a dataset of its own (the next seed: other prompts) and trains on it from stage 5
    fresh_json = json.loads((fresh / "run.json").read_text())
    own = json.loads((tmp_path / "shapes-seed1" / "card.json").read_text())
    assert own["config"]["seed"] == 1 and fresh_json["data"]["path"] == str(tmp_path / "shapes-seed1")
    assert fresh_json["data"]["table_sha256"] == own["table_sha256"]
    assert json.loads((last / "run.json").read_text())["data"]["path"] == str(tmp_path / "shapes")
    first_texts = set(pd.read_parquet(tmp_path / "shapes" / "prompts.parquet").text)
    assert set(pd.read_parquet(tmp_path / "shapes-seed1" / "prompts.parquet").text) != first_texts
    assert fresh_json["init"]["path"] == str(last) and fresh_json["train"]["seed"] == 5
    assert fresh_json["train"]["component_listwise_heads"] == "fidelity"
    # the final stages add the per-head listwise term on the fidelity head, each from the one before
    for k, stage in ((4, tmp_path / "pixel-tiny-stage4"), (5, last)):
        final = json.loads((stage / "run.json").read_text())
        assert final["train"]["component_listwise_weight"] == 1.0 and final["train"]["seed"] == k - 1
        assert final["train"]["component_listwise_heads"] == "fidelity" and final["steps_done"] == 2
    assert json.loads((last / "run.json").read_text())["init"]["path"] == str(tmp_path / "pixel-tiny-stage4")
    assert json.loads((tmp_path / "pixel-tiny-stage4" / "run.json").read_text())["init"]["path"] == str(run)
    assert json.loads((run / "run.json").read_text())["train"]["component_listwise_weight"] == 0.0
    meta = json.loads((run / "run.json").read_text())
    # the shipped manifest says what the weights carry: the earlier stages' budgets under "init", nested
    assert meta["steps_done"] == 2 and meta["train"]["lr"] == 2e-3 and meta["train"]["seed"] == 2
    assert meta["init"]["path"] == str(second) and meta["init"]["seed"] == 1 and meta["init"]["lr"] == 2e-3
    assert meta["init"]["init"]["path"] == str(first) and meta["init"]["init"]["steps_done"] == 3
    assert meta["init"]["init"]["lr"] == 1e-3 and meta["init"]["init"]["seed"] == 0
    weights = [load_file(r / WEIGHTS_FILE) for r in (first, second, run)]
    for a, b in itertools.pairwise(weights):
        assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    # rerunning finds every stage finished and trains nothing
    every = (first, second, run, tmp_path / "pixel-tiny-stage4", last, fresh, tmp_path / "pixel-tiny-stage6-arm2", soup)
    stamps = [(r / "run.json").stat().st_mtime_ns for r in every]
    assert from_scratch(tmp_path, cfg, progress=False) == soup
    assert [(r / "run.json").stat().st_mtime_ns for r in every] == stamps


def test_from_scratch_without_a_second_stage_returns_the_first(tmp_path):
    cfg = ScratchConfig(prompts=30, images_per_prompt=3, scale="tiny", steps=2, eval_every=2, continue_steps=0)
    run = from_scratch(tmp_path, cfg, progress=False)
    assert run == tmp_path / "pixel-tiny" and "init" not in json.loads((run / "run.json").read_text())
    assert not (tmp_path / "pixel-tiny-stage2").exists()


def test_the_default_recipe_is_the_one_the_shipped_model_was_made_by():
    """`bootstrap --from-scratch` with its defaults retrains the shipped model: same stages, budgets, rates, seeds
    (the shipped run.json nests every earlier stage under "init") and the last stage's loss settings."""
    from rewarddance_exporter.bootstrap import DEFAULT_MODEL, data_seeds, stages
    from rewarddance_trainer.pixel_reward.train import earlier_stages

    shipped = json.loads((DEFAULT_MODEL / "run.json").read_text())
    recipe = stages(ScratchConfig())
    chain = [*earlier_stages(shipped), {"steps_done": shipped["steps_done"], **shipped["train"]}]
    assert [(s["steps_done"], s["lr"], s["seed"]) for s in chain] == [(c.steps, c.lr, c.seed) for c in recipe]
    last = shipped["train"]
    assert last["component_listwise_weight"] == recipe[-1].component_listwise_weight > 0
    assert last["component_listwise_heads"] == recipe[-1].component_listwise_heads == "fidelity"
    assert shipped["scale"] == recipe[-1].scale
    # the last five stages trained on fresh prompts: datasets rendered at the next seeds (ship_default_model.py
    # records each dataset's seed from its card)
    assert data_seeds(ScratchConfig())[-6:] == [0, 1, 2, 3, 4, 5] and shipped["data"]["seed"] == 5
    # and the shipped weights are the soup of the last stage's arms, at the recipe's seeds, on that dataset
    members = shipped["soup"]["members"]
    assert [m["seed"] for m in members] == [recipe[-1].seed + j for j in range(ScratchConfig().soup_arms)]
    assert all(m["steps_done"] == recipe[-1].steps and m["data"] == shipped["data"]["path"] for m in members)
