"""Pixel reward model recipe: setup -> train -> select -> test -> save, top to bottom.

Each step takes ``prompts_per_batch`` training prompts with all their candidates (a seeded permutation of the
training prompts per epoch, so a resumed run sees the same batches) and minimises

    mse_weight * MSE(heads, mean Likert ratings in [0, 1])
  + bt_weight * Bradley-Terry(R_a - R_b; the pairs table's winner, ties as 0.5)
  + listwise_weight * ListNet(softmax(R / t) against softmax(rated utility / t) over each prompt's candidates)
  (+ component_listwise_weight * the same ListNet for each head against its own rating, when set; only the heads
   named in component_listwise_heads, when given)

with AdamW (warmup + cosine, gradient norm clipped to 1). Only the human tables are read; gold never. Every
``eval_every`` steps the model is validated on a fixed draw of val prompts and the best step by val Spearman R
is kept (with each checkpoint, so a resume keeps it too). At the end the kept weights are tested once on the
test split and written as ``reward.safetensors`` with ``run.json``, ``metrics.jsonl`` and ``curves.png``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from rewarddance.components.base import COMPONENTS

from ..data import schema
from ..reward.train import code_version, peak_rss_mb
from . import evaluate
from .config import PixelRewardConfig, PixelTrainConfig, load_scale
from .data import PairIndex, PromptGroups, Tables, collate
from .model import MANIFEST_FILE, WEIGHTS_FILE, PixelRewardModel, load_grown, parameter_count
from .text import load_cache

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
TRAIN_STATE = "train_state.pt"


# --- losses ----------------------------------------------------------------------------------------------------
def mse_loss(components: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    rated = ~torch.isnan(targets)
    return torch.where(rated, components - targets.nan_to_num(), 0.0).pow(2).sum() / rated.sum().clamp(min=1)


def bt_loss(reward: torch.Tensor, a: np.ndarray, b: np.ndarray, target: np.ndarray, scale: torch.Tensor):
    if len(a) == 0:
        return reward.sum() * 0.0
    logits = scale * (reward[torch.from_numpy(a)] - reward[torch.from_numpy(b)])
    return F.binary_cross_entropy_with_logits(logits, torch.from_numpy(target).to(logits.device))


def swap_loss(
    model: PixelRewardModel,
    image: torch.Tensor,
    own_logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    group: np.ndarray,
    per_group: int,
) -> torch.Tensor:
    """Prompt-swap ranking: the first ``per_group`` candidates of each prompt, read with the next prompt of the batch,
    should score a lower fidelity than with their own prompt (softplus of the logit difference). It needs no label:
    an image was made for its prompt, not for another."""
    groups = np.unique(group)
    if len(groups) < 2 or per_group < 1:
        return own_logits.sum() * 0.0
    first = {g: np.flatnonzero(group == g) for g in groups}
    chosen = np.concatenate([first[g][:per_group] for g in groups])
    donor = np.array([first[groups[(np.searchsorted(groups, group[i]) + 1) % len(groups)]][0] for i in chosen])
    chosen_t, donor_t = torch.from_numpy(chosen), torch.from_numpy(donor)
    swapped = model.fuse(image[chosen_t], tokens[donor_t], mask[donor_t])
    return F.softplus(swapped[:, 0] - own_logits[chosen_t, 0]).mean()


def edit_swap_loss(
    model: PixelRewardModel,
    image: torch.Tensor,
    own_logits: torch.Tensor,
    edited_tokens: torch.Tensor,
    edited_mask: torch.Tensor,
    group: np.ndarray,
    rated_fidelity: torch.Tensor,
    per_group: int,
) -> torch.Tensor:
    """Edited-prompt ranking: the ``per_group`` candidates of each prompt rated most faithful, read with their
    prompt with one colour, shape or position changed, should score a lower fidelity than with their own prompt.
    Only well-rated candidates are used: a flawed image may match the edit (a blue disc for "a red disc" edited
    to "a blue disc")."""
    if per_group < 1:
        return own_logits.sum() * 0.0
    fidelity = rated_fidelity.nan_to_num(-1.0).cpu().numpy()
    chosen = np.concatenate(
        [
            idx[np.argsort(-fidelity[idx], kind="stable")[:per_group]]
            for g in np.unique(group)
            for idx in [np.flatnonzero(group == g)]
        ]
    )
    chosen_t = torch.from_numpy(chosen).to(own_logits.device)
    edited = model.fuse(image[chosen_t], edited_tokens[chosen_t], edited_mask[chosen_t])
    return F.softplus(edited[:, 0] - own_logits[chosen_t, 0]).mean()


def noisy_prompt(tokens: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Token states (n, L, 384) plus Gaussian noise of ``scale`` times each token's RMS (training only)."""
    rms = tokens.pow(2).mean(-1, keepdim=True).sqrt()
    noise = torch.randn(tokens.shape, generator=generator, device=tokens.device, dtype=tokens.dtype)
    return tokens + scale * rms * noise


