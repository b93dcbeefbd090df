"""Gated deploy and rollback (``rewarddance deploy`` / ``rollback``): the default-version pin, the gate refusing a
worse run and publishing a better one, a running gateway switching under load with no failed request, rollback,
and a publish interrupted before its last step leaving the old version served.

Which run is better must not hang on how well a few training steps went, so the evaluation sets are made to
agree with one run: tiny shapes worlds (a standard one, whose test split is used, and a shifted one, used whole)
whose ratings and preferences are replaced by run A's own scores. A is then right on both by construction, and
the "worse" run, A with its heads negated (every component 1 - c, so R reverses), is wrong on both.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from rewarddance_exporter import deploy as deploying
from rewarddance_exporter.gateways import served_versions
from rewarddance_trainer.pixel_reward import evaluate
from rewarddance_trainer.pixel_reward import train as pixel_train
from rewarddance_trainer.pixel_reward.config import PixelTrainConfig
from rewarddance_trainer.pixel_reward.data import Tables
from rewarddance_trainer.pixel_reward.model import WEIGHTS_FILE, load_model
from rewarddance_trainer.pixel_reward.text import build_cache, load_cache
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize
from safetensors.torch import load_file, save_file
from test_gateway import ServerProcess, wait_ready

from rewarddance.cli import main as cli
from rewarddance.components.base import COMPONENTS
from rewarddance.repository import MANIFEST, PIN_FILE, ModelRepository, RepositoryError, promote

MODEL = "reward_tiny"
ADMIN_KEY = "sk-deploy-admin"
TINY = PixelTrainConfig(
    scale="tiny",
    steps=2,
    prompts_per_batch=4,
    images_per_prompt=4,
    lr=3e-3,
    warmup=1,
    eval_every=2,
    val_prompts=4,
    test_prompts=0,
    ckpt_every=2,
    workers=0,
)
GATE = deploying.GateConfig(tolerance=0.02, eval_prompts=0, reload_timeout_s=180.0)
QUIET = {"log": lambda _: None}


# -- the default-version pin (no models needed) ---------------------------------------------------------------------
def _fake_versions(root: Path, *versions: int, incomplete: tuple[int, ...] = ()) -> ModelRepository:
    for v in versions:
        (root / "m" / str(v)).mkdir(parents=True)
        if v not in incomplete:
            (root / "m" / str(v) / MANIFEST).write_text(json.dumps({"kind": "reward"}))
    return ModelRepository(root)


def test_pin_chooses_the_default_version_and_unpinned_stays_newest(tmp_path: Path):
    repo = _fake_versions(tmp_path, 1, 2, 3, 4, incomplete=(4,))
    assert repo.pinned("m") is None and repo.get("m").version == 3  # newest complete, as before
    repo.pin("m", 2)
    assert (tmp_path / "m" / PIN_FILE).read_text() == "2\n"
    assert repo.pinned("m") == 2 and repo.get("m").version == 2 and repo.default_version("m") == 2
    assert repo.get("m", 3).version == 3  # an explicit version is still served on request
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "3", "4", PIN_FILE]  # no temp left
    with pytest.raises(RepositoryError, match="no complete version 4"):
        repo.pin("m", 4)
    assert repo.default_version("m") == 2  # a refused pin changes nothing
    shutil.rmtree(tmp_path / "m" / "2")
    assert repo.default_version("m") == 3  # a pin on a version that is gone is ignored
    (tmp_path / "m" / PIN_FILE).write_text("garbage")
    assert repo.pinned("m") is None and repo.default_version("m") == 3


# -- runs and datasets ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("deploy-data")
    data, shifted = root / "standard", root / "shifted"
    synthesize(data, SynthConfig(n_prompts=40, images_per_prompt=4, seed=11, chunk_prompts=20), progress=False)
    synthesize(shifted, SynthConfig(n_prompts=8, images_per_prompt=4, seed=5, world="shifted"), progress=False)
    for d in (data, shifted):
        build_cache(d, progress=False)
    return [data, shifted]


@pytest.fixture(scope="module")
def good_run(worlds: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("deploy-good") / "run"
    pixel_train.train(worlds[0], run, replace(TINY), progress=False)
    return run


@pytest.fixture(scope="module")
def worse_run(good_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("deploy-worse") / "run"
    shutil.copytree(good_run, run)
    weights = load_file(run / WEIGHTS_FILE)
    weights["head_weight"], weights["head_bias"] = -weights["head_weight"], -weights["head_bias"]
    save_file(weights, run / WEIGHTS_FILE)
    return run


def agreeing_with(run: Path, data: Path, out: Path) -> Path:
    """A copy of ``data`` whose ratings (one rater) are ``run``'s components on the 1-5 scale and whose pairs
    (every two candidates of a prompt) are won by the candidate with the higher R."""
    shutil.copytree(data, out)
    tables = Tables.load(out)
    rows, components, reward = evaluate.predict(load_model(run), tables, load_cache(out), tables.prompt_rows("all"))
    images = tables.images.iloc[rows]
    ratings = pd.DataFrame({"image_id": images.image_id.to_numpy(), "rater_id": "oracle"})
    for i, name in enumerate(COMPONENTS):
        ratings[name] = 1.0 + 4.0 * components[:, i].astype(np.float64)
    ratings.to_parquet(out / "ratings.parquet", index=False)
    pairs = []
    for prompt, group in pd.DataFrame({"prompt": images.prompt_id.to_numpy(), "r": reward}).groupby("prompt"):
        ids = images.image_id.to_numpy()[group.index]
        for (a, ra), (b, rb) in itertools.combinations(zip(ids, group.r, strict=True), 2):
            pairs.append({"prompt_id": prompt, "image_a": a, "image_b": b, "winner": "a" if ra > rb else "b"})
    pd.DataFrame(pairs).assign(rater_id="oracle").to_parquet(out / "pairs.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def eval_sets(good_run: Path, worlds: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("deploy-eval")
    return [agreeing_with(good_run, d, root / d.name) for d in worlds]


@pytest.fixture(scope="module")
def first_repo(worse_run: Path, eval_sets: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose only version (v1, the default) is the worse run; tests take copies."""
    repo = tmp_path_factory.mktemp("deploy-first") / "repo"
    result = deploying.deploy(worse_run, repo, eval_sets, config=GATE, **QUIET)
    assert result.published and result.candidate == 1 and result.serving is None
    assert result.gate["passed"] and "serving" not in result.gate["datasets"][0]
    return repo


