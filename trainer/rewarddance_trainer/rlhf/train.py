"""The RLHF loop: rollout -> proxy reward (+ gold, for the record) -> per-prompt advantages -> PPO update.

Objective per stochastic DDIM step k of a trajectory with normalised advantage A (DDPO + DPOK):

    r_k   = p_theta(x_{k-1} | x_k) / p_old(x_{k-1} | x_k)
    L     = mean_k [ max(-A r_k, -A clip(r_k, 1 - c, 1 + c)) + beta * KL(p_theta(. | x_k) || p_base(. | x_k)) ]

A = clip((R - mean_prompt R) / (std_prompt R + 1e-4), -adv_clip, adv_clip) over the prompt's group of samples.
Every step's randomness (prompt draw, noise, shuffles) is seeded by (seed, step), so a run resumed from its
checkpoint repeats the next step exactly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import RLHFConfig
from .ddim import gaussian_kl, log_prob, step_mean
from .direct import GradRewardFn, reward_grad_update
from .policy import Policy
from .reward import RewardFn
from .rollout import Rollout, rollout

CKPT = "checkpoint.pt"
METRICS = "metrics.jsonl"
BEST = "best"  # the pipeline with the best validation proxy so far (with val_prompts)
BEST_META = "best.json"  # names its step and val proxy
SHEET_PROMPTS = 8  # eval prompts shown on the before/after contact sheets


def group_advantages(rewards: np.ndarray, group: int, clip: float) -> torch.Tensor:
    """Rewards normalised within each prompt's group of ``group`` consecutive samples."""
    r = rewards.reshape(-1, group)
    adv = (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-4)
    return torch.from_numpy(np.clip(adv, -clip, clip).reshape(-1)).float()


def ppo_update(policy: Policy, opt, ro: Rollout, cond, adv: torch.Tensor, cfg: RLHFConfig, gen) -> dict:
    n, k_steps = ro.log_probs.shape
    scheduler = policy.pipe.scheduler
    clipped, kls, approx, losses = [], [], [], []
    for _ in range(cfg.inner_epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.minibatch):
            idx = perm[i : i + cfg.minibatch]
            mb_cond = (cond[0][idx], cond[1][idx])
            a = adv[idx]
            opt.zero_grad(set_to_none=True)
            for k in torch.randperm(k_steps, generator=gen).tolist():
                p = ro.params[k]
                eps = policy.eps(ro.states[idx, k], ro.timesteps[k], mb_cond)
                mean = step_mean(scheduler, eps, ro.states[idx, k], p)
                ratio = torch.exp(log_prob(ro.next_states[idx, k], mean, p.sigma) - ro.log_probs[idx, k])
                pg = torch.maximum(-a * ratio, -a * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)).mean()
                kl = gaussian_kl(mean, ro.base_means[idx, k], p.sigma).mean()
                loss = (pg + cfg.kl_coef * kl) / k_steps
                loss.backward()
                clipped.append(float(((ratio - 1).abs() > cfg.clip_range).float().mean()))
                approx.append(float(0.5 * ((ratio.detach() - 1) ** 2).mean()))
                kls.append(float(kl.detach()))
                losses.append(float(loss.detach()) * k_steps)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            opt.step()
    return {
        "clip_fraction": float(np.mean(clipped)),
        "approx_ratio_kl": float(np.mean(approx)),
        "kl_update": float(np.mean(kls)),
        "loss": float(np.mean(losses)),
    }


def _score(reward_fn, gold, images: np.ndarray, prompts: list[str], seconds: dict) -> tuple[np.ndarray, dict]:
    """The proxy reward of a batch and its gold (for the record); the seconds each took go into ``seconds``."""
    t0 = time.perf_counter()
    rewards = np.asarray(reward_fn(images, prompts), np.float64)
    t1 = time.perf_counter()
    gold_scores = gold(images, prompts) if gold is not None else {}
    seconds |= {"seconds_scoring": t1 - t0, "seconds_gold": time.perf_counter() - t1}
    return rewards, gold_scores