def listwise_loss(reward: torch.Tensor, utility: torch.Tensor, group: np.ndarray, temperature: float) -> torch.Tensor:
    """ListNet: cross-entropy of softmax(R / t) against softmax(utility / t) within each prompt's candidates."""
    losses = []
    for g in np.unique(group):
        members = torch.from_numpy(np.flatnonzero(group == g))
        u = utility[members]
        if len(members) < 2 or torch.isnan(u).any():
            continue
        target = torch.softmax(u / temperature, dim=0)
        losses.append(-(target * torch.log_softmax(reward[members] / temperature, dim=0)).sum())
    return torch.stack(losses).mean() if losses else reward.sum() * 0.0


def component_listwise_loss(
    components: torch.Tensor, targets: torch.Tensor, group: np.ndarray, cfg: PixelTrainConfig
) -> torch.Tensor:
    """ListNet within each prompt for each chosen head (``cfg.listwise_heads``) against its own mean rating,
    averaged over those heads."""
    t = cfg.listwise_temperature
    columns = [COMPONENTS.index(name) for name in cfg.listwise_heads]
    heads = [listwise_loss(components[:, i], targets[:, i], group, t) for i in columns]
    return torch.stack(heads).mean()


# --- schedule, batches -----------------------------------------------------------------------------------------
def learning_rate(step: int, cfg: PixelTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class EpochBatches(torch.utils.data.Sampler):
    """Batches of prompt indices from step ``start`` on: a seeded permutation per epoch, the last partial batch
    dropped, so step s always sees the same prompts whether or not the run was resumed."""

    def __init__(self, n: int, per_batch: int, seed: int, start: int, steps: int) -> None:
        self.n, self.per_batch, self.seed, self.start, self.steps = n, min(per_batch, n), seed, start, steps
        self.per_epoch = max(1, n // self.per_batch)

    def __iter__(self):
        for step in range(self.start, self.steps):
            epoch, k = divmod(step, self.per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            yield order[k * self.per_batch : (k + 1) * self.per_batch].tolist()

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def fixed_draw(prompt_rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of the prompts (all when n is 0 or larger than the split), the same draw every time."""
    if n <= 0 or n >= len(prompt_rows):
        return prompt_rows
    return np.sort(np.random.default_rng([seed, 7]).choice(prompt_rows, n, replace=False))


# --- checkpoints -----------------------------------------------------------------------------------------------
@dataclass
class Best:
    step: int | None = None
    metrics: dict | None = None

    @property
    def value(self) -> float:
        """Val Spearman R; pair accuracy where the data has no ratings (a dataset of people's votes)."""
        metrics = self.metrics or {}
        v = metrics.get("spearman_reward", float("nan"))
        v = v if math.isfinite(v) else metrics.get("pair_accuracy", float("nan"))
        return v if math.isfinite(v) else -math.inf


def save_checkpoint(run: Path, model, optimizer, step: int, identity: dict, best: Best) -> None:
    """train_state.pt is written last, so a crash leaves the previous checkpoint whole."""
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / (CHECKPOINT + ".tmp"))
    state = {"optimizer": optimizer.state_dict(), "step": step, "identity": identity, "best": asdict(best)}
    torch.save(state, run / (TRAIN_STATE + ".tmp"))
    (run / (CHECKPOINT + ".tmp")).replace(run / CHECKPOINT)
    (run / (TRAIN_STATE + ".tmp")).replace(run / TRAIN_STATE)


def resume(run: Path, model, optimizer, identity: dict) -> tuple[int, Best]:
    if not (run / TRAIN_STATE).exists():
        return 0, Best()
    state = torch.load(run / TRAIN_STATE, weights_only=False, map_location="cpu")
    if state["identity"] != identity:
        raise ValueError(f"{run} holds a run with other settings; use a new --out or the same settings to resume")
    model.load_state_dict(load_file(run / CHECKPOINT))
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), Best(**state["best"])


def _log(run: Path, record: dict) -> None:
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def _records(run: Path, upto: int) -> list[dict]:
    path = run / "metrics.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    records = [r for r in records if r["step"] <= upto]
    path.write_text("".join(json.dumps(r) + "\n" for r in records)) if path.exists() else None
    return records


def init_architecture(init: Path) -> PixelRewardConfig:
    """The architecture of the run ``--init`` names (a grown run is deeper than its scale's file says)."""
    meta = json.loads((init / MANIFEST_FILE).read_text()) if (init / MANIFEST_FILE).exists() else None
    if meta is None or not (init / WEIGHTS_FILE).exists():
        raise ValueError(f"--init {init} is not a finished pixel reward run (no {MANIFEST_FILE} / {WEIGHTS_FILE})")
    return PixelRewardConfig(**meta["model"])


def load_init(model: PixelRewardModel, init: Path) -> None:
    """Start from another run's selected weights (fine-tuning, e.g. on a dataset of people's A/B votes). The model
    may have more image or fusion blocks than that run (``grow_*_layers``): those start as the identity."""
    have = init_architecture(init)
    want = model.cfg
    depths = ("image_layers", "fusion_layers", "stem_blocks")
    deeper = all(getattr(want, k) >= getattr(have, k) for k in depths)
    same = replace(want, **{k: getattr(have, k) for k in depths}, dropout=have.dropout)
    if same != have or not deeper:
        scale = json.loads((init / MANIFEST_FILE).read_text()).get("scale")
        raise ValueError(f"--init {init} is a {scale} run with another architecture: pass --scale {scale}")
    load_grown(model, load_file(init / WEIGHTS_FILE), have.image_layers, have.fusion_layers, have.stem_blocks)


# --- the recipe ------------------------------------------------------------------------------------------------
def train(data: Path, run: Path, cfg: PixelTrainConfig, progress: bool = True, init: Path | None = None) -> dict:
    """Train on ``data``'s train split into ``run`` (rerun to resume); returns the run manifest. ``init``: start
    from that run's weights instead of a fresh initialisation."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tables = Tables.load(data)
    states = load_cache(data)
    edited_states = load_cache(data, edited=True) if cfg.edit_swap_weight > 0 else None
    scale = load_scale(cfg.scale)
    if (cfg.grow_image_layers or cfg.grow_fusion_layers or cfg.grow_stem_blocks) and init is None:
        raise ValueError(
            "--grow-image-layers / --grow-fusion-layers / --grow-stem-blocks grow a trained model: pass --init"
        )
    if init is not None:  # the depth is the init's (a grown run is deeper than its scale's file says), plus growth
        start_from = init_architecture(Path(init))
        scale = replace(
            scale,
            image_layers=start_from.image_layers + cfg.grow_image_layers,
            fusion_layers=start_from.fusion_layers + cfg.grow_fusion_layers,
            stem_blocks=start_from.stem_blocks + cfg.grow_stem_blocks,
        )
    model_cfg = replace(scale, dropout=scale.dropout if cfg.dropout is None else cfg.dropout)
    card = json.loads(schema.Layout(data).card.read_text())
    train_prompts = tables.prompt_rows("train", cfg.hold_out_style)
    val_prompts = fixed_draw(tables.prompt_rows("val", cfg.hold_out_style), cfg.val_prompts)
    if len(train_prompts) == 0 or len(val_prompts) == 0:
        raise ValueError(f"{data} needs prompts in both the train and the val split")
    run.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = PixelRewardModel(model_cfg).to(device)
    if init is not None:
        load_init(model, Path(init))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases, norms, the BT scale
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    # Loader processes and the time limit change how a run is carried out, not what it computes: a resume may differ.
    recipe = asdict(cfg) | {"workers": None, "time_limit": None}
    for term in (
        "edit_swap_weight",
        "component_listwise_weight",
        "component_listwise_heads",
        "grow_image_layers",
        "grow_fusion_layers",
        "grow_stem_blocks",
        "prompt_noise",
    ):
        if not getattr(cfg, term):  # runs from before the term existed resume unchanged
            recipe.pop(term)
    architecture = asdict(model_cfg)
    if not model_cfg.stem_blocks:  # runs from before stem blocks existed resume unchanged
        architecture.pop("stem_blocks")
    identity = {"train": recipe, "model": architecture, "data": card.get("table_sha256")}
    if init is not None:
        identity["init"] = str(init)
    start, best = resume(run, model, optimizer, identity)
    records = _records(run, start)
    elapsed0 = records[-1]["seconds"] if records else 0.0

    groups = PromptGroups(tables, train_prompts, model_cfg.image_size, cfg.images_per_prompt, cfg.seed)
    sampler = EpochBatches(len(train_prompts), cfg.prompts_per_batch, cfg.seed, start, cfg.steps)
    batches = torch.utils.data.DataLoader(
        groups,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        prefetch_factor=4 if cfg.workers else None,
    )
    targets_all = torch.from_numpy(tables.targets)
    pairs = PairIndex(tables.pair_rows, tables.pair_target, len(tables.images))
    tokens, mask = states

    # the noise of step s depends on (seed, s) only, so a resumed run draws what the uninterrupted one would have
    noise_rng = torch.Generator(device=device)
    started = time.perf_counter() - elapsed0
    bar = tqdm(total=cfg.steps, initial=start, desc=f"pixel reward {cfg.scale}", disable=not progress)
    step = start
    for rows, pixels, group in batches:
        if cfg.time_limit and time.perf_counter() - started > cfg.time_limit:
            if records and "val_spearman_reward" not in records[-1]:  # the last step trained is a candidate too
                best = _validate(run, model, tables, states, val_prompts, cfg, step, best, records[-1])
                (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            save_checkpoint(run, model, optimizer, step, identity, best)
            break
        lr = learning_rate(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        model.train()
        prompt_tokens, prompt_mask = evaluate.prompt_inputs(tables, tokens, mask, rows)
        prompt_tokens, prompt_mask = prompt_tokens.to(device), prompt_mask.to(device)
        if cfg.prompt_noise:
            noise_rng.manual_seed(cfg.seed * 1_000_003 + step)
            prompt_tokens = noisy_prompt(prompt_tokens, cfg.prompt_noise, noise_rng)
        image = model.image_tokens(torch.from_numpy(pixels).to(device))
        logits = model.fuse(image, prompt_tokens, prompt_mask)
        components = torch.sigmoid(logits)
        reward = components @ model.weights
        targets = targets_all[rows].to(device)
        mse = mse_loss(components, targets)
        bt = bt_loss(reward, *pairs.within(rows), model.bt_scale)
        listwise = listwise_loss(reward, targets @ model.weights, group, cfg.listwise_temperature)
        swap = swap_loss(model, image, logits, prompt_tokens, prompt_mask, group, cfg.swap_images)
        loss = cfg.mse_weight * mse + cfg.bt_weight * bt + cfg.listwise_weight * listwise + cfg.swap_weight * swap
        per_head = None
        if cfg.component_listwise_weight:
            per_head = component_listwise_loss(components, targets, group, cfg)
            loss = loss + cfg.component_listwise_weight * per_head
        edit_swap = loss.new_zeros(())
        if edited_states is not None:
            e_tokens, e_mask = evaluate.prompt_inputs(tables, *edited_states, rows)
            edit_swap = edit_swap_loss(
                model, image, logits, e_tokens.to(device), e_mask.to(device), group, targets[:, 0], cfg.swap_images
            )
            loss = loss + cfg.edit_swap_weight * edit_swap
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        record = {
            "step": step,
            "loss": round(float(loss.detach()), 5),
            "mse": round(float(mse.detach()), 5),
            "bt": round(float(bt.detach()), 5),
            "listwise": round(float(listwise.detach()), 5),
            "swap": round(float(swap.detach()), 5),
            **({"component_listwise": round(float(per_head.detach()), 5)} if per_head is not None else {}),
            "edit_swap": round(float(edit_swap.detach()), 5),
            "lr": lr,
            "images": len(rows),
            "seconds": round(time.perf_counter() - started, 2),
        }
        records.append(record)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            best = _validate(run, model, tables, states, val_prompts, cfg, step, best, record)
        _log(run, record)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(run, model, optimizer, step, identity, best)
        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        bar.update(1)
    bar.close()
    if best.step is None:  # stopped before the first validation: the last weights are the candidate
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / BEST)
    return finish(run, model, tables, states, cfg, model_cfg, card, best, records, data, init)


def _validate(run: Path, model, tables, states, val_prompts, cfg, step: int, best: Best, record: dict) -> Best:
    """Val metrics into ``record``; the weights become best.safetensors when they beat the best so far."""
    rows, c, r = evaluate.predict(model, tables, states, val_prompts, cfg.workers)
    val = evaluate.metrics(tables, rows, c, r, model.weights.cpu().numpy())
    record |= {f"val_{k}": v for k, v in val.items()}
    if best.step is not None and not val["spearman_reward"] > best.value:
        return best
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / (BEST + ".tmp"))
    (run / (BEST + ".tmp")).replace(run / BEST)
    return Best(step, val)


def init_record(init: Path) -> dict:
    """What a fine-tuned run started from, for its run.json: the first stage's own budget, so that the shipped
    manifest says how much training the weights carry in all (a chain of stages nests under ``init``)."""
    meta = json.loads((Path(init) / MANIFEST_FILE).read_text())
    train = meta.get("train", {})
    keys = ("steps_done", "selected_step", "samples_seen", "wall_seconds", "torch_threads")
    return {"path": str(init), **{k: meta.get(k) for k in keys}, "lr": train.get("lr"), "seed": train.get("seed")} | (
        {"init": meta["init"]} if "init" in meta else {}
    )


def earlier_stages(run_info: dict) -> list[dict]:
    """The ``init`` records of a staged run's run.json (see ``init_record``), earliest stage first."""
    chain, init = [], run_info.get("init")
    while init:
        chain.append(init)
        init = init.get("init")
    return chain[::-1]


def finish(run, model, tables, states, cfg, model_cfg, card, best: Best, records, data, init=None) -> dict:
    """The kept weights tested once on the test split; weights, curves and run.json."""
    if (run / BEST).exists():
        model.load_state_dict(load_file(run / BEST))
    test_prompts = fixed_draw(tables.prompt_rows("test", cfg.hold_out_style), cfg.test_prompts)
    final: dict = {"spearman_reward": float("nan"), "spearman_fidelity": float("nan"), "pair_accuracy": float("nan")}
    if len(test_prompts):  # a small dataset of votes may have no test prompt
        rows, c, r = evaluate.predict(model, tables, states, test_prompts, cfg.workers)
        final = evaluate.metrics(tables, rows, c, r, model.weights.cpu().numpy())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / WEIGHTS_FILE)
    times = np.diff([x["seconds"] for x in records if "val_spearman_reward" not in x]) if len(records) > 2 else []
    run_info = {
        "kind": "pixel_reward",
        "scale": cfg.scale,
        "model": asdict(model_cfg),
        "parameters": parameter_count(model),
        "train": asdict(cfg),
        "weights": dict(zip(["fidelity", "style", "composition", "novelty"], model.weights.tolist(), strict=True)),
        "bt_scale": float(model.bt_scale.detach()),
        "steps_done": records[-1]["step"] if records else 0,
        "stopped_by_time_limit": bool(records) and records[-1]["step"] < cfg.steps,
        "selected_step": best.step,
        "val_metrics": best.metrics,
        "metrics": final,  # test split, selected weights
        "samples_seen": int(sum(x["images"] for x in records)),
        "wall_seconds": records[-1]["seconds"] if records else 0.0,
        "seconds_per_step": round(float(np.median(times)), 4) if len(times) else None,
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
        "data": {"path": str(data), "table_sha256": card.get("table_sha256"), "counts": card.get("counts")},
        "noise_ceiling": card.get("noise_ceiling"),
        "code_version": code_version(),
    }
    if init is not None:
        run_info["init"] = init_record(init)
    (run / MANIFEST_FILE).write_text(json.dumps(run_info, indent=2) + "\n")
    plot_curves(run, records, card.get("noise_ceiling"), best.step)
    return run_info


def plot_curves(run: Path, records: list[dict], ceiling: dict | None, selected: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = [r["step"] for r in records]
    for key in ("mse", "bt", "listwise", "swap", "edit_swap"):
        if any(r.get(key) for r in records):
            ax1.plot(steps, [r.get(key, 0.0) for r in records], lw=0.6, label=key)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log", title="pixel reward model training")
    ax1.legend()
    evals = [r for r in records if "val_spearman_reward" in r]
    for key in ("val_spearman_reward", "val_spearman_fidelity", "val_pair_accuracy"):
        ax2.plot([r["step"] for r in evals], [r[key] for r in evals], marker="o", ms=3, label=key)
    if ceiling:
        ax2.axhline(ceiling["spearman_vs_mean_rating"]["reward"], color="C0", ls="--", lw=0.8, label="ceiling rho R")
    if selected:
        ax2.axvline(selected, color="grey", ls=":", lw=0.8, label=f"selected step {selected}")
    ax2.set(xlabel="step", title="validation")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)
