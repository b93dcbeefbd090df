"""Gated deploy of a trained reward run into a model repository that gateways are serving.

``deploy`` exports the run as the model's next version into a hidden staging repository (inside the model's folder,
so every later move is a rename on one filesystem), scores the candidate and the serving (default) version through
the real serving pipeline on one fixed evaluation set, and publishes only when the candidate is not worse than the
serving version beyond the tolerance on any gated metric. Publishing is a sequence of atomic steps, each of which
leaves a repository whose default version is either the old one or the new one, never a half-written version:

1. pin the serving version (``default_version``) if nothing pins it yet, so a newer folder cannot become the default;
2. rename the new encoder versions and the candidate's version folder into place (each a finished folder);
3. pin the candidate: this write (temporary file + ``os.replace``) is the publication.

Then each gateway is asked to load that version (``POST /v1/admin/reload``) and must report it on ``/v1/models``
(every worker). The gate's numbers go into the published manifest under ``gate``. ``rollback`` pins an earlier
version and reloads the gateways the same way.

Only this module's export and evaluation steps need torch (imported there): ``rollback`` and the command line's
help stay light.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rewarddance.components.base import COMPONENTS
from rewarddance.components.composite import DEFAULT_WEIGHTS
from rewarddance.preprocess import load_pixels
from rewarddance.repository import MANIFEST, ModelRepository, mirror, promote
from rewarddance.repository import manifest as manifests
from rewarddance.scoring.pipeline import RewardPipeline

from . import gateways

if TYPE_CHECKING:
    from .export import ExportOptions

GATED_METRICS = ("spearman_reward", "pair_accuracy")
SCORE_BATCH = 64


@dataclass
class GateConfig:
    """The defaults of ``rewarddance deploy``'s gate (each field is a flag)."""

    tolerance: float = field(default=0.02, metadata={"help": "largest drop allowed on each gated metric"})
    eval_prompts: int = field(default=200, metadata={"help": "test-split prompts drawn per dataset (0: all)"})
    reload_timeout_s: float = field(default=300.0, metadata={"help": "per gateway: reload, warm-up, confirmation"})


@dataclass
class DeployResult:
    model: str
    candidate: int  # the version number the candidate was (or would have been) published as
    serving: int | None  # the default version before the deploy
    gate: dict
    published: bool = False
    gateways: list[dict] = field(default_factory=list)


class DeployError(RuntimeError):
    pass


# -- the fixed evaluation set ---------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """One dataset's evaluation rows: the test split's fixed prompt draw (a shifted world: all of it)."""

    data: Path
    world: str
    split: str
    tables: object  # rewarddance_trainer.pixel_reward.data.Tables
    rows: np.ndarray

    @classmethod
    def load(cls, data: Path, eval_prompts: int) -> EvalSet:
        from rewarddance_trainer.pixel_reward.data import Tables
        from rewarddance_trainer.pixel_reward.train import fixed_draw

        data = Path(data)
        if not (data / "prompts.parquet").exists():
            raise DeployError(f"{data} is not a dataset directory (no prompts.parquet)")
        world = json.loads((data / "card.json").read_text()).get("world", "standard")
        tables = Tables.load(data)
        split = "all" if world == "shifted" else "test"
        prompts = tables.prompt_rows(split)
        if split == "test":
            prompts = fixed_draw(prompts, eval_prompts, 0)
        rows = tables.image_rows_of(prompts)
        if len(rows) == 0:
            raise DeployError(f"{data} has no images in split {split!r} to evaluate on")
        return cls(data, world, split, tables, rows)

    def describe(self) -> dict:
        prompts = self.tables.images.prompt_row.to_numpy()[self.rows]
        return {
            "data": str(self.data),
            "world": self.world,
            "split": self.split,
            "prompts": len(np.unique(prompts)),
            "images": len(self.rows),
        }


def evaluate(pipeline: RewardPipeline, eval_set: EvalSet) -> dict[str, float]:
    """The serving pipeline's components and R on every image of the set, against the human tables."""
    from rewarddance_trainer.pixel_reward import evaluate as metrics

    images = eval_set.tables.images.iloc[eval_set.rows]
    paths = [eval_set.data / p for p in images.path]
    texts = images.text.tolist()
    components, reward = [], []
    for start in range(0, len(paths), SCORE_BATCH):
        pixels = load_pixels(paths[start : start + SCORE_BATCH], pipeline.image_size, pipeline.resize)
        scores = pipeline.score(pixels, texts[start : start + SCORE_BATCH])
        components.append(scores.components)
        reward.append(scores.reward)
    weights = np.array([DEFAULT_WEIGHTS[c] for c in COMPONENTS])  # one target for both versions
    out = metrics.metrics(eval_set.tables, eval_set.rows, np.concatenate(components), np.concatenate(reward), weights)
    return {k: float(v) for k, v in out.items()}


def run_gate(
    candidate: RewardPipeline, serving: RewardPipeline | None, eval_sets: list[EvalSet], tolerance: float
) -> dict:
    """Both versions on every set; ``passed`` unless the candidate trails on a gated metric by more than
    ``tolerance`` (a metric that is undefined on a set, e.g. no decided pairs, is not gated there)."""
    started = time.perf_counter()
    datasets, failures = [], []
    for eval_set in eval_sets:
        entry = eval_set.describe() | {"candidate": evaluate(candidate, eval_set)}
        if serving is not None:
            entry["serving"] = evaluate(serving, eval_set)
            entry["delta"] = {m: entry["candidate"][m] - entry["serving"][m] for m in GATED_METRICS}
            for m, delta in entry["delta"].items():
                if math.isfinite(delta) and delta < -tolerance:
                    failures.append(
                        f"{eval_set.data.name} {m}: {entry['candidate'][m]:.4f} vs {entry['serving'][m]:.4f} "
                        f"({delta:+.4f} < -{tolerance:g})"
                    )
        datasets.append(entry)
    return {
        "passed": not failures,
        "failures": failures,
        "tolerance": tolerance,
        "metrics": list(GATED_METRICS),
        "candidate": {"name": candidate.name, "version": candidate.version},
        "serving": None if serving is None else {"name": serving.name, "version": serving.version},
        "datasets": datasets,
        "seconds": round(time.perf_counter() - started, 2),
    }