def _batches(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate(
    policy: Policy,
    prompts: list[str],
    cond,
    reward_fn,
    gold,
    cfg: RLHFConfig,
    batch: int = 50,
    offset: int = 1_000_000,
    with_kl: bool = True,
) -> dict:
    """One sample per held-out prompt, the same noise at every evaluation (seeded by the batch, not the step).
    ``with_kl=False`` skips the base's forward passes (the samples are the same; no "kl" in the result)."""
    images, kl = [], []
    for b, (i, j) in enumerate(_batches(len(prompts), batch)):
        g = torch.Generator().manual_seed(cfg.seed * 7919 + offset + b)
        ro = rollout(policy, (cond[0][i:j], cond[1][i:j]), cfg.sample_steps, cfg.eta, g, cfg.min_sigma, with_kl)
        images.append(ro.images)
        kl.append(ro.kl.numpy())
    images = np.concatenate(images)
    out = {"proxy": float(np.mean(reward_fn(images, prompts)))}
    if with_kl:
        out["kl"] = float(np.mean(np.concatenate(kl)))
    if gold is not None:
        out |= {f"gold_{k}": float(np.mean(v)) for k, v in gold(images, prompts).items()}
    return out | {"_images": images}


def _save_checkpoint(run: Path, policy: Policy, opt, step: int) -> None:
    tmp = run / (CKPT + ".tmp")
    torch.save({"step": step, "trainable": policy.trainable_state(), "optimizer": opt.state_dict()}, tmp)
    os.replace(tmp, run / CKPT)


def _resume(run: Path, policy: Policy, opt) -> int:
    path = run / CKPT
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=False)
    policy.load_trainable_state(state["trainable"])
    opt.load_state_dict(state["optimizer"])
    step = int(state["step"])
    metrics = run / METRICS
    if metrics.exists():  # rows written after the checkpoint are repeated by the resumed run
        keep = [r for r in metrics.read_text().splitlines() if r and json.loads(r)["step"] < step]
        metrics.write_text("".join(r + "\n" for r in keep))
    return step


def _log(run: Path, row: dict) -> None:
    with open(run / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")


def train(
    generator,
    reward_fn: RewardFn,
    run: Path,
    cfg: RLHFConfig,
    train_prompts: list[str],
    eval_prompts: list[str],
    gold=None,
    progress: bool = True,
    meta: dict | None = None,
    val_prompts: list[str] | None = None,
    grad_reward: GradRewardFn | None = None,
) -> dict:
    """Tune ``generator`` (a path or a loaded ShapesDiffusionPipeline) against ``reward_fn``; returns run.json.
    With ``cfg.algorithm == "reward-grad"`` the update follows ``grad_reward``'s gradient (``direct.py``) and
    ``reward_fn`` only scores the batches and evaluations.

    With ``val_prompts`` (the val split's first ``cfg.val_prompts``), every evaluation also samples those at fixed
    seeds and scores them with the proxy; the policy with the best mean is saved to ``best/`` (``best.json``)."""
    from ..generator.load import load_generator
    from ..generator.sheet import contact_sheet

    if cfg.algorithm == "reward-grad" and grad_reward is None:
        raise ValueError("--algorithm reward-grad needs a differentiable reward (--reward-run)")
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    pipe = load_generator(generator) if isinstance(generator, str | Path) else generator
    if getattr(pipe, "vae", None) is not None:
        raise ValueError("RLHF here tunes pixel-space pipelines (ShapesDiffusionPipeline); this one has a VAE")
    torch.manual_seed(cfg.seed)  # LoRA initialisation
    policy = Policy(pipe, cfg.lora, cfg.lora_rank, cfg.lora_alpha, cfg.guidance, cfg.lora_targets)
    opt = torch.optim.AdamW(policy.param_groups(cfg.conv_lr_scale), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = _resume(run, policy, opt)
    eval_cond = pipe.encode(eval_prompts)
    val = (val_prompts, pipe.encode(val_prompts)) if val_prompts else None
    group = cfg.samples_per_prompt
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="rlhf")
    wall = time.time()
    for step in bar:
        if step % cfg.eval_every == 0:
            _run_eval(run, policy, step, eval_prompts, eval_cond, reward_fn, gold, cfg, contact_sheet)
            _run_val(run, policy, step, val, reward_fn, cfg)
        rng = np.random.default_rng([cfg.seed, step])
        prompts = [train_prompts[i] for i in rng.choice(len(train_prompts), cfg.prompts_per_step, replace=False)]
        states, mask = pipe.encode(prompts)
        cond = (states.repeat_interleave(group, 0), mask.repeat_interleave(group, 0))
        rep = [p for p in prompts for _ in range(group)]
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step) * g.get("lr_scale", 1.0)
        if cfg.algorithm == "reward-grad":
            out = reward_grad_update(policy, opt, grad_reward, cond, rep, cfg, gen)
            images, kl = out.pop("images"), out.pop("kl")
            seconds = {k: out.pop(k) for k in ("seconds_sampling", "seconds_update")}
            rewards, gold_scores = _score(reward_fn, gold, images, rep, seconds)
            stats = out
        else:
            t0 = time.perf_counter()
            ro = rollout(policy, cond, cfg.sample_steps, cfg.eta, gen, cfg.min_sigma)
            seconds = {"seconds_sampling": time.perf_counter() - t0}
            images, kl = ro.images, ro.kl
            rewards, gold_scores = _score(reward_fn, gold, images, rep, seconds)
            adv = group_advantages(rewards, group, cfg.adv_clip)
            t0 = time.perf_counter()
            stats = ppo_update(policy, opt, ro, cond, adv, cfg, gen)
            seconds["seconds_update"] = time.perf_counter() - t0
        row = {
            "kind": "train",
            "step": step,
            "proxy": float(rewards.mean()),
            "reward_std": float(rewards.reshape(-1, group).std(1).mean()),
            "kl": float(kl.mean()),
            "lr": cfg.lr_at(step),
            **stats,
            **{k: seconds[k] for k in ("seconds_sampling", "seconds_scoring", "seconds_gold", "seconds_update")},
        }
        if gold_scores:
            row["gold_utility"] = float(gold_scores["utility"].mean())
        _log(run, row)
        bar.set_postfix(proxy=f"{row['proxy']:.3f}", kl=f"{row['kl']:.3g}")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(run, policy, opt, step + 1)
    _run_eval(run, policy, cfg.steps, eval_prompts, eval_cond, reward_fn, gold, cfg, contact_sheet)
    _run_val(run, policy, cfg.steps, val, reward_fn, cfg)
    save_pipeline(policy, run / "pipeline")
    info = {
        "config": cfg.to_dict(),
        "generator": str(generator) if isinstance(generator, str | Path) else type(generator).__name__,
        "steps_completed": cfg.steps,
        "wall_seconds_this_session": time.time() - wall,
        **(meta or {}),
    }
    if (run / BEST_META).exists():
        info["best"] = json.loads((run / BEST_META).read_text())
    (run / "run.json").write_text(json.dumps(info, indent=2))
    plot_curves(run)
    return info


