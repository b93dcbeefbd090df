"""Build the default model repository from nothing, reproducibly (seeded): the README's main command runs this
when ``model_repository/`` has no reward model yet.

    shapes-world dataset -> encoder (LiT on the frozen MiniLM) -> feature cache -> component scorers
    -> reward model (small scale, model selection on val) -> export (ONNX + manifests + config.pbtxt)

Sizes are chosen to finish in minutes on 2 CPU cores; every stage is skipped when its output is complete, and
the long ones resume where they stopped, so an interrupted build continues. Larger runs use the individual
commands (docs/exporter.md shows the full-size recipe).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from rewarddance.scoring.repository import ModelRepository


@dataclass(frozen=True)
class BootstrapConfig:
    prompts: int = 400
    images_per_prompt: int = 8
    encoder_steps: int = 250
    reward_steps: int = 300
    scale: str = "small"
    seed: int = 0
    flavour: str = "onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BootstrapConfig()
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository to fill")
    parser.add_argument("--work", type=Path, default=Path("runs/bootstrap"), help="dataset and training runs")
    parser.add_argument("--prompts", type=int, default=d.prompts)
    parser.add_argument("--images-per-prompt", type=int, default=d.images_per_prompt)
    parser.add_argument("--encoder-steps", type=int, default=d.encoder_steps)
    parser.add_argument("--reward-steps", type=int, default=d.reward_steps)
    parser.add_argument("--scale", default=d.scale)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--flavour", choices=("onnxruntime", "python"), default=d.flavour)
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when the repository already holds a reward model"
    )


def has_reward_model(repo: Path) -> bool:
    return bool(ModelRepository(repo).models(kind="reward"))


def _stage(name: str, started: float) -> None:
    print(f"[bootstrap] {name} done ({time.perf_counter() - started:.0f} s)", flush=True)


def bootstrap(repo: Path, work: Path, cfg: BootstrapConfig, progress: bool = True) -> dict:
    """Every stage, skipping finished ones; returns the exported reward version's manifest."""
    from rewarddance_trainer.components.fit_cmd import fit_and_save
    from rewarddance_trainer.encoders import train as encoder_train
    from rewarddance_trainer.encoders.config import EncoderTrainConfig
    from rewarddance_trainer.encoders.embed import embed_dataset
    from rewarddance_trainer.reward import train as reward_train
    from rewarddance_trainer.reward.config import RewardTrainConfig
    from rewarddance_trainer.shapes.synth import SynthConfig, default_chunk_prompts, synthesize

    from .export import ExportOptions, export_run

    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    data, encoder, reward = work / "shapes", work / "encoder", work / f"reward-{cfg.scale}"
    if not (data / "card.json").exists():
        synth = SynthConfig(
            n_prompts=cfg.prompts,
            images_per_prompt=cfg.images_per_prompt,
            seed=cfg.seed,
            chunk_prompts=default_chunk_prompts(cfg.prompts),
        )
        synthesize(data, synth, command="rewarddance bootstrap", progress=progress)
    _stage("dataset", started)
    if not (encoder / "encoder.json").exists():
        encoder_cfg = EncoderTrainConfig(
            steps=cfg.encoder_steps,
            batch_size=64,
            lr=1e-3,
            warmup=min(50, cfg.encoder_steps // 5),
            eval_every=cfg.encoder_steps,
            ckpt_every=100,
            seed=cfg.seed,
        )
        encoder_train.train(data, encoder, encoder_cfg, progress=progress)
    _stage("encoder", started)
    features = embed_dataset(data, encoder, data / "features" / "encoder", batch=128, progress_bar=progress)
    _stage("feature cache", started)
    if not (encoder / "components" / "components.json").exists():
        fit_and_save(data, features, encoder, encoder / "components")
    if not (reward / "run.json").exists():
        reward_cfg = RewardTrainConfig(
            scale=cfg.scale,
            steps=cfg.reward_steps,
            lr=5e-4,
            warmup=max(1, cfg.reward_steps // 10),
            eval_every=max(1, cfg.reward_steps // 8),
            ckpt_every=100,
            seed=cfg.seed,
        )
        reward_train.train(data, features, encoder / "components", reward, reward_cfg, progress=progress)
    _stage("reward model", started)
    existing = _exported(repo, reward)
    if existing is not None:
        return existing
    manifest = export_run(reward, repo, ExportOptions(flavour=cfg.flavour, seed=cfg.seed))
    _stage("export", started)
    return manifest


def _exported(repo: Path, run: Path) -> dict | None:
    """The manifest of a version already exported from ``run``, if any."""
    models = ModelRepository(repo)
    for name in models.models(kind="reward"):
        for version in models.versions(name):
            manifest = models.get(name, version).manifest
            if Path(manifest.get("training", {}).get("run", "")).resolve() == run.resolve():
                return manifest
    return None


def run(args: argparse.Namespace) -> int:
    if args.if_missing and has_reward_model(args.repo):
        models = ", ".join(ModelRepository(args.repo).models(kind="reward"))
        print(f"{args.repo} already holds {models}; nothing to build")
        return 0
    cfg = BootstrapConfig(
        prompts=args.prompts,
        images_per_prompt=args.images_per_prompt,
        encoder_steps=args.encoder_steps,
        reward_steps=args.reward_steps,
        scale=args.scale,
        seed=args.seed,
        flavour=args.flavour,
    )
    manifest = bootstrap(args.repo, args.work, cfg)
    metrics = {k: manifest.get("metrics", {}).get(k, float("nan")) for k in ("spearman_reward", "pair_accuracy")}
    print(
        f"{manifest['name']} v{manifest['version']} in {args.repo}: held-out Spearman R "
        f"{metrics['spearman_reward']:.3f}, pair accuracy {metrics['pair_accuracy']:.3f}"
    )
    return 0
