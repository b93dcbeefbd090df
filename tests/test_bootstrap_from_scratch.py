"""`rewarddance bootstrap --from-scratch` runs the default model's whole recipe: both training stages, resumable."""

from __future__ import annotations

import json

import torch
from rewarddance_exporter.bootstrap import ScratchConfig, from_scratch
from rewarddance_trainer.pixel_reward.model import WEIGHTS_FILE
from safetensors.torch import load_file


def test_from_scratch_trains_the_second_stage_from_the_first(tmp_path):
    cfg = ScratchConfig(
        prompts=30, images_per_prompt=3, scale="tiny", steps=3, eval_every=3, continue_steps=2, continue_lr=2e-3
    )
    run = from_scratch(tmp_path, cfg, progress=False)
    first = tmp_path / "pixel-tiny"
    assert run == tmp_path / "pixel-tiny-continued"
    meta = json.loads((run / "run.json").read_text())
    # the shipped manifest says what the weights carry: the first stage's budget under "init"
    assert meta["init"]["path"] == str(first)
    assert meta["init"]["steps_done"] == 3 and meta["init"]["lr"] == 1e-3 and meta["init"]["seed"] == 0
    assert meta["steps_done"] == 2 and meta["train"]["lr"] == 2e-3 and meta["train"]["seed"] == 1
    a, b = load_file(first / WEIGHTS_FILE), load_file(run / WEIGHTS_FILE)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    # rerunning finds both stages finished and trains nothing
    stamp = (run / "run.json").stat().st_mtime_ns, (first / "run.json").stat().st_mtime_ns
    assert from_scratch(tmp_path, cfg, progress=False) == run
    assert ((run / "run.json").stat().st_mtime_ns, (first / "run.json").stat().st_mtime_ns) == stamp


def test_from_scratch_without_a_second_stage_returns_the_first(tmp_path):
    cfg = ScratchConfig(prompts=30, images_per_prompt=3, scale="tiny", steps=2, eval_every=2, continue_steps=0)
    run = from_scratch(tmp_path, cfg, progress=False)
    assert run == tmp_path / "pixel-tiny" and "init" not in json.loads((run / "run.json").read_text())
    assert not (tmp_path / "pixel-tiny-continued").exists()