def _run_eval(run, policy, step, prompts, cond, reward_fn, gold, cfg, contact_sheet) -> None:
    if not prompts:
        return
    t0 = time.perf_counter()
    res = evaluate(policy, prompts, cond, reward_fn, gold, cfg)
    images = res.pop("_images")
    _log(run, {"kind": "eval", "step": step, **res, "seconds": time.perf_counter() - t0})
    (run / "eval").mkdir(exist_ok=True)
    np.save(run / "eval" / f"step_{step:05d}.npy", images)  # the held-out samples, for before/after sheets
    rows = [(p, [images[i]]) for i, p in enumerate(prompts[:SHEET_PROMPTS])]
    contact_sheet(rows, run / "eval" / f"step_{step:05d}.png")


def _run_val(run: Path, policy, step: int, val, reward_fn, cfg: RLHFConfig) -> None:
    """Proxy on the val prompts; a new best mean saves the policy to best/ (written before best.json names it)."""
    if not val:
        return
    prompts, cond = val
    res = evaluate(policy, prompts, cond, reward_fn, None, cfg, offset=2_000_000, with_kl=False)
    _log(run, {"kind": "val", "step": step, "proxy": res["proxy"]})
    path = run / BEST_META
    best = json.loads(path.read_text()) if path.exists() else None
    if best is None or res["proxy"] > best["val_proxy"]:
        save_pipeline(policy, run / BEST)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"step": step, "val_proxy": res["proxy"], "val_prompts": len(prompts)}))
        os.replace(tmp, path)


def save_pipeline(policy: Policy, directory: Path) -> None:
    """The tuned generator as a ShapesDiffusionPipeline (``save_pretrained``; ``rewarddance generate`` loads it)."""
    pipe = policy.pipe
    tuned = type(pipe)(
        unet=policy.merged_unet(), scheduler=pipe.scheduler, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
    )
    tuned.save_pretrained(directory)


def read_metrics(run: Path) -> list[dict]:
    path = Path(run) / METRICS
    return [json.loads(r) for r in path.read_text().splitlines() if r] if path.exists() else []


def plot_curves(run: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    tr = [r for r in rows if r["kind"] == "train"]
    ev = [r for r in rows if r["kind"] == "eval"]
    panels = [
        ("proxy reward", "proxy"),
        ("oracle gold utility", "gold_utility"),
        ("KL to base", "kl"),
        ("clip fraction", "clip_fraction"),
        ("reward std (per prompt)", "reward_std"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (title, key) in zip(axes, panels, strict=True):
        pts = [(r["step"], r[key]) for r in tr if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), lw=0.8, alpha=0.6, label="train batches")
        ekey = "gold_utility" if key == "gold_utility" else key
        epts = [(r["step"], r[ekey]) for r in ev if ekey in r]
        if epts and key in ("proxy", "gold_utility", "kl"):
            ax.plot(*zip(*epts, strict=True), "o-", label="held-out")
        ax.set_title(title)
        ax.set_xlabel("RL step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(run) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
