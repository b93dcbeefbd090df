"""The independent gold oracle: prompt parsing, correct renders ranked above wrong ones, agreement with the simulator's
gold on fresh renders, style reading, the eval CLI, and that fitting works end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rewarddance_trainer.oracle.fit import OracleFitConfig, fit_oracle, render_scenes
from rewarddance_trainer.oracle.oracle import DEFAULT_DIR, Oracle, fidelity, style_score
from rewarddance_trainer.oracle.parse import parse_prompt
from rewarddance_trainer.shapes import gold
from rewarddance_trainer.shapes.candidates import candidates, perturb, realize
from rewarddance_trainer.shapes.prompts import describe, sample_spec
from rewarddance_trainer.shapes.render import render
from rewarddance_trainer.shapes.world import COLORS, SHAPES, STYLES, ObjectSpec, SceneSpec
from scipy.stats import spearmanr

from rewarddance.cli import main


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle.load(DEFAULT_DIR)  # the fitted oracle shipped with the package (`eval oracle --fit` rebuilds it)


def test_parse_recovers_the_spec_of_every_paraphrase():
    rng = np.random.default_rng(11)
    for _ in range(300):
        spec = sample_spec(rng)
        assert parse_prompt(describe(spec, rng)) == spec
    assert parse_prompt("a cat on a sofa") == SceneSpec(objects=(), background=None, style=None)


def _spec(i: int, rng) -> SceneSpec:
    shape = SHAPES[i % len(SHAPES)]
    color = list(COLORS)[(3 * i + 1) % len(COLORS)]
    size = ("medium", "large")[i % 2]
    return SceneSpec(objects=(ObjectSpec(shape=shape, color=color, size=size),), style=STYLES[i % len(STYLES)])


def test_oracle_ranks_a_correct_render_above_wrong_colour_and_wrong_shape(oracle):
    rng = np.random.default_rng(5)
    wins, gaps = [], []
    for i in range(14):
        spec = _spec(i, rng)
        scene = realize(spec, rng)
        wrong = [perturb(scene, spec, kind, rng) for kind in ("wrong_color", "wrong_shape")]
        images = [render(s, 64, rng) for s in (scene, *wrong)]
        f = oracle.score(images, [spec] * 3)[:, 0]
        assert gold.fidelity(spec, scene) == 1.0 and all(gold.fidelity(spec, w) < 1 for w in wrong)
        wins += [f[0] > f[1], f[0] > f[2]]
        gaps += [f[0] - f[1], f[0] - f[2]]
    assert np.mean(wins) >= 0.85, wins
    assert np.mean(gaps) > 0.2


def test_oracle_agrees_with_simulator_gold_on_fresh_renders(oracle):
    rng = np.random.default_rng([99, 1])  # a stream the oracle's fit never saw
    specs, imgs, truth = [], [], []
    for _ in range(30):
        spec = sample_spec(rng)
        for s in candidates(spec, 4, rng):  # the faithful scene and copies with controlled errors
            specs.append(spec)
            imgs.append(render(s, 64, rng))
            truth.append(gold.score(spec, s).as_tuple())
    est = oracle.score(imgs, specs)
    truth = np.array(truth)
    rho = [spearmanr(est[:, k], truth[:, k]).statistic for k in range(4)]
    assert rho[0] > 0.5 and rho[1] > 0.6 and rho[2] > 0.4 and rho[3] > 0.4, rho


def test_style_reading_and_style_score(oracle):
    rng = np.random.default_rng(2)
    spec = SceneSpec(objects=(ObjectSpec(shape="circle", color="red"),), style="neon")
    scene = realize(spec, rng)
    readings = oracle.read([render(scene, 64, rng), render(replace(scene, style="watercolor"), 64, rng)])
    assert max(readings[0].style_weights, key=readings[0].style_weights.get) == "neon"
    assert style_score(spec, readings[0]) > 0.6 > style_score(spec, readings[1])
    # a 32 px image (the generator's size) is read too
    small = oracle.read([render(scene, 32, rng)])[0]
    assert [d.color for d in small.objects] == ["red"] and fidelity(spec, small) >= 0.5


def test_eval_oracle_cli_scores_a_folder(oracle, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(4)
    spec = SceneSpec(objects=(ObjectSpec(shape="square", color="blue", position="center"),), style="flat")
    scene = realize(spec, rng)
    Image.fromarray(render(scene, 64, rng)).save(tmp_path / "a_good.png")
    Image.fromarray(render(perturb(scene, spec, "wrong_color", rng), 64, rng)).save(tmp_path / "b_bad.png")
    prompt = "a blue square in the center, flat design"
    assert (
        main(["eval", "oracle", "--images", str(tmp_path), "--prompt", prompt, "--json", str(tmp_path / "o.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "a_good.png" in out and "b_bad.png" in out
    import json

    rows = json.loads((tmp_path / "o.json").read_text())["images"]
    assert rows[0]["fidelity"] > rows[1]["fidelity"]
    assert main(["eval", "oracle", "--images", str(tmp_path)]) == 2  # no prompts given
    assert main(["eval", "oracle", "--images", str(tmp_path), "--prompts", prompt, "a red star"]) == 0
    assert main(["eval", "oracle", "--images", str(tmp_path), "--prompts", prompt]) == 2  # 1 prompt, 2 images


def test_fit_builds_a_loadable_oracle(tmp_path):
    cfg = OracleFitConfig(n_style_images=48, n_head_images=40, style_epochs=1, head_iterations=5, style_width=8)
    meta = fit_oracle(tmp_path / "o", cfg, progress=False)
    assert meta["n_components"] > 30 and 0.5 < meta["valid_fraction"] <= 1
    small = Oracle.load(tmp_path / "o")
    images, _ = render_scenes(3, seed=1)
    scores = small.score(images, [parse_prompt("a red circle")] * 3)
    assert scores.shape == (3, 4) and np.all((scores >= 0) & (scores <= 1))
