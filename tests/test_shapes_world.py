"""The shapes-world simulator: gold scores, renderer, raters, determinism, resume, and the dataset it writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from rewarddance_trainer.data.validate import validate_dataset
from rewarddance_trainer.shapes import gold, synth
from rewarddance_trainer.shapes.candidates import perturb, realize
from rewarddance_trainer.shapes.prompts import describe, sample_spec
from rewarddance_trainer.shapes.raters import RaterConfig, davidson_probabilities, likert, make_pool
from rewarddance_trainer.shapes.render import render
from rewarddance_trainer.shapes.world import (
    COLOR_WORDS,
    STYLES,
    ObjectSpec,
    Scene,
    SceneObject,
    SceneSpec,
    domain_prior,
    position_of,
)
from scipy.stats import spearmanr

from rewarddance.cli import main

COMPONENTS = ["fidelity", "style", "composition", "novelty"]


def _spec() -> SceneSpec:
    return SceneSpec(
        objects=(
            ObjectSpec("star", "red", "medium", "top left"),
            ObjectSpec("circle", "blue", None, "bottom right"),
        ),
        background="white",
        style="watercolor",
    )


def _faithful() -> Scene:
    return Scene(
        objects=(
            SceneObject("star", "red", "medium", 0.28, 0.28, source=0),
            SceneObject("circle", "blue", "large", 0.72, 0.72, source=1),
        ),
        background="white",
        style="watercolor",
    )


# --- gold scores -------------------------------------------------------------------------------------------


def test_fidelity_counts_satisfied_attributes():
    spec, scene = _spec(), _faithful()
    assert spec.n_attributes == 8  # star: 4, circle: shape+color+position = 3, background 1
    assert gold.fidelity(spec, scene) == 1.0
    wrong_color = scene.with_objects([replace(scene.objects[0], color="green"), scene.objects[1]])
    assert gold.fidelity(spec, wrong_color) == pytest.approx(7 / 8)
    missing = scene.with_objects([scene.objects[1]])
    assert gold.fidelity(spec, missing) == pytest.approx(4 / 8)
    extra = scene.with_objects([*scene.objects, SceneObject("square", "pink", "small", 0.5, 0.5)])
    assert gold.fidelity(spec, extra) == pytest.approx(8 / 9)
    moved = scene.with_objects([replace(scene.objects[0], x=0.72), scene.objects[1]])
    assert position_of(0.72, 0.28) == "top right"
    assert gold.fidelity(spec, moved) == pytest.approx(7 / 8)


def test_style_is_weight_of_requested_style_or_coherence():
    spec, scene = _spec(), _faithful()
    assert gold.style(spec, scene) == 1.0
    assert gold.style(spec, replace(scene, style_mix="neon", style_weight=0.6)) == pytest.approx(0.6)
    assert gold.style(spec, replace(scene, style="neon", style_mix="watercolor", style_weight=0.7)) == pytest.approx(
        0.3
    )
    assert gold.style(spec, replace(scene, style="oil")) == 0.0
    no_style = replace(spec, style=None)
    assert gold.style(no_style, replace(scene, style_mix="neon", style_weight=0.5)) == pytest.approx(0.0)
    assert gold.style(no_style, replace(scene, style_mix="neon", style_weight=0.9)) == pytest.approx(0.8)


def test_composition_penalises_cutoff_overlap_and_crowding():
    scene = _faithful()
    good = gold.composition(scene)
    cut = gold.composition(scene.with_objects([replace(scene.objects[0], x=0.0), scene.objects[1]]))
    overlap = gold.composition(scene.with_objects([scene.objects[0], replace(scene.objects[1], x=0.3, y=0.3)]))
    assert good > 0.5
    assert cut < good - 0.2
    assert overlap < good - 0.2


def test_novelty_rises_with_rare_colour_for_shape():
    prior = domain_prior()
    star = 3  # index of "star" in SHAPES
    colors = list(COLOR_WORDS)
    common, rare = (
        colors[int(np.argmax(prior.color_given_shape[star]))],
        colors[int(np.argmin(prior.color_given_shape[star]))],
    )
    scene = Scene(objects=(SceneObject("star", common, "medium", 0.5, 0.5),), background="white", style="flat")
    assert gold.novelty(replace(scene, objects=(replace(scene.objects[0], color=rare),))) > gold.novelty(scene) + 0.3
    assert 0.0 <= gold.novelty(scene) <= 1.0


def test_rare_combo_raises_novelty_without_touching_fidelity():
    spec = SceneSpec(objects=(ObjectSpec("hexagon", None, "large", "center"),))
    rng = np.random.default_rng(3)
    scene = realize(spec, rng)
    rare = perturb(scene, spec, "rare_combo", rng)
    assert gold.fidelity(spec, rare) == 1.0
    assert gold.novelty(rare) >= gold.novelty(scene)


# --- renderer and prompts -----------------------------------------------------------------------------------


def test_styles_render_distinctly_and_deterministically():
    scene = _faithful()
    images = {s: render(replace(scene, style=s), 64, seed=1).astype(float) for s in STYLES}
    for i, a in enumerate(STYLES):
        for b in STYLES[i + 1 :]:
            assert np.abs(images[a] - images[b]).mean() > 4.0, (a, b)
    assert np.array_equal(render(scene, 64, seed=5), render(scene, 64, seed=5))
    assert render(scene, 32, seed=0).shape == (32, 32, 3)


def test_rendered_colour_is_visible_where_the_object_is():
    scene = Scene(objects=(SceneObject("square", "red", "large", 0.5, 0.5),), background="white", style="flat")
    img = render(scene, 64, seed=0)
    assert tuple(img[32, 32]) == (215, 38, 38)
    assert tuple(img[2, 2]) == (244, 244, 240)


def test_paraphrases_differ_but_name_the_same_attributes():
    spec = SceneSpec(objects=(ObjectSpec("star", "red", "small", "top left"),), style="neon")
    texts = {describe(spec, np.random.default_rng(s)) for s in range(12)}
    assert len(texts) > 4
    for text in texts:
        assert any(w in text for w in COLOR_WORDS["red"])
        assert "star" in text


def test_sampled_specs_cover_counts_styles_and_omissions():
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng) for _ in range(300)]
    assert {len(s.objects) for s in specs} == {1, 2, 3}
    assert {s.style for s in specs} == {*STYLES, None}
    assert any(o.color is None for s in specs for o in s.objects)


# --- raters --------------------------------------------------------------------------------------------------


def test_noiseless_raters_track_gold_better_than_noisy_ones():
    g = np.random.default_rng(0).random((2000, 4))

    def rho(noise: float) -> float:
        rng = np.random.default_rng(1)
        pool = make_pool(RaterConfig(noise=noise, bias_sd=0.0 if noise == 0 else 0.25), rng)
        raters = np.stack([rng.choice(60, 3, replace=False) for _ in g])
        mean = likert(g, raters, pool, rng).mean(axis=1)
        return float(spearmanr(g[:, 0], mean[:, 0])[0])

    assert rho(0.0) > 0.95
    assert rho(0.0) > rho(1.0) > rho(3.0) + 0.05


def test_davidson_probabilities_sum_to_one_and_favour_higher_utility():
    p = davidson_probabilities(np.array([0.8, 0.5]), np.array([0.5, 0.5]), RaterConfig())
    assert np.allclose(p.sum(axis=1), 1)
    assert p[0, 0] > 0.9
    assert p[1, 0] == pytest.approx(p[1, 1])


# --- the dataset ---------------------------------------------------------------------------------------------


def test_dataset_is_valid_and_complete(shapes_dataset):
    root, card = shapes_dataset
    assert validate_dataset(root) == []
    assert card["counts"] == {"prompts": 200, "images": 1600, "ratings": 4800, "pairs": 1600}
    images = pq.read_table(root / "images.parquet")
    assert not {"scene", "utility", "fidelity"} & set(images.column_names)  # gold stays in gold/
    assert (root / "gold" / "gold.parquet").exists()
    prompts = pd.read_parquet(root / "prompts.parquet")
    assert sorted(prompts.fold.value_counts()) == [40] * 5
    assert set(prompts.loc[prompts.fold == 4, "split"]) == {"test"}
    assert prompts["style"].isna().any() and prompts["style"].notna().mean() > 0.6


def test_mean_ratings_track_gold(shapes_dataset):
    root, card = shapes_dataset
    ratings = pd.read_parquet(root / "ratings.parquet")
    assert ratings.groupby("image_id").size().min() >= 3
    mean = ratings.groupby("image_id")[COMPONENTS].mean()
    g = pd.read_parquet(root / "gold" / "gold.parquet").set_index("image_id").loc[mean.index]
    for c in COMPONENTS:
        rho = spearmanr(g[c], mean[c])[0]
        assert rho >= 0.8, (c, rho)
        assert card["noise_ceiling"]["spearman_vs_mean_rating"][c] == pytest.approx(rho)


def test_pair_labels_agree_with_utility_at_the_implied_rate(shapes_dataset):
    root, card = shapes_dataset
    pairs = pd.read_parquet(root / "pairs.parquet")
    u = pd.read_parquet(root / "gold" / "gold.parquet").set_index("image_id")["utility"]
    ua, ub = u.loc[pairs.image_a].to_numpy(), u.loc[pairs.image_b].to_numpy()
    decided = (pairs.winner != "tie").to_numpy() & (ua != ub)
    agree = np.where(ua > ub, pairs.winner == "a", pairs.winner == "b")[decided].mean()
    probs = davidson_probabilities(ua, ub, RaterConfig())
    distinct = ua != ub
    expected = np.where(ua > ub, probs[:, 0], probs[:, 1])[distinct].sum() / probs[distinct, :2].sum()
    se = np.sqrt(expected * (1 - expected) / decided.sum())
    assert abs(agree - expected) < 3 * se
    assert 0.6 < agree < 1.0
    ceiling = card["noise_ceiling"]
    assert ceiling["pairwise_accuracy"] == pytest.approx(agree)
    assert ceiling["pairwise_accuracy_expected"] == pytest.approx(expected, abs=1e-6)
    tie_rate = (pairs.winner == "tie").mean()
    assert ceiling["tie_rate"] == pytest.approx(tie_rate)
    assert 0.0 < tie_rate < 0.3


def test_pairs_stay_within_their_prompt(shapes_dataset):
    root, _ = shapes_dataset
    pairs = pd.read_parquet(root / "pairs.parquet")
    assert (pairs.image_a.str[:7] == pairs.prompt_id).all() and (pairs.image_b.str[:7] == pairs.prompt_id).all()
    assert (pairs.image_a != pairs.image_b).all()


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    names = ["prompts", "images", "ratings", "pairs"]
    out = {n: pd.read_parquet(root / f"{n}.parquet") for n in names}
    out["gold"] = pd.read_parquet(root / "gold" / "gold.parquet")
    return out


def _assert_same(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True)
    for path in ta["images"].path:
        assert (a / path).read_bytes() == (b / path).read_bytes()


def test_same_seed_same_dataset_regardless_of_workers_and_chunks(tmp_path):
    cfg = synth.SynthConfig(n_prompts=12, images_per_prompt=4, seed=11, chunk_prompts=5)
    synth.synthesize(tmp_path / "a", cfg, workers=1, progress=False)
    synth.synthesize(tmp_path / "b", replace(cfg, chunk_prompts=3), workers=2, progress=False)
    _assert_same(tmp_path / "a", tmp_path / "b")
    synth.synthesize(tmp_path / "c", replace(cfg, seed=12), workers=1, progress=False)
    assert not _tables(tmp_path / "a")["images"].sha256.equals(_tables(tmp_path / "c")["images"].sha256)


def test_interrupted_run_resumes_to_the_same_dataset(tmp_path, monkeypatch):
    cfg = synth.SynthConfig(n_prompts=12, images_per_prompt=3, seed=5, chunk_prompts=4)
    synth.synthesize(tmp_path / "full", cfg, workers=1, progress=False)

    real = synth._run_chunk
    calls = []

    def dies_on_third_chunk(job):
        calls.append(job[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(synth, "_run_chunk", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(tmp_path / "resumed", cfg, workers=1, progress=False)
    assert len(list((tmp_path / "resumed" / ".parts").glob("chunk_?????"))) == 2
    monkeypatch.setattr(synth, "_run_chunk", real)
    card = synth.synthesize(tmp_path / "resumed", cfg, workers=1, progress=False)
    assert card["run"]["rendered_this_run"] == 4 * 3  # only the missing chunk was rendered
    _assert_same(tmp_path / "full", tmp_path / "resumed")
    with pytest.raises(FileExistsError):
        synth.synthesize(tmp_path / "resumed", cfg, workers=1, progress=False)


def test_resume_with_other_settings_is_refused(tmp_path):
    (tmp_path / ".parts").mkdir()
    (tmp_path / ".parts" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="different settings"):
        synth.synthesize(tmp_path, synth.SynthConfig(n_prompts=2, images_per_prompt=2), workers=1, progress=False)


# --- command line -------------------------------------------------------------------------------------------


def test_cli_synth_writes_dataset_and_preview(tmp_path, capsys):
    out, sheet = tmp_path / "ds", tmp_path / "sheet.png"
    code = main(
        [
            "data",
            "synth",
            "--prompts",
            "6",
            "--images-per-prompt",
            "4",
            "--out",
            str(out),
            "--preview",
            str(sheet),
            "--no-progress",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    assert "noise ceiling" in capsys.readouterr().out
    with Image.open(sheet) as img:
        assert img.width >= 4 * 128 and img.height >= 6 * 128
    assert main(["data", "validate", str(out)]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompts", "0"], "at least 1"),
        (["--raters-per-image", "80"], "rater pool"),
        (["--utility-weights", "1", "-1", "0", "0"], "utility weights"),
    ],
)
def test_cli_synth_rejects_bad_settings(tmp_path, capsys, args, message):
    assert main(["data", "synth", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [[], ["data"], ["data", "synth"], ["data", "validate"], ["data", "import"], ["data", "preview"], ["demo"]],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: rewarddance" in capsys.readouterr().out
