"""Encoders (open_clip configs, training, resume, checkpoint loading), the feature cache and the P/S/N scorers.

One tiny encoder (32 px, 1-layer ViT, the real pretrained MiniLM text tower) is trained once per session on a
small shapes-world dataset (the ``tiny`` fixture in conftest.py); the orderings below must hold for it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rewarddance_trainer.encoders import train as train_mod
from rewarddance_trainer.encoders.embed import FeatureCache, embed_dataset
from rewarddance_trainer.encoders.model import WEIGHTS_FILE, Encoder
from rewarddance_trainer.shapes.candidates import realize
from rewarddance_trainer.shapes.render import render
from rewarddance_trainer.shapes.world import COLORS, STYLE_WORDS, STYLES, SceneSpec

from rewarddance.components.base import FeatureBatch
from rewarddance.components.bundle import ComponentSet
from rewarddance.components.fidelity import FidelityScorer
from rewarddance.components.novelty import NoveltyScorer


def _specs(data: Path, split: str = "train") -> list[tuple[str, SceneSpec]]:
    prompts = pd.read_parquet(data / "prompts.parquet").merge(pd.read_parquet(data / "gold" / "prompts.parquet"))
    rows = prompts[prompts.split == split]
    return [(r.text, SceneSpec.from_json(r.spec)) for r in rows.itertuples()]


# --- encoder ---------------------------------------------------------------------------------------------------


def test_training_learns_retrieval_above_chance(tiny):
    retrieval = tiny["meta"]["test_retrieval"]
    chance = 1 / retrieval["n"]
    assert retrieval["i2t_r1"] > 2 * chance and retrieval["t2i_r1"] > 2 * chance
    losses = [json.loads(line)["loss"] for line in (tiny["run"] / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert (tiny["run"] / "curves.png").stat().st_size > 0


def test_checkpoint_file_loads_through_open_clip_pretrained_path(tiny):
    pixels = np.stack([render(realize(spec, np.random.default_rng(0)), 32, 0) for _, spec in _specs(tiny["data"])[:4]])
    texts = [text for text, _ in _specs(tiny["data"])[:4]]
    loaded = Encoder.create("shapes-clip-tiny", pretrained=tiny["run"] / WEIGHTS_FILE)
    trained = tiny["encoder"]
    np.testing.assert_array_equal(loaded.encode_images(pixels)[0], trained.encode_images(pixels)[0])
    np.testing.assert_array_equal(loaded.encode_texts(texts).pooled, trained.encode_texts(texts).pooled)
    fresh = Encoder.create("shapes-clip-tiny")
    assert not np.allclose(fresh.encode_images(pixels)[0], trained.encode_images(pixels)[0], atol=1e-3)
    # The text transformer stayed exactly the pretrained MiniLM; only the projection learned.
    for (name, a), b in zip(
        fresh.model.text.transformer.state_dict().items(),
        trained.model.text.transformer.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name


def test_resumed_encoder_run_continues_the_same_curve(tiny, tmp_path, monkeypatch):
    cfg = replace(tiny["config"], steps=8, ckpt_every=4, eval_every=8, warmup=2)
    train_mod.train(tiny["data"], tmp_path / "straight", cfg, progress=False)

    real_save = train_mod._save_checkpoint

    def save_then_die(run, encoder, optimizer, step, c):
        real_save(run, encoder, optimizer, step, c)
        if step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny["data"], tmp_path / "resumed", cfg, progress=False)
    monkeypatch.setattr(train_mod, "_save_checkpoint", real_save)
    train_mod.train(tiny["data"], tmp_path / "resumed", cfg, progress=False)

    def losses(run: Path) -> dict[int, float]:
        return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}

    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 9))
    for step in range(5, 9):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-4)
    with pytest.raises(ValueError, match="other settings"):
        train_mod.train(tiny["data"], tmp_path / "resumed", replace(cfg, lr=1e-3), progress=False)


# --- feature cache ---------------------------------------------------------------------------------------------


def test_feature_cache_holds_what_the_encoder_gives_and_resumes(tiny):
    cache = FeatureCache(tiny["cache"])
    assert cache.meta["complete"]
    images = pd.read_parquet(tiny["data"] / "images.parquet")
    assert cache.ids("image") == images.image_id.tolist()
    from rewarddance.preprocess import load_pixels

    pixels = load_pixels([tiny["data"] / p for p in images.path[:8]], 32)
    pooled, tokens = tiny["encoder"].encode_images(pixels)
    np.testing.assert_allclose(cache.array("image_pooled")[:8], pooled, atol=1e-6)
    np.testing.assert_allclose(cache.array("image_tokens")[:8], tokens, atol=1e-2)  # stored as float16
    assert cache.array("prompt_tokens").shape[1:] == (32, 384)
    assert cache.array("prompt_mask")[:, 0].all()

    before = np.array(cache.array("image_pooled"))
    arr = np.load(tiny["cache"] / "image_pooled.npy", mmap_mode="r+")
    arr[100:] = 0
    arr.flush()
    (tiny["cache"] / "progress.json").write_text(json.dumps({"images": 100, "prompts": 120}))
    embed_dataset(tiny["data"], tiny["run"], tiny["cache"], batch=64, progress_bar=False)
    np.testing.assert_allclose(np.array(cache.array("image_pooled")), before, atol=1e-6)


# --- component scorers -----------------------------------------------------------------------------------------


def _pair_score(components: ComponentSet, encoder: Encoder, text: str, scenes, style: str | None = None):
    pixels = np.stack([render(s, encoder.image_spec.size, 1) for s in scenes])
    image, _ = encoder.encode_images(pixels)
    prompt = np.repeat(encoder.encode_texts([text]).pooled, len(scenes), axis=0)
    batch = FeatureBatch(
        image_embeddings=image,
        prompt_embeddings=prompt,
        pixels=pixels,
        prompts=[text] * len(scenes),
        target_styles=[style] * len(scenes),
    )
    return components.score(batch)


def test_fidelity_prefers_the_right_colour(tiny):
    wins = trials = 0
    rng = np.random.default_rng(0)
    for text, spec in _specs(tiny["data"]):
        if spec.objects[0].color is None:
            continue
        scene = realize(spec, rng)
        first = scene.objects[0]
        wrong = [c for c in COLORS if c != first.color][int(rng.integers(len(COLORS) - 1))]
        scenes = [scene, scene.with_objects([replace(first, color=wrong), *scene.objects[1:]])]
        scores = _pair_score(tiny["components"], tiny["encoder"], text, scenes)[:, 0]
        wins += scores[0] > scores[1]
        trials += 1
    assert trials >= 30
    assert wins / trials >= 0.65, (wins, trials)


def test_style_prefers_the_requested_style_and_coherence(tiny):
    wins = trials = 0
    rng = np.random.default_rng(1)
    for text, spec in _specs(tiny["data"])[:40]:
        scene = realize(spec, rng)
        target = spec.style or STYLES[int(rng.integers(len(STYLES)))]
        other = [s for s in STYLES if s != target][int(rng.integers(len(STYLES) - 1))]
        scenes = [replace(scene, style=target), replace(scene, style=other)]
        scores = _pair_score(tiny["components"], tiny["encoder"], text, scenes, style=target)[:, 1]
        wins += scores[0] > scores[1]
        trials += 1
    assert wins / trials >= 0.65, (wins, trials)  # chance is 0.5; the full-size encoder is measured in benchmarks


def test_style_target_recognised_in_prompt_or_taken_from_request():
    from rewarddance.components.style import StyleScorer

    scorer = StyleScorer({k: list(v) for k, v in STYLE_WORDS.items()}, np.eye(len(STYLES), 8, dtype=np.float32))
    assert scorer.recognise("a red star, soft watercolor") == "watercolor"
    assert scorer.recognise("A Blue Box In 8-Bit Pixel Art") == "pixel-art"
    assert scorer.recognise("a green circle on the left") is None
    batch = FeatureBatch(
        image_embeddings=np.eye(2, 8, dtype=np.float32), prompts=["x, neon glow", "plain"], target_styles=["oil", None]
    )
    assert scorer.targets(batch) == ["oil", None]
    with pytest.raises(ValueError, match="unknown style 'cubism'"):
        scorer.score(replace(batch, target_styles=["cubism", None]))


def test_fidelity_calibration_recovers_a_known_curve():
    rng = np.random.default_rng(0)
    cos = rng.uniform(-0.2, 0.9, 5000)
    targets = 1 / (1 + np.exp(-(8.0 * cos - 3.0)))
    emb = np.stack([np.ones_like(cos), np.zeros_like(cos)], axis=1)
    prompt = np.stack([cos, np.sqrt(1 - cos**2)], axis=1)
    scorer = FidelityScorer().fit(FeatureBatch(image_embeddings=emb, prompt_embeddings=prompt), targets)
    assert scorer.a == pytest.approx(8.0, rel=1e-3) and scorer.b == pytest.approx(-3.0, rel=1e-3)


def test_novelty_is_high_far_from_the_bank_and_calibrated_on_it():
    rng = np.random.default_rng(0)
    centre = np.zeros(16)
    centre[0] = 1
    cluster = centre + 0.1 * rng.normal(size=(2000, 16))
    cluster /= np.linalg.norm(cluster, axis=1, keepdims=True)
    scorer = NoveltyScorer.build(cluster[:1500], k=10)
    inside = scorer.score(FeatureBatch(image_embeddings=cluster[1500:]))
    far = np.zeros((1, 16))
    far[0, 1] = 1
    assert scorer.score(FeatureBatch(image_embeddings=far))[0] == pytest.approx(1.0)
    assert 0.35 < float(np.median(inside)) < 0.65  # held-out in-domain points look like the bank's own


def test_novelty_rates_out_of_domain_pixels_above_renders(tiny):
    encoder, components = tiny["encoder"], tiny["components"]
    renders = np.stack(
        [
            render(realize(spec, np.random.default_rng(i)), 32, i)
            for i, (_, spec) in enumerate(_specs(tiny["data"], "test")[:10])
        ]
    )
    noise = np.random.default_rng(0).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    score = lambda px: components.novelty.score(FeatureBatch(image_embeddings=encoder.encode_images(px)[0]))  # noqa: E731
    assert score(noise).mean() > score(renders).mean() + 0.2


def test_component_set_round_trips_with_identical_scores(tiny, tmp_path):
    table = tiny["table"]
    rows = np.arange(20)
    batch = replace(table.batch(rows), pixels=None)
    feats = np.asarray(table.cache.array("pixel_features")[rows])
    components = tiny["components"]
    components.save(tmp_path, {"note": "test"})
    loaded = ComponentSet.load(tmp_path)
    for name in ("fidelity", "style", "novelty"):
        np.testing.assert_array_equal(getattr(loaded, name).score(batch), getattr(components, name).score(batch))
    np.testing.assert_array_equal(
        loaded.composition.predict_features(feats), components.composition.predict_features(feats)
    )
    assert json.loads((tmp_path / "components.json").read_text())["components"][0] == "fidelity"


def test_hard_negatives_only_enter_the_text_to_image_direction():
    torch.manual_seed(0)
    image, text = torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(2.0)
    base = train_mod.clip_loss(image, text, scale)
    # A negative identical to a text's positive makes that text's choice harder: the loss must rise.
    with_negative = train_mod.clip_loss(torch.cat([image, image[:1]]), text, scale)
    assert with_negative > base
    # A negative pointing away from every text barely changes it.
    far = -torch.nn.functional.normalize(text.sum(0, keepdim=True), dim=-1) * 10
    assert train_mod.clip_loss(torch.cat([image, far]), text, scale) == pytest.approx(base.item(), abs=0.05)