def _copy(repo: Path, to: Path) -> Path:
    """Hard links are enough: deploy never writes into a file it did not create (pins and manifests are replaced)."""
    shutil.copytree(repo, to, copy_function=os.link)
    return to


def _leftovers(repo: Path) -> list[Path]:
    return [p for p in repo.rglob(".*")]


# -- deploy, gateway, rollback --------------------------------------------------------------------------------------
def test_deploy_switches_a_gateway_under_load_refuses_worse_and_rolls_back(
    first_repo: Path, good_run: Path, worse_run: Path, eval_sets: list[Path], tmp_path: Path, monkeypatch, capsys
):
    repo = _copy(first_repo, tmp_path / "repo")
    gw = ServerProcess(
        repo, tmp_path / "gateway.log", "--intra-op-threads", "1", env={"REWARDDANCE_ADMIN_KEY": ADMIN_KEY}
    )
    try:
        wait_ready(gw.url, gw.proc, timeout=300)
        assert served_versions(gw.url, MODEL, ADMIN_KEY) == [1, 1]
        image = next((eval_sets[0] / "images").rglob("*.png")).read_bytes()
        body = {"prompt": "a red circle in the center", "images": [base64.b64encode(image).decode()]}
        stop, results = threading.Event(), []

        def load() -> None:  # bounded: two clients, one request in flight each, <= 20 requests/s, <= 15 minutes
            ends = time.monotonic() + 900
            with httpx.Client(base_url=gw.url, timeout=120.0) as client:
                while not stop.is_set() and time.monotonic() < ends:
                    try:
                        r = client.post("/v1/score", json=body)
                        results.append((r.status_code, r.json()["model"]["version"] if r.status_code == 200 else None))
                    except httpx.HTTPError as exc:
                        results.append((-1, repr(exc)))
                    time.sleep(0.1)

        clients = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for c in clients:
            c.start()
        try:
            result = deploying.deploy(good_run, repo, eval_sets, [gw.url], ADMIN_KEY, GATE, **QUIET)
            switched = len(results)
            deadline = time.monotonic() + 60
            while len(results) < switched + 6 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for c in clients:
                c.join(timeout=120)

        # the better run passed the gate, was published as v2 and every gateway reported it
        assert result.published and (result.candidate, result.serving) == (2, 1)
        assert result.gateways[0]["version"] == 2 and result.gateways[0]["previous"] == 1
        gate = ModelRepository(repo).get(MODEL, 2).manifest.gate
        assert gate["passed"] and gate["serving"] == {"name": MODEL, "version": 1}
        assert [Path(d["data"]).name for d in gate["datasets"]] == ["standard", "shifted"]
        assert [d["split"] for d in gate["datasets"]] == ["test", "all"]
        for d in gate["datasets"]:  # right by construction vs wrong by construction
            assert d["candidate"]["spearman_reward"] > 0.95 and d["serving"]["spearman_reward"] < -0.95
            assert d["candidate"]["pair_accuracy"] > 0.95 and d["serving"]["pair_accuracy"] < 0.05
        assert ModelRepository(repo).default_version(MODEL) == 2
        # ... with no failed request while it switched, and both versions answered
        failed = [r for r in results if r[0] != 200]
        assert not failed, f"{len(failed)} of {len(results)} requests failed during the deploy: {failed[:5]}"
        versions = [v for _, v in results]
        assert versions[0] == 1 and versions[-1] == 2 and set(versions) == {1, 2}
        # the weights echo what was asked, though the manifest's defaults were written from a float32 tensor
        echo = httpx.post(f"{gw.url}/v1/score", json=body | {"weights": {"novelty": 0.1}}, timeout=60).json()
        assert echo["weights"] == {"fidelity": 0.4, "style": 0.25, "composition": 0.25, "novelty": 0.1}

        # the worse run again: refused by the gate (command line, exit 3), nothing published, nothing left behind
        outcome = tmp_path / "refused.json"
        code = cli(
            ["deploy", str(worse_run), "--repo", str(repo), "--gateway", gw.url, "--tolerance", "0.02"]
            + ["--eval-prompts", "0", "--json", str(outcome)]
            + [a for d in eval_sets for a in ("--eval-data", str(d))]
        )
        refused = json.loads(outcome.read_text())
        assert code == 3 and not refused["published"] and len(refused["gate"]["failures"]) == 4
        printed = capsys.readouterr().out
        assert "REFUSED" in printed and "spearman_reward" in printed and "not published" in printed
        assert refused["serving"] == 2 and ModelRepository(repo).versions(MODEL) == [1, 2]
        assert _leftovers(repo) == [] and served_versions(gw.url, MODEL, ADMIN_KEY) == [2, 2]

        # rollback (command line): v1 is the default again, in the repository and on the gateway
        monkeypatch.setenv("REWARDDANCE_ADMIN_KEY", ADMIN_KEY)
        assert cli(["rollback", "--repo", str(repo), "--model", MODEL, "--gateway", gw.url]) == 0
        assert ModelRepository(repo).default_version(MODEL) == 1
        assert served_versions(gw.url, MODEL, ADMIN_KEY) == [1, 1]
    finally:
        gw.stop()

    # a gateway started now serves the pinned version, not the newest
    restarted = ServerProcess(repo, tmp_path / "restarted.log", "--intra-op-threads", "1")
    try:
        wait_ready(restarted.url, restarted.proc, timeout=300)
        assert served_versions(restarted.url, MODEL, None) == [1, 1]
    finally:
        restarted.stop()


