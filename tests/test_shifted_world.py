"""The shifted world (evaluation only): unseen wording and another mix, the same gold scores and raters, its own
seed streams; and the standard world's output unchanged by it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rewarddance_trainer.shapes import shifted, world
from rewarddance_trainer.shapes.prompts import describe, sample_spec
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize

from rewarddance.cli import main

VOCABULARIES = ["SHAPE_WORDS", "COLOR_WORDS", "SIZE_WORDS", "POSITION_WORDS", "BACKGROUND_WORDS", "STYLE_WORDS"]
NEW_PHRASES = [w for name in VOCABULARIES for words in getattr(shifted, name).values() for w in words]

# Content of SynthConfig(n_prompts=6, images_per_prompt=3, seed=0, image_size=16) as written before the shifted
# world existed (when it was added, the standard table files were also checked byte-identical); pixels are left
# out so that a Pillow upgrade does not break it.
STANDARD_FINGERPRINT = "5a26d89d2943974f4ced9de33630cad593d7b5726e906a2973f6087dc82ded1b"


def _fingerprint(root: Path) -> str:
    tables = {
        "prompts": pd.read_parquet(root / "prompts.parquet"),
        "specs": pd.read_parquet(root / "gold" / "prompts.parquet"),
        "images": pd.read_parquet(root / "images.parquet", columns=["image_id", "prompt_id", "seed", "settings"]),
        "ratings": pd.read_parquet(root / "ratings.parquet"),
        "pairs": pd.read_parquet(root / "pairs.parquet"),
        "gold": pd.read_parquet(root / "gold" / "gold.parquet").round(9),
    }
    text = json.dumps({k: v.astype(str).values.tolist() for k, v in tables.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _prompts(world_name: str, n: int, seed: int = 0) -> tuple[list, list[str]]:
    rng = np.random.default_rng(seed)
    specs = [sample_spec(rng, world=world_name) for _ in range(n)]
    return specs, [describe(s, rng, world_name) for s in specs]


def test_standard_world_output_is_unchanged(tmp_path):
    config = SynthConfig(n_prompts=6, images_per_prompt=3, seed=0, image_size=16)
    synthesize(tmp_path / "ds", config, workers=1, progress=False)
    assert _fingerprint(tmp_path / "ds") == STANDARD_FINGERPRINT


def test_shifted_vocabulary_and_templates_are_absent_from_the_standard_world():
    _, standard = _prompts("standard", 1000)
    for name in VOCABULARIES:
        old, new = getattr(world, name), getattr(shifted, name)
        assert new.keys() == old.keys()  # same attributes: the gold functions score every one
        for key, words in new.items():
            assert not set(words) & set(old[key]), (name, key)
    text = "\n".join(standard)
    assert [p for p in NEW_PHRASES if re.search(rf"\b{re.escape(p)}\b", text)] == []
    assert [m for m in shifted.MARKERS if m in text] == []


def test_shifted_prompts_use_new_templates_and_synonyms_and_name_every_attribute():
    specs, texts = _prompts("shifted", 300)
    assert all(any(m in t for m in shifted.MARKERS) for t in texts)
    with_new = [t for t in texts if any(re.search(rf"\b{re.escape(p)}\b", t) for p in NEW_PHRASES)]
    assert len(with_new) > 0.7 * len(texts)
    assert any(re.search(r"^(draw |show me |I want |could you make )?an? \w+, \w+", t) for t in texts)  # reordered
    for spec, text in zip(specs, texts, strict=True):
        for obj in spec.objects:
            assert any(w in text for w in world.SHAPE_WORDS[obj.shape] + shifted.SHAPE_WORDS[obj.shape])
            if obj.color:
                assert any(w in text for w in world.COLOR_WORDS[obj.color] + shifted.COLOR_WORDS[obj.color])
            if obj.position:
                words = world.POSITION_WORDS[obj.position] + shifted.POSITION_WORDS[obj.position]
                assert any(w in text for w in words)
        if spec.style:
            assert any(w in text for w in world.STYLE_WORDS[spec.style] + shifted.STYLE_WORDS[spec.style])


def test_shifted_mix_has_more_objects_and_rarer_combinations_under_the_fixed_prior():
    prior = world.domain_prior()

    def stats(specs: list) -> tuple[float, float]:
        three = np.mean([len(s.objects) == 3 for s in specs])
        colors, shapes = list(world.COLORS), world.SHAPES
        named = [(shapes.index(o.shape), colors.index(o.color)) for s in specs for o in s.objects if o.color]
        surprisal = np.mean([-np.log(prior.color_given_shape[s, c]) for s, c in named])
        return three, surprisal

    std_three, std_surprisal = stats(_prompts("standard", 600)[0])
    new_three, new_surprisal = stats(_prompts("shifted", 600)[0])
    assert new_three > std_three + 0.2
    assert new_surprisal > std_surprisal + 0.3


def test_unknown_world_is_refused():
    with pytest.raises(ValueError, match="unknown world"):
        SynthConfig(world="mars")
    with pytest.raises(ValueError, match="unknown world"):
        describe(world.SceneSpec(objects=(world.ObjectSpec("star"),)), np.random.default_rng(0), "mars")


def test_shifted_dataset_is_valid_deterministic_and_has_its_own_seeds(tmp_path, capsys):
    a = tmp_path / "a"
    args = ["--prompts", "6", "--images-per-prompt", "3", "--image-size", "16", "--seed", "0", "--workers", "1"]
    assert main(["data", "synth", "--world", "shifted", *args, "--out", str(a), "--no-progress"]) == 0
    assert main(["data", "validate", str(a)]) == 0
    card = json.loads((a / "card.json").read_text())
    assert card["world"] == card["config"]["world"] == "shifted"
    assert set(card["noise_ceiling"]["spearman_vs_mean_rating"]) >= {"fidelity", "style", "composition", "novelty"}
    texts = pd.read_parquet(a / "prompts.parquet").text
    assert all(any(m in t for m in shifted.MARKERS) for t in texts)
    gold = pd.read_parquet(a / "gold" / "gold.parquet")
    assert (gold[gold.image_id.str.endswith("_000")].fidelity == 1.0).all()  # the first candidate is faithful
    assert gold[["fidelity", "style", "composition", "novelty", "utility"]].stack().between(0, 1).all()

    config = SynthConfig(n_prompts=6, images_per_prompt=3, seed=0, image_size=16, chunk_prompts=2, world="shifted")
    synthesize(tmp_path / "b", config, workers=1, progress=False)
    assert _fingerprint(a) == _fingerprint(tmp_path / "b")  # same seed, other chunking: same dataset

    standard = SynthConfig(n_prompts=6, images_per_prompt=3, seed=0, image_size=16)
    synthesize(tmp_path / "s", standard, workers=1, progress=False)
    std = pd.read_parquet(tmp_path / "s" / "images.parquet")
    assert not set(std.seed) & set(pd.read_parquet(a / "images.parquet").seed)  # no replayed draws
