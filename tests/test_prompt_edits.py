"""Hard negatives for the pixel reward model: one-attribute prompt edits (text only, from the world's vocabulary),
their prompt-state cache, and the edited-prompt ranking term in training."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rewarddance_trainer.pixel_reward import train as pixel_train
from rewarddance_trainer.pixel_reward.config import PixelTrainConfig, load_scale
from rewarddance_trainer.pixel_reward.edits import EDITABLE, edit_prompt, edited_texts
from rewarddance_trainer.pixel_reward.model import PixelRewardModel
from rewarddance_trainer.pixel_reward.text import build_cache, cache_dir, load_cache
from rewarddance_trainer.shapes.prompts import describe, sample_spec
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize


def _one_phrase_swapped(text: str, edited: str, kind: str) -> bool:
    """Whether ``edited`` is ``text`` with one phrase of ``kind`` replaced by a phrase of another value of that
    kind (articles aside), by brute force over every occurrence and every replacement."""
    norm = lambda t: re.sub(r"\b(a|an) ", "a ", t)  # noqa: E731
    for value, phrases in EDITABLE[kind].items():
        for phrase in phrases:
            for m in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text):
                for other, replacements in EDITABLE[kind].items():
                    if other != value and any(
                        norm(text[: m.start()] + q + text[m.end() :]) == norm(edited) for q in replacements
                    ):
                        return True
    return False


def test_an_edit_changes_one_attribute_to_another_value_of_its_kind():
    rng = np.random.default_rng(0)
    kinds = []
    for i in range(300):
        text = describe(sample_spec(rng), rng)
        edited, kind = edit_prompt(text, np.random.default_rng(i))
        kinds.append(kind)
        assert kind in EDITABLE and edited != text
        assert _one_phrase_swapped(text, edited, kind), (text, edited)
        assert not re.search(r"\ba [aeiou]|\ban [^aeiou\W]", edited), edited  # the article follows the new word
    assert set(kinds) == set(EDITABLE)  # colours, shapes and positions all get edited
    assert edited_texts([text] * 2, seed=3) == edited_texts([text] * 2, seed=3)


def test_background_and_style_words_are_never_edited():
    text = "a circle on a sky blue background, glowing neon sign"
    for seed in range(20):
        edited, kind = edit_prompt(text, np.random.default_rng(seed))
        assert kind == "shape" and "sky blue background, glowing neon sign" in edited
    assert edit_prompt("a picture of nothing", np.random.default_rng(0)) == ("a picture of nothing", "")
    assert edit_prompt("an orange disc", np.random.default_rng(1))[0].startswith(("a ", "an "))


def test_edit_swap_loss_uses_the_best_rated_candidates():
    torch.manual_seed(0)
    model = PixelRewardModel(load_scale("tiny"))
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (4, 64, 64, 3), generator=g, dtype=torch.uint8)
    tokens, edited = torch.randn(4, 8, 384, generator=g), torch.randn(4, 8, 384, generator=g)
    mask = torch.ones(4, 8, dtype=torch.bool)
    image = model.image_tokens(pixels)
    own = model.fuse(image, tokens, mask)
    group = np.array([0, 0, 1, 1])
    fidelity = torch.tensor([0.2, 0.9, float("nan"), 0.5])
    loss = pixel_train.edit_swap_loss(model, image, own, edited, mask, group, fidelity, per_group=1)
    chosen = [1, 3]  # the better-rated candidate of each prompt; an unrated one counts as the worst
    expected = torch.nn.functional.softplus(
        model.fuse(image[chosen], edited[chosen], mask[chosen])[:, 0] - own[chosen, 0]
    )
    assert float(loss) == pytest.approx(float(expected.mean()), rel=1e-5)
    higher_own = own.clone()
    higher_own[:, 0] += 5.0
    assert float(pixel_train.edit_swap_loss(model, image, higher_own, edited, mask, group, fidelity, 1)) < float(loss)


@pytest.fixture(scope="module")
def edited_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("edits") / "data"
    synthesize(data, SynthConfig(n_prompts=40, images_per_prompt=4, seed=5, chunk_prompts=40), progress=False)
    build_cache(data, progress=False)
    return data


def test_edited_cache_holds_the_edited_prompts_and_training_uses_it(edited_data: Path, tmp_path: Path):
    cfg = PixelTrainConfig(
        scale="tiny", steps=4, prompts_per_batch=4, images_per_prompt=4, warmup=1, eval_every=4, val_prompts=5,
        test_prompts=0, ckpt_every=4, workers=0, edit_swap_weight=1.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="--edited"):
        pixel_train.train(edited_data, tmp_path / "refused", cfg, progress=False)
    build_cache(edited_data, progress=False, edited=True)
    texts = pd.read_parquet(edited_data / "prompts.parquet").text.tolist()
    edits = pd.read_parquet(cache_dir(edited_data, edited=True) / "edits.parquet")
    assert edits.text.tolist() == edited_texts(texts)[0] and (edits.text != pd.Series(texts)).all()
    own, other = load_cache(edited_data), load_cache(edited_data, edited=True)
    assert own[0].shape == other[0].shape and not np.array_equal(own[0][0], other[0][0])

    run_info = pixel_train.train(edited_data, tmp_path / "run", cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["edit_swap"] > 0 for r in records)  # softplus: positive whenever computed
    assert run_info["train"]["edit_swap_weight"] == 1.0

    # a stale edit version is refused, not silently used
    copy = tmp_path / "copy"
    shutil.copytree(edited_data, copy)
    meta = cache_dir(copy, edited=True) / "meta.json"
    meta.write_text(meta.read_text().replace('"edits_version": 1', '"edits_version": 0'))
    with pytest.raises(ValueError, match="--edited"):
        load_cache(copy, edited=True)


def test_runs_without_the_term_keep_their_identity(edited_data: Path, tmp_path: Path):
    """A run started before edit_swap_weight existed (its identity lacks the key) resumes when the term is off."""
    cfg = PixelTrainConfig(
        scale="tiny", steps=2, prompts_per_batch=4, images_per_prompt=4, warmup=1, eval_every=2, val_prompts=5,
        test_prompts=0, ckpt_every=1, workers=0,
    )  # fmt: skip
    pixel_train.train(edited_data, tmp_path / "run", cfg, progress=False)
    state = torch.load(tmp_path / "run" / pixel_train.TRAIN_STATE, weights_only=False)
    assert "edit_swap_weight" not in state["identity"]["train"]
    assert pixel_train.train(edited_data, tmp_path / "run", cfg, progress=False)["steps_done"] == 2  # resumed, done