def test_interrupted_publish_leaves_the_old_version_served(first_repo: Path, tmp_path: Path, monkeypatch):
    """Killed after the candidate's folder is in place but before its pin: v1 stays the default (the step before
    pinned it) and v2 is served only on request."""
    repo = _copy(first_repo, tmp_path / "repo")
    (repo / MODEL / PIN_FILE).unlink()  # as a repository exported without deploy: the newest would be the default
    staged = tmp_path / "staged"
    shutil.copytree(repo / MODEL / "1", staged / MODEL / "2", copy_function=os.link)  # a finished candidate
    pins = []

    def pin_then_die(self, name: str, version: int) -> None:
        if pins:
            raise KeyboardInterrupt
        pins.append(version)
        original(self, name, version)

    original = ModelRepository.pin
    monkeypatch.setattr(ModelRepository, "pin", pin_then_die)
    with pytest.raises(KeyboardInterrupt):
        promote(ModelRepository(staged), ModelRepository(repo), MODEL, 2, serving=1)
    assert pins == [1]
    assert ModelRepository(repo).versions(MODEL) == [1, 2]
    assert ModelRepository(repo).default_version(MODEL) == 1


def test_interrupted_export_leaves_nothing(
    first_repo: Path, good_run: Path, eval_sets: list[Path], tmp_path: Path, monkeypatch
):
    from rewarddance_exporter import pixel_export

    repo = _copy(first_repo, tmp_path / "repo")
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))

    def export_then_die(run: Path, staging: Path, opts, log) -> dict:
        (staging / MODEL / "2").mkdir(parents=True)
        (staging / MODEL / "2" / MANIFEST).write_text("{}")  # half a version
        raise KeyboardInterrupt

    monkeypatch.setattr(pixel_export, "export_pixel_run", export_then_die)
    with pytest.raises(KeyboardInterrupt):
        deploying.deploy(good_run, repo, eval_sets[:1], config=GATE, **QUIET)
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


# -- the serve extra ------------------------------------------------------------------------------------------------
def test_serving_a_pixel_model_never_imports_scipy_or_torch(first_repo: Path, eval_sets: list[Path]):
    """scipy is only for feature (v1) models (imported on first use); torch never belongs to serving."""
    image = next((eval_sets[0] / "images").rglob("*.png"))
    code = f"""
import sys
from rewarddance.preprocess import load_pixels
from rewarddance.scoring.pipeline import RewardPipeline
pipeline = RewardPipeline({str(first_repo)!r}, {MODEL!r})
scores = pipeline.score(load_pixels([{str(image)!r}], pipeline.image_size), ["a red circle"])
assert 0.0 <= float(scores.reward[0]) <= 1.0
print(sorted(m for m in ("scipy", "torch") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
