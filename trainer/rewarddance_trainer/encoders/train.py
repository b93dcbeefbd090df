"""Contrastive (LiT-style) training of an image tower against the frozen pretrained MiniLM text tower.

Recipe: setup -> train -> save, top to bottom. The text transformer is frozen, so its pooled prompt features
are computed once and only the text projection, the image tower and the logit scale learn. Positives are the
images whose mean human fidelity rating is at least ``min_fidelity_rating`` (ratings, never gold). Each batch
holds one image per prompt, so no false negatives share a batch; with ``hard_negatives`` a candidate of the same
prompt rated at most ``max_negative_rating`` joins the batch as an extra negative for that prompt's text.
Checkpoints every ``ckpt_every`` steps; rerunning the same command resumes from the last one and continues the
same curve (batches are drawn from ``(seed, step)``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from rewarddance.preprocess import load_pixels

from ..data import schema
from .config import EncoderTrainConfig
from .model import META_FILE, WEIGHTS_FILE, Encoder

CHECKPOINT = "checkpoint.safetensors"
TRAIN_STATE = "train_state.pt"


@dataclass
class PairData:
    """Positive (prompt, image) pairs of one split, images already decoded."""

    prompt_index: np.ndarray  # (m,) index into the prompt table for each image
    pixels: np.ndarray  # (m, s, s, 3) uint8
    by_prompt: dict[int, np.ndarray]  # prompt index -> rows of its positives
    negatives_by_prompt: dict[int, np.ndarray]  # prompt index -> rows of its images rated unfaithful


def load_pairs(
    root: Path, split: str, size: int, min_rating: float, max_negative_rating: float = 0.0
) -> tuple[pd.DataFrame, PairData]:
    """Positives (and, when ``max_negative_rating`` >= 1, unfaithful candidates) of one split, decoded."""
    layout = schema.Layout(root)
    prompts = pd.read_parquet(layout.table("prompts")).reset_index(drop=True)
    images = pd.read_parquet(layout.table("images"))
    rated = images.image_id.map(pd.read_parquet(layout.table("ratings")).groupby("image_id")["fidelity"].mean())
    in_split = images.prompt_id.map(prompts.set_index("prompt_id")["split"]) == split
    keep = in_split & rated.notna() & ((rated >= min_rating) | (rated <= max_negative_rating))
    images, rated = images[keep], rated[keep].to_numpy()
    prompt_index = pd.Series(prompts.index, index=prompts.prompt_id).loc[images.prompt_id].to_numpy()
    pixels = load_pixels([root / p for p in images.path], size)
    positive = rated >= min_rating

    def group(mask: np.ndarray) -> dict[int, np.ndarray]:
        return {int(p): np.flatnonzero(mask & (prompt_index == p)) for p in np.unique(prompt_index[mask])}

    return prompts, PairData(prompt_index, pixels, group(positive), group(~positive))


@torch.no_grad()
def frozen_text_features(encoder: Encoder, texts: list[str], batch: int = 256) -> torch.Tensor:
    """Pooled outputs of the frozen text transformer, before the trainable projection."""
    text = encoder.model.text
    out = []
    for i in range(0, len(texts), batch):
        ids = encoder.tokenize(texts[i : i + batch])
        mask = (ids != text.config.pad_token_id).long()
        out.append(text.pooler(text.transformer(input_ids=ids, attention_mask=mask), mask))
    return torch.cat(out)


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; image rows beyond len(text) are extra negatives for the text->image direction."""
    n = len(text)
    logits = logit_scale.exp().clamp(max=100) * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    target = torch.arange(n)
    return (F.cross_entropy(logits[:n], target) + F.cross_entropy(logits.T, target)) / 2


def recall_at_1(image: np.ndarray, text: np.ndarray) -> dict[str, float]:
    """Rows are matched pairs; R@1 in both directions over the whole set."""
    sim = image @ text.T
    target = np.arange(len(sim))
    return {
        "i2t_r1": float((sim.argmax(axis=1) == target).mean()),
        "t2i_r1": float((sim.argmax(axis=0) == target).mean()),
        "n": len(sim),
    }


def _lr(step: int, cfg: EncoderTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _trainable(encoder: Encoder) -> list[torch.nn.Parameter]:
    model = encoder.model
    for p in model.parameters():
        p.requires_grad = False
    params = [*model.visual.parameters(), *model.text.proj.parameters(), model.logit_scale]
    for p in params:
        p.requires_grad = True
    return params


def _optimizer(params: list[torch.nn.Parameter], cfg: EncoderTrainConfig) -> torch.optim.AdamW:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def evaluate(encoder: Encoder, text_features: torch.Tensor, data: PairData) -> dict[str, float]:
    """Held-out R@1: the first positive image of each prompt against all held-out prompts."""
    prompts = sorted(data.by_prompt)
    rows = np.array([data.by_prompt[p][0] for p in prompts])
    encoder.model.eval()
    with torch.no_grad():
        image = encoder.model.visual(encoder.image_tensor(data.pixels[rows]))
        image = image[0] if isinstance(image, tuple) else image
        text = encoder.model.text.proj(text_features[prompts])
    return recall_at_1(F.normalize(image, dim=-1).numpy(), F.normalize(text, dim=-1).numpy())


def _save_checkpoint(
    run: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, step: int, cfg: EncoderTrainConfig
) -> None:
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, run / (CHECKPOINT + ".tmp"))
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "config": asdict(cfg)}, run / (TRAIN_STATE + ".tmp"))
    (run / (CHECKPOINT + ".tmp")).replace(run / CHECKPOINT)
    (run / (TRAIN_STATE + ".tmp")).replace(run / TRAIN_STATE)


