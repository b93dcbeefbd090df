"""Reward-model training recipe: setup -> train -> save, top to bottom.

Each step draws (from ``(seed, step)``, so a resumed run continues the same curve) ``batch_size`` rated images for
the MSE loss on the four heads and ``batch_size`` preference pairs for the Bradley-Terry loss on R, runs them
through the model in one forward pass, and takes an AdamW step (warmup + cosine, gradient norm clipped to 1).
Checkpoints every ``ckpt_every`` steps; rerunning the same command resumes from the last one.

Model selection: every ``eval_every`` steps (and at the last step) the model is validated on the split's val rows;
the step with the best val Spearman R (ties: the earlier step) is kept, in memory and with each checkpoint, so a
resume keeps it too. ``patience`` > 0 stops after that many evaluations without improvement. At the end the
selected weights are tested once on the held-out test rows and written as ``reward.safetensors``, next to the
component scorers (fitted on the training rows) that made the val / test signals, in ``components/``.

Under torchrun (RANK / WORLD_SIZE set) the process group starts (gloo on CPU, nccl on GPU), the model is wrapped
in DDP and every rank takes its shard of the same global batch. Losses are sums over the shard divided by the
*global* batch's count, so the averaged gradient equals the single-process one; only rank 0 writes files and
validates (it broadcasts the early-stopping decision).

``train`` runs one split (train / val / test by default), or every fold of ``--cv K`` / ``--leave-one-style-out`` into
``RUN/<fold>/`` followed by a per-fold table with mean +- std.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import resource
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from rewarddance.components.base import COMPONENTS
from rewarddance.components.style import StyleScorer

from ..components.fit import Table
from ..data import schema
from ..encoders.embed import FeatureCache
from . import evaluate
from .config import RewardModelConfig, RewardTrainConfig, load_scale
from .data import Examples, Split, build_examples, cv_splits, default_split, load_pairs, style_splits
from .model import MANIFEST_FILE, WEIGHTS_FILE, RewardModel, parameter_count

CHECKPOINT = "checkpoint.safetensors"
TRAIN_STATE = "train_state.pt"
BEST_PREFIX = "best-step"  # best-step<N>.safetensors: the selected weights so far (named by step: atomic resume)
COMPONENTS_DIR = "components"
SELECTION_METRIC = "spearman_reward"
CHECKSUM_ENV = "REWARDDANCE_DEBUG_CHECKSUMS"  # set: every rank writes checksum-rank<r>.json (the DDP sync test)


# --- losses ----------------------------------------------------------------------------------------------------


def mse_loss(components: torch.Tensor, targets: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Squared error over rated entries (NaN targets skipped), divided by their count or by ``normalizer``."""
    rated = ~torch.isnan(targets)
    squared = torch.where(rated, components - targets.nan_to_num(), 0.0) ** 2
    return squared.sum() / (normalizer if normalizer is not None else rated.sum().clamp(min=1))


def bt_loss(
    reward_a: torch.Tensor,
    reward_b: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    normalizer: float | None = None,
) -> torch.Tensor:
    """Bradley-Terry: P(a preferred) = sigmoid(scale * (R_a - R_b)); target 1 (a), 0 (b) or 0.5 (tie)."""
    loss = F.binary_cross_entropy_with_logits(scale * (reward_a - reward_b), target, reduction="sum")
    return loss / (normalizer if normalizer is not None else max(len(target), 1))


# --- distributed -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch_dist.all_reduce(values)
        return values

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, so that all ranks stop at the same step."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch_dist.broadcast(value, 0)
        return bool(value.item())


def init_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        # Rank 0 validates alone while the others wait in the next all-reduce: allow for slow evaluations.
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch_dist.init_process_group(backend, timeout=timedelta(hours=2))
    return Distributed(torch_dist.get_rank(), world, local_rank)


# --- batches and schedule --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepBatch:
    rated: np.ndarray  # image rows for the MSE loss
    pairs: np.ndarray  # indices into examples.train_pairs

    def shard(self, dist: Distributed) -> StepBatch:
        return StepBatch(
            np.array_split(self.rated, dist.world)[dist.rank], np.array_split(self.pairs, dist.world)[dist.rank]
        )


