"""Shared fixtures, built once per test session (rendering and encoder training are the slow parts).

- ``shapes_dataset``: 200 prompts x 8 images at default rater noise;
- ``tiny``: a 120-prompt x 4-image dataset at 32 px, a tiny encoder trained on it, its feature cache and the
  component scorers fitted on the train split (also saved to ``<encoder run>/components``, where the reward
  trainer looks for them);
- ``tiny_reward_run``: a few steps of the ``tiny`` reward scale on it;
- ``tiny_repository``: that run exported (python flavour, with an int8 variant) to a model repository that tests
  must not modify (copy it first): ``image_encoder/1``, ``text_encoder/1``, ``reward_tiny/1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rewarddance_trainer.components.fit import Table, fit_components, style_text_embeddings
from rewarddance_trainer.encoders import train as encoder_train
from rewarddance_trainer.encoders.config import EncoderTrainConfig
from rewarddance_trainer.encoders.embed import embed_dataset
from rewarddance_trainer.encoders.model import Encoder
from rewarddance_trainer.reward import train as reward_train
from rewarddance_trainer.reward.config import RewardTrainConfig
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize
from rewarddance_trainer.shapes.world import STYLE_WORDS

pytest_plugins = ["triton_fixtures"]

TINY_REWARD = RewardTrainConfig(scale="tiny", steps=6, warmup=2, lr=1e-3, eval_every=3, ckpt_every=6)

TINY_ENCODER = EncoderTrainConfig(
    model="shapes-clip-tiny", steps=150, batch_size=32, lr=2e-3, warmup=10, eval_every=50, ckpt_every=150
)


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """200 prompts x 8 images at default rater noise: the size the foundation issue asks to be clean."""
    out = tmp_path_factory.mktemp("shapes") / "ds"
    card = synthesize(out, SynthConfig(n_prompts=200, images_per_prompt=8, seed=7, chunk_prompts=25), progress=False)
    return out, card


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    data = root / "data"
    synthesize(
        data, SynthConfig(n_prompts=120, images_per_prompt=4, image_size=32, seed=3, chunk_prompts=30), progress=False
    )
    run = root / "encoder"
    meta = encoder_train.train(data, run, TINY_ENCODER, progress=False)
    cache = embed_dataset(data, run, data / "features" / "encoder", batch=64, progress_bar=False)
    encoder = Encoder.load(run)
    table = Table.load(data, cache)
    rows = np.flatnonzero(table.images.split.to_numpy() == "train")
    temperature = encoder.model.logit_scale.exp().clamp(max=100).item()
    components = fit_components(table, rows, style_text_embeddings(encoder, STYLE_WORDS), temperature)
    components.save(run / "components", {"encoder": str(run), "features": str(cache), "fit_rows": len(rows)})
    return {
        "config": TINY_ENCODER,
        "data": data,
        "run": run,
        "meta": meta,
        "cache": cache,
        "encoder": encoder,
        "table": table,
        "components": components,
    }


@pytest.fixture(scope="session")
def tiny_reward_run(tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reward") / "run"
    reward_train.train(tiny["data"], tiny["cache"], tiny["run"] / "components", run, TINY_REWARD, progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_repository(tiny_reward_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rewarddance_exporter.export import ExportOptions, export_run

    repo = tmp_path_factory.mktemp("repo") / "model_repository"
    export_run(tiny_reward_run, repo, ExportOptions(flavour="python", precisions=("int8",)), log=lambda _: None)
    return repo