def _resume(run: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, cfg: EncoderTrainConfig) -> int:
    if not (run / TRAIN_STATE).exists():
        return 0
    state = torch.load(run / TRAIN_STATE, weights_only=False)
    if state["config"] != asdict(cfg):
        raise ValueError(f"{run} holds a run with other settings; use a new --out or the same settings to resume")
    encoder.model.load_state_dict(load_file(run / CHECKPOINT))
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def train(data_dir: Path, run: Path, cfg: EncoderTrainConfig, progress: bool = True) -> dict:
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    encoder = Encoder.create(cfg.model)
    encoder.model.visual.output_tokens = False
    size = encoder.image_spec.size
    negative_rating = cfg.max_negative_rating if cfg.hard_negatives else 0.0
    prompts, train_data = load_pairs(data_dir, "train", size, cfg.min_fidelity_rating, negative_rating)
    _, test_data = load_pairs(data_dir, "test", size, cfg.min_fidelity_rating)
    if len(train_data.by_prompt) < 2:
        raise ValueError(f"{data_dir} has fewer than 2 training prompts with a positive image")
    text_features = frozen_text_features(encoder, prompts.text.tolist())
    optimizer = _optimizer(_trainable(encoder), cfg)
    start = _resume(run, encoder, optimizer, cfg)
    train_prompts = np.array(sorted(train_data.by_prompt))
    batch = min(cfg.batch_size, len(train_prompts))
    log = (run / "metrics.jsonl").open("a")
    started = time.perf_counter()
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="encoder", disable=not progress):
        rng = np.random.default_rng([cfg.seed, step])
        chosen = rng.choice(train_prompts, size=batch, replace=False)
        picked = [rng.choice(train_data.by_prompt[p]) for p in chosen]
        if cfg.hard_negatives:
            negatives = train_data.negatives_by_prompt
            picked += [rng.choice(negatives[p]) for p in chosen if p in negatives]
        rows = np.array(picked)
        encoder.model.train()
        image = encoder.model.visual(encoder.image_tensor(train_data.pixels[rows]))
        loss = clip_loss(image, encoder.model.text.proj(text_features[chosen]), encoder.model.logit_scale)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        record = {
            "step": step + 1,
            "loss": round(loss.item(), 5),
            "lr": _lr(step, cfg),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            record.update({f"test_{k}": v for k, v in evaluate(encoder, text_features, test_data).items()})
        log.write(json.dumps(record) + "\n")
        log.flush()
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(run, encoder, optimizer, step + 1, cfg)
    log.close()
    return _finish(run, encoder, text_features, test_data, cfg, data_dir, cfg.steps)


def finalize(data_dir: Path, run: Path, cfg: EncoderTrainConfig) -> dict:
    """Stop early: publish the last checkpoint of an unfinished run as the encoder (records the step reached)."""
    encoder = Encoder.create(cfg.model)
    encoder.model.visual.output_tokens = False
    optimizer = _optimizer(_trainable(encoder), cfg)
    step = _resume(run, encoder, optimizer, cfg)
    if step == 0:
        raise ValueError(f"{run} has no checkpoint to finalize")
    prompts, test_data = load_pairs(data_dir, "test", encoder.image_spec.size, cfg.min_fidelity_rating)
    text_features = frozen_text_features(encoder, prompts.text.tolist())
    return _finish(run, encoder, text_features, test_data, cfg, data_dir, step)


def _finish(
    run: Path,
    encoder: Encoder,
    text_features: torch.Tensor,
    test: PairData,
    cfg: EncoderTrainConfig,
    data_dir: Path,
    steps_done: int,
) -> dict:
    metrics = evaluate(encoder, text_features, test)
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, run / WEIGHTS_FILE)
    card = json.loads(schema.Layout(data_dir).card.read_text())
    meta = {
        "model": cfg.model,
        "config": asdict(cfg),
        "steps_completed": steps_done,
        "test_retrieval": metrics,
        "data": {"path": str(data_dir), "table_sha256": card.get("table_sha256")},
        "image_spec": asdict(encoder.image_spec),
        "embed_dim": encoder.embed_dim,
    }
    (run / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    plot_curve(run)
    return meta


def plot_curve(run: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.8)
    ax1.set(xlabel="step", ylabel="contrastive loss", title="encoder training loss")
    evals = [r for r in rows if "test_i2t_r1" in r]
    for key in ("test_i2t_r1", "test_t2i_r1"):
        ax2.plot([r["step"] for r in evals], [r[key] for r in evals], marker="o", label=key)
    ax2.set(xlabel="step", ylabel="R@1 (held-out prompts)", title="retrieval")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)