def draw_batch(examples: Examples, cfg: RewardTrainConfig, step: int) -> StepBatch:
    rng = np.random.default_rng([cfg.seed, step])
    rated, n_pairs = examples.rated_train_rows, len(examples.train_pairs.target)
    return StepBatch(
        rated=rng.choice(rated, size=min(cfg.batch_size, len(rated)), replace=False) if cfg.mse else np.zeros(0, int),
        pairs=rng.choice(n_pairs, size=min(cfg.batch_size, n_pairs), replace=False) if cfg.bt else np.zeros(0, int),
    )


def learning_rate(step: int, cfg: RewardTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _step_seed(cfg: RewardTrainConfig, step: int, rank: int) -> int:
    """Dropout masks from (seed, step, rank) too, so a resumed run repeats them."""
    return int(np.random.default_rng([cfg.seed, step, rank]).integers(2**62))


def _optimizer(model: RewardModel, cfg: RewardTrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # biases, norms, the BT scale
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def train_step(
    model: torch.nn.Module,
    examples: Examples,
    batch: StepBatch,
    dist: Distributed,
    bt_scale: torch.Tensor,
    mse_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward + backward of this rank's shard; returns (mse, bt) of the whole global batch, detached."""
    targets = examples.targets[batch.rated]
    rated_entries = max(int((~np.isnan(targets)).sum()), 1)
    pairs = examples.train_pairs
    shard = batch.shard(dist)
    rows = np.concatenate([shard.rated, pairs.rows[shard.pairs, 0], pairs.rows[shard.pairs, 1]])
    components, reward = model(**examples.inputs(rows, dist.device))
    n_rated, n_pairs = len(shard.rated), len(shard.pairs)
    mse = mse_loss(components[:n_rated], torch.from_numpy(examples.targets[shard.rated]).to(dist.device), rated_entries)
    bt = bt_loss(
        reward[n_rated : n_rated + n_pairs],
        reward[n_rated + n_pairs :],
        torch.from_numpy(pairs.target[shard.pairs]).to(dist.device),
        bt_scale,
        max(len(batch.pairs), 1),
    )
    # DDP averages gradients over ranks; each rank's terms are already shares of the global mean, so scale back.
    ((mse_weight * mse + bt) * dist.world).backward()
    return tuple(dist.sum(torch.stack([mse.detach(), bt.detach()])))


# --- model selection -------------------------------------------------------------------------------------------


@dataclass
class Selection:
    """The best val evaluation so far (rank 0's; other ranks only learn ``stopped``)."""

    step: int | None = None
    metrics: dict | None = None
    weights: dict[str, torch.Tensor] | None = None  # CPU copy of the state dict at ``step``
    evals: int = 0
    evals_since_best: int = 0
    stopped_early: bool = False

    @property
    def value(self) -> float:
        v = self.metrics[SELECTION_METRIC] if self.metrics else float("nan")
        return v if math.isfinite(v) else -math.inf

    def update(self, step: int, metrics: dict, model: RewardModel) -> bool:
        """Record an evaluation; True when it is the new best (strictly better: ties keep the earlier step)."""
        self.evals += 1
        value = metrics[SELECTION_METRIC]
        value = value if math.isfinite(value) else -math.inf
        if self.step is None or value > self.value:
            self.step, self.metrics, self.evals_since_best = step, dict(metrics), 0
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return True
        self.evals_since_best += 1
        return False

    def state(self) -> dict:
        """Everything but the weights (they go to their own file)."""
        return {
            "step": self.step,
            "metrics": self.metrics,
            "evals": self.evals,
            "evals_since_best": self.evals_since_best,
            "stopped_early": self.stopped_early,
        }


def _best_file(step: int) -> str:
    return f"{BEST_PREFIX}{step:08d}.safetensors"


def _val_record(metrics: dict) -> dict:
    return {f"val_{k}": v for k, v in metrics.items()}


# --- checkpoints -----------------------------------------------------------------------------------------------


def _identity(cfg: RewardTrainConfig, model_cfg: RewardModelConfig, split: Split, table_sha: dict | None) -> dict:
    """What a checkpoint must match to be resumed. The time limit is a budget, not part of the recipe: a run it
    stopped resumes under a larger one."""
    train = {k: v for k, v in asdict(cfg).items() if k != "time_limit"}
    return {"train": train, "model": asdict(model_cfg), "split": split.name, "data": table_sha}


def save_checkpoint(
    run: Path,
    model: RewardModel,
    optimizer: torch.optim.Optimizer,
    step: int,
    identity: dict,
    selection: Selection | None = None,
) -> None:
    """Weights, optimizer, step and the best-so-far; train_state.pt is written last (it names the best file), so a
    crash anywhere leaves the previous checkpoint whole."""
    selection = selection or Selection()
    if selection.step is not None and not (run / _best_file(selection.step)).exists():
        save_file({k: v.contiguous() for k, v in selection.weights.items()}, run / (BEST_PREFIX + ".tmp"))
        (run / (BEST_PREFIX + ".tmp")).replace(run / _best_file(selection.step))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / (CHECKPOINT + ".tmp"))
    state = {"optimizer": optimizer.state_dict(), "step": step, "identity": identity, "selection": selection.state()}
    torch.save(state, run / (TRAIN_STATE + ".tmp"))
    (run / (CHECKPOINT + ".tmp")).replace(run / CHECKPOINT)
    (run / (TRAIN_STATE + ".tmp")).replace(run / TRAIN_STATE)
    for stale in run.glob(f"{BEST_PREFIX}*.safetensors"):
        if selection.step is None or stale.name != _best_file(selection.step):
            stale.unlink()


def resume(run: Path, model: RewardModel, optimizer: torch.optim.Optimizer, identity: dict) -> tuple[int, Selection]:
    """(step, best-so-far) of the last checkpoint in ``run`` (0 and an empty selection when there is none)."""
    if not (run / TRAIN_STATE).exists():
        return 0, Selection()
    state = torch.load(run / TRAIN_STATE, weights_only=False, map_location="cpu")
    if state["identity"] != identity:
        raise ValueError(f"{run} holds a run with other settings; use a new --out or the same settings to resume")
    model.load_state_dict(load_file(run / CHECKPOINT))
    optimizer.load_state_dict(state["optimizer"])
    selection = Selection(**state["selection"])
    if selection.step is not None:
        selection.weights = load_file(run / _best_file(selection.step))
    return int(state["step"]), selection


def _read_log(run: Path, upto: int) -> list[dict]:
    """Logged records up to step ``upto`` (later ones belong to steps the resumed run will redo)."""
    path = run / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in records if r["step"] <= upto]


# --- one split -------------------------------------------------------------------------------------------------


def train_split(
    run: Path,
    examples: Examples,
    cfg: RewardTrainConfig,
    model_cfg: RewardModelConfig,
    context: dict,
    dist: Distributed,
    progress: bool = True,
) -> dict:
    """Train on ``examples.split`` into ``run``; returns the run manifest (also written as run.json)."""
    _check_trainable(examples, cfg, dist)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = RewardModel(model_cfg).to(dist.device)
    model.bt_log_scale.requires_grad_(cfg.bt)  # unused without the BT loss (DDP rejects unused trainables)
    optimizer = _optimizer(model, cfg)
    identity = _identity(cfg, model_cfg, examples.split, context["data"]["table_sha256"])
    start, selection = resume(run, model, optimizer, identity)
    ddp = DistributedDataParallel(model) if dist.world > 1 else model

    records = _read_log(run, start) if dist.main else []
    if dist.main:
        _write_log(run, records)
    started = time.perf_counter() - (records[-1]["seconds"] if records else 0.0)
    step = start
    bar = tqdm(total=cfg.steps, initial=start, desc=f"reward {cfg.scale}", disable=not (progress and dist.main))
    while step < cfg.steps and not selection.stopped_early:
        out_of_time = cfg.time_limit > 0 and dist.agree(time.perf_counter() - started > cfg.time_limit)
        if out_of_time:
            break
        torch.manual_seed(_step_seed(cfg, step, dist.rank))
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ddp.train()
        optimizer.zero_grad(set_to_none=True)
        mse, bt = train_step(ddp, examples, draw_batch(examples, cfg, step), dist, model.bt_scale, cfg.mse_weight)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        record = {
            "step": step,
            "loss": round(float(cfg.mse_weight * mse + bt), 6),
            "mse": round(float(mse), 6),
            "bt": round(float(bt), 6),
            "bt_scale": round(float(model.bt_scale.detach()), 4),
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if dist.main:
                val = evaluate.validate(model, examples, dist.device, "val")
                record.update(_val_record(val))
                selection.update(step, val, model)
            if cfg.patience:
                selection.stopped_early = dist.agree(dist.main and selection.evals_since_best >= cfg.patience)
        if dist.main:
            records.append(record)
            _append_log(run, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            if step % cfg.ckpt_every == 0 or step == cfg.steps or selection.stopped_early:
                save_checkpoint(run, model, optimizer, step, identity, selection)
        bar.update(1)
    bar.close()
    if dist.main and step < cfg.steps and not selection.stopped_early:  # stopped by the time limit
        if records and records[-1]["step"] == step and "val_spearman_reward" not in records[-1]:
            val = evaluate.validate(model, examples, dist.device, "val")  # the last step trained is a candidate too
            records[-1].update(_val_record(val))
            selection.update(step, val, model)
            _write_log(run, records)
        save_checkpoint(run, model, optimizer, step, identity, selection)  # keep what was trained
    _write_checksum(run, model, dist)
    if not dist.main:
        return {}
    return finish(run, model, examples, cfg, model_cfg, context, dist, step, records, selection)


def _check_trainable(examples: Examples, cfg: RewardTrainConfig, dist: Distributed) -> None:
    name = examples.split.name
    if cfg.mse and len(examples.rated_train_rows) == 0:
        raise ValueError(f"split {name!r} has no rated training images; pass --no-mse to train on pairs alone")
    if cfg.bt and len(examples.train_pairs.target) == 0:
        raise ValueError(f"split {name!r} has no training preference pairs; pass --no-bt to train on ratings alone")
    if dist.world > cfg.batch_size:
        raise ValueError(f"batch size {cfg.batch_size} cannot be sharded over {dist.world} processes")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _append_log(run: Path, record: dict) -> None:
    with (run / "metrics.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")


def _write_log(run: Path, records: list[dict]) -> None:
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _write_checksum(run: Path, model: RewardModel, dist: Distributed) -> None:
    if not os.environ.get(CHECKSUM_ENV):
        return
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    (run / f"checksum-rank{dist.rank}.json").write_text(json.dumps({"rank": dist.rank, "sha256": digest.hexdigest()}))


def finish(
    run: Path,
    model: RewardModel,
    examples: Examples,
    cfg: RewardTrainConfig,
    model_cfg: RewardModelConfig,
    context: dict,
    dist: Distributed,
    steps_done: int,
    records: list[dict],
    selection: Selection,
) -> dict:
    """The selected weights tested once on the held-out rows; weights, component scorers, plots and the manifest."""
    if selection.step is None:  # nothing was trained (e.g. a time limit of ~0): the initial weights are the model
        selection.update(steps_done, evaluate.validate(model, examples, dist.device, "val"), model)
    model.load_state_dict(selection.weights)
    rows, pairs = examples.held_out("test")
    components, reward = evaluate.predict(model, examples, rows, dist.device)
    final = evaluate.metrics(examples, rows, components, reward, model.weights.cpu().numpy(), pairs)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / WEIGHTS_FILE)
    (run / COMPONENTS_DIR).mkdir(exist_ok=True)
    examples.components.save(
        run / COMPONENTS_DIR,
        {
            "encoder": context["encoder"],
            "features": context["features"],
            "fit_rows": len(examples.split.train_rows),
            "fit_on": f"training rows of split {examples.split.name!r} (the scorers behind the val / test signals)",
        },
    )
    write_csv(run)
    plot_curves(run, context["noise_ceiling"], selection.step, final)
    evaluate.plot_calibration(components, examples.targets[rows], run / "calibration.png")
    split = examples.split
    run_json = {
        "scale": cfg.scale,
        "model": asdict(model_cfg),
        "parameters": parameter_count(model),
        "train": asdict(cfg),
        "weights": dict(zip(COMPONENTS, model.weights.tolist(), strict=True)),
        "split": {
            "name": split.name,
            "train_images": len(split.train_rows),
            "val_images": len(split.val_rows),
            "eval_images": len(split.eval_rows),
            "train_pairs": len(examples.train_pairs.target),
            "val_pairs": len(examples.val_pairs.target),
            "eval_pairs": len(examples.eval_pairs.target),
        },
        "steps_done": steps_done,
        "stopped_by_time_limit": steps_done < cfg.steps and not selection.stopped_early,
        "stopped_early": selection.stopped_early,
        "selected_step": selection.step,
        "selection": {
            "metric": f"val {SELECTION_METRIC}",
            "eval_every": cfg.eval_every,
            "patience": cfg.patience,
            "evaluations": selection.evals,
        },
        "samples_seen": {
            "rated_images": steps_done * cfg.batch_size * cfg.mse,
            "pairs": steps_done * cfg.batch_size * cfg.bt,
        },
        "metrics": final,  # test rows, selected weights
        "val_metrics": selection.metrics,  # val rows, selected weights (the best logged evaluation)
        "vs_noise_ceiling": evaluate.against_ceiling(final, context["noise_ceiling"]),
        "components_dir": COMPONENTS_DIR,
        "wall_seconds": records[-1]["seconds"] if records else 0.0,
        "seconds_per_step": _seconds_per_step(records),
        # Over every process that trained this run (resumes included), not only this one.
        "peak_rss_mb": max([peak_rss_mb(), *(r.get("peak_rss_mb", 0.0) for r in records)]),
        "device": str(dist.device),
        "world_size": dist.world,
        **context,
    }
    if dist.device.type == "cuda":
        run_json["max_cuda_memory_mb"] = round(torch.cuda.max_memory_allocated(dist.device) / 2**20, 1)
    (run / MANIFEST_FILE).write_text(json.dumps(run_json, indent=2) + "\n")
    return run_json


def _seconds_per_step(records: list[dict]) -> float | None:
    """Median step time over the logged steps, skipping those that also ran a validation."""
    times = [b["seconds"] - a["seconds"] for a, b in itertools.pairwise(records) if "val_spearman_reward" not in b]
    return round(float(np.median(times)), 4) if times else None


def write_csv(run: Path) -> None:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    columns = list(dict.fromkeys(k for r in records for k in r))
    with (run / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def plot_curves(run: Path, ceiling: dict | None, selected: int | None = None, test: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_spearman_reward" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for key in ("loss", "mse", "bt"):
        ax1.plot([r["step"] for r in steps], [r[key] for r in steps], lw=0.8, label=key)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log", title="reward model training")
    ax1.legend()
    for key, color in (("val_spearman_reward", "C0"), ("val_pair_accuracy", "C1")):
        ax2.plot([r["step"] for r in evals], [r[key] for r in evals], marker="o", color=color, label=key)
        if selected is not None and test:
            ax2.plot([selected], [test[key[4:]]], marker="*", ms=12, color=color, ls="", label=f"test_{key[4:]}")
    if selected is not None:
        ax2.axvline(selected, color="grey", lw=0.8, ls=":", label=f"selected step {selected}")
    if ceiling:
        ax2.axhline(ceiling["spearman_vs_mean_rating"]["reward"], color="C0", ls="--", lw=0.8, label="ceiling rho")
        ax2.axhline(ceiling["pairwise_accuracy"], color="C1", ls="--", lw=0.8, label="ceiling pair acc.")
    ax2.set(xlabel="step", ylabel="val / test", title="model selection on val, selected model on test")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)


# --- setup and the cv / leave-one-style-out loops --------------------------------------------------------------


def code_version() -> dict:
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def model_config(cfg: RewardTrainConfig, cache: FeatureCache) -> RewardModelConfig:
    """The scale's architecture with its input sizes taken from the cache (they belong to the encoder)."""
    shapes = cache.meta["shapes"]
    scale = load_scale(cfg.scale)
    return replace(
        scale,
        dropout=scale.dropout if cfg.dropout is None else cfg.dropout,
        prompt_tokens=shapes["prompt_tokens"][1],
        prompt_dim=shapes["prompt_tokens"][2],
        image_tokens=shapes["image_tokens"][1],
        image_dim=shapes["image_tokens"][2],
    )


def train(
    data: Path,
    features: Path,
    components: Path,
    run: Path,
    cfg: RewardTrainConfig,
    cv: int | None = None,
    leave_one_style_out: bool = False,
    progress: bool = True,
) -> dict:
    """One run (train / val / test splits), or one per fold into RUN/<fold>/ plus a summary; returns the
    manifest, or the summary for folds (empty on ranks other than 0)."""
    dist = init_distributed()
    if dist.device.type == "cuda":
        # TF32 matrix units for float32 matmuls: ~1e-3 relative error per product, far under the run-to-run
        # spread of the metrics, and several times the strict-float32 rate on Ampere/Hopper.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        return _train_all(data, features, components, run, cfg, cv, leave_one_style_out, dist, progress)
    finally:
        if dist.world > 1:
            torch_dist.destroy_process_group()


def _train_all(
    data: Path,
    features: Path,
    components: Path,
    run: Path,
    cfg: RewardTrainConfig,
    cv: int | None,
    leave_one_style_out: bool,
    dist: Distributed,
    progress: bool,
) -> dict:
    table = Table.load(data, features)
    pairs = load_pairs(data, table)
    style = StyleScorer.load(components)
    card = json.loads(schema.Layout(data).card.read_text())
    model_cfg = model_config(cfg, table.cache)
    context = {
        "data": {"path": str(data), "table_sha256": card.get("table_sha256")},
        "features": str(features),
        "components": str(components),
        "encoder": table.cache.meta["identity"]["encoder"],
        "code_version": code_version(),
        "noise_ceiling": card.get("noise_ceiling"),
    }
    if cv is None and not leave_one_style_out:
        examples = build_examples(table, pairs, default_split(table), style)
        return train_split(run, examples, cfg, model_cfg, context, dist, progress)
    kind = "cv" if cv is not None else "loso"
    splits = cv_splits(table, cv) if cv is not None else style_splits(table)
    manifests = {}
    for split in splits:
        examples = build_examples(table, pairs, split, style)
        manifests[split.name] = train_split(run / split.name, examples, cfg, model_cfg, context, dist, progress)
    return write_summary(run, kind, manifests) if dist.main else {}


def write_summary(run: Path, kind: str, manifests: dict[str, dict]) -> dict:
    """Per-fold metrics and mean +- std (sample std over folds) as ``<kind>.json`` and ``<kind>.md``."""
    keys = [f"spearman_{c}" for c in (*COMPONENTS, "reward")] + ["pair_accuracy"]
    per_fold = {
        name: {k: m["metrics"][k] for k in [*keys, "n_eval_images", "n_eval_pairs"]}
        | {"selected_step": m["selected_step"], "val_spearman_reward": m["val_metrics"]["spearman_reward"]}
        for name, m in manifests.items()
    }
    values = {k: np.array([f[k] for f in per_fold.values()], dtype=float) for k in keys}
    summary = {
        "kind": kind,
        "folds": per_fold,
        "mean": {k: float(np.nanmean(v)) for k, v in values.items()},
        "std": {k: float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
        "noise_ceiling": next(iter(manifests.values()))["noise_ceiling"],
    }
    (run / f"{kind}.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = f"{len(manifests)}-fold cross-validation" if kind == "cv" else "leave-one-style-out"
    header = ["fold", "images", "pairs", *[k.replace("spearman_", "rho ") for k in keys]]
    lines = [f"# Reward model, {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, fold in per_fold.items():
        cells = [name, str(fold["n_eval_images"]), str(fold["n_eval_pairs"]), *[f"{fold[k]:.3f}" for k in keys]]
        lines.append("| " + " | ".join(cells) + " |")
    mean_std = [f"{summary['mean'][k]:.3f} ± {summary['std'][k]:.3f}" for k in keys]
    lines.append("| **mean ± std** | | | " + " | ".join(mean_std) + " |")
    (run / f"{kind}.md").write_text("\n".join(lines) + "\n")
    return summary