def gate_table(gate: dict) -> str:
    """The gate's numbers as a fixed-width table, one row per dataset and gated metric."""
    lines = [f"{'dataset':<24} {'metric':<16} {'serving':>8} {'candidate':>9} {'delta':>8}"]
    for d in gate["datasets"]:
        for m in GATED_METRICS:
            serving = f"{d['serving'][m]:>8.4f}" if "serving" in d else f"{'-':>8}"
            delta = f"{d['delta'][m]:>+8.4f}" if "delta" in d else f"{'-':>8}"
            lines.append(f"{Path(d['data']).name:<24} {m:<16} {serving} {d['candidate'][m]:>9.4f} {delta}")
    verdict = "passed" if gate["passed"] else "REFUSED: " + "; ".join(gate["failures"])
    return "\n".join(lines) + f"\ngate (tolerance {gate['tolerance']:g}): {verdict}"


# -- staging and publishing (the steps themselves: rewarddance.repository.mirror and promote) ------------------------
def model_name(run: Path) -> str:
    """The repository model a run exports to (both exporters name it ``reward_<scale>``)."""
    path = Path(run) / "run.json"
    if not path.exists():
        raise DeployError(f"{run} is not a finished reward run (no run.json)")
    return f"reward_{json.loads(path.read_text())['scale']}"


def deploy(
    run: Path,
    repo_dir: Path,
    eval_data: list[Path],
    gateway_urls: list[str] = (),
    admin_key: str | None = None,
    config: GateConfig | None = None,
    export_options: ExportOptions | None = None,
    log=print,
) -> DeployResult:
    """Export, gate, publish, reload, confirm (see the module docstring). A refused candidate leaves nothing."""
    from .export import ExportOptions, export_run
    from .pixel_export import export_pixel_run, is_pixel_run

    config = config or GateConfig()
    run, repo = Path(run), ModelRepository(repo_dir)
    repo.root.mkdir(parents=True, exist_ok=True)
    name = model_name(run)
    eval_sets = [EvalSet.load(d, config.eval_prompts) for d in eval_data]
    if not eval_sets:
        raise DeployError("no evaluation data: give --eval-data (the run's dataset is not on this machine)")
    serving = repo.default_version(name) if repo.versions(name) else None
    version = repo.next_version(name)
    staging = repo.root / name / f".deploy-{int(time.time() * 1000)}-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        mirror(repo, staging, skip=name)
        opts = replace(export_options or ExportOptions(), version=version)
        log(f"exporting {run} as {name} v{version} (staged in {staging})")
        (export_pixel_run if is_pixel_run(run) else export_run)(run, staging, opts, log=log)
        staged = ModelRepository(staging)
        candidate = RewardPipeline(staged, name, version)
        current = RewardPipeline(repo, name, serving) if serving is not None else None
        log(
            f"gate: {name} v{version} vs {'v' + str(serving) if serving else 'nothing (first version)'} on "
            + ", ".join(f"{s.data.name} ({s.split}, {len(s.rows)} images)" for s in eval_sets)
        )
        gate = run_gate(candidate, current, eval_sets, config.tolerance)
        log(gate_table(gate))
        result = DeployResult(name, version, serving, gate)
        if not gate["passed"]:
            return result
        path = staging / name / str(version) / MANIFEST
        manifests.write(replace(manifests.load(path), gate=gate), path)
        promote(staged, repo, name, version, serving)
        result.published = True
        log(f"published {name} v{version} as the default version of {repo.root}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.gateways = gateways.switch(gateway_urls, name, version, admin_key, config.reload_timeout_s, log)
    return result


def previous_version(repo: ModelRepository, name: str) -> int:
    """The newest complete version older than the default one."""
    current = repo.default_version(name)
    older = [v for v in repo.versions(name) if v < current]
    if not older:
        raise DeployError(f"{name} v{current} is its oldest version: nothing to roll back to")
    return older[-1]


def rollback(
    repo_dir: Path,
    name: str,
    to: int | None = None,
    gateway_urls: list[str] = (),
    admin_key: str | None = None,
    reload_timeout_s: float = GateConfig.reload_timeout_s,
    log=print,
) -> dict:
    """Pin ``to`` (default: the version before the default one) after checking it loads, then switch the gateways."""
    repo = ModelRepository(repo_dir)
    if not repo.versions(name):
        raise DeployError(f"no model {name!r} in {repo.root} (models: {', '.join(repo.models()) or 'none'})")
    current = repo.default_version(name)
    target = to if to is not None else previous_version(repo, name)
    if target not in repo.versions(name):
        raise DeployError(f"{name} has no complete version {target} (versions: {repo.versions(name)})")
    RewardPipeline(repo, name, target).load()  # a version that does not load is never pinned
    repo.pin(name, target)
    log(f"{name}: default version {current} -> {target} in {repo.root}")
    switched = gateways.switch(gateway_urls, name, target, admin_key, reload_timeout_s, log)
    return {"model": name, "previous": current, "version": target, "gateways": switched}
