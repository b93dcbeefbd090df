"""Shared fixtures: one small shapes-world dataset per test session (rendering is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """200 prompts x 8 images at default rater noise: the size the foundation issue asks to be clean."""
    out = tmp_path_factory.mktemp("shapes") / "ds"
    card = synthesize(out, SynthConfig(n_prompts=200, images_per_prompt=8, seed=7, chunk_prompts=25), progress=False)
    return out, card
