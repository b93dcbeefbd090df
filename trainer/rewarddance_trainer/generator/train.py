"""Train the shapes-world generator: epsilon-prediction DDPM loss, condition dropout, EMA, resumable checkpoints.

Run directory layout::

    RUN/run.json                 settings, data summary, steps completed, wall time
    RUN/metrics.jsonl            step, mean loss over the interval, lr, seconds
    RUN/checkpoint/              unet.safetensors, ema.safetensors, state.pt (optimizer, lr schedule, RNG, step)
    RUN/pipeline/                ShapesDiffusionPipeline.save_pretrained with the EMA UNet (what ``generate`` loads)
    RUN/samples/step_XXXXXX.png  sample grids of DEMO_PROMPTS (EMA weights, DDIM, guidance)
    RUN/loss.png                 loss curve

Rerunning the same command resumes from ``checkpoint/``; a larger ``--steps`` extends a finished run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .config import DEMO_PROMPTS, GeneratorTrainConfig
from .data import TrainSet, build_trainset
from .pipeline import ShapesDiffusionPipeline, default_scheduler, make_unet
from .sheet import contact_sheet
from .text import load_minilm

CKPT = "checkpoint"


def _lr_lambda(cfg: GeneratorTrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))  # cosine to 10%

    return f


def _ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype.is_floating_point:
                ema[name].mul_(decay).add_(p.detach(), alpha=1 - decay)
            else:
                ema[name].copy_(p)


def _save_checkpoint(run: Path, unet, ema, opt, step: int, gen: torch.Generator, losses: list) -> None:
    tmp = run / (CKPT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, tmp / "unet.safetensors")
    save_file({k: v.contiguous() for k, v in ema.items()}, tmp / "ema.safetensors")
    torch.save(
        {
            "step": step,
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "losses": losses,
        },
        tmp / "state.pt",
    )
    old = run / (CKPT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if (run / CKPT).exists():
        (run / CKPT).rename(old)
    tmp.rename(run / CKPT)
    shutil.rmtree(old, ignore_errors=True)


def build_pipeline(unet_state: dict, cfg: GeneratorTrainConfig, text) -> ShapesDiffusionPipeline:
    unet = make_unet(cfg.image_size, cfg.width)
    unet.load_state_dict(unet_state)
    pipe = ShapesDiffusionPipeline(
        unet=unet.eval(), scheduler=default_scheduler(cfg.num_train_timesteps), text_encoder=text[0], tokenizer=text[1]
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_grid(pipe, path: Path, cfg: GeneratorTrainConfig, n: int = 4) -> Path:
    g = torch.Generator().manual_seed(cfg.seed)
    images = pipe(
        list(DEMO_PROMPTS),
        num_images_per_prompt=n,
        num_inference_steps=cfg.sample_steps,
        guidance_scale=cfg.sample_guidance,
        generator=g,
        output_type="np",
    ).images
    rows = [(p, list(images[i * n : (i + 1) * n])) for i, p in enumerate(DEMO_PROMPTS)]
    return contact_sheet(rows, path, cell=64)


def plot_losses(losses: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not losses:
        return
    steps, values = zip(*losses, strict=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, values, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("DDPM loss (mean over interval)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(
    data: Path | None,
    run: Path,
    cfg: GeneratorTrainConfig,
    progress: bool = True,
    trainset: TrainSet | None = None,
    log_every: int = 50,
    stop_at: int | None = None,
) -> dict:
    """Train (or resume) the default generator; returns ``run.json``'s content.

    ``stop_at`` ends this call after that step (with a checkpoint), as an interruption would; rerun to resume.
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    text = load_minilm()
    t_data = time.time()
    ts = trainset or build_trainset(
        data, cfg.image_size, tuple(cfg.splits.split(",")), synthetic=cfg.synthetic, seed=cfg.seed, text=text
    )
    data_seconds = time.time() - t_data
    unet = make_unet(cfg.image_size, cfg.width)
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_factor = _lr_lambda(cfg)  # a longer --steps on resume stretches the schedule
    noise_sched = default_scheduler(cfg.num_train_timesteps)
    alphas = noise_sched.alphas_cumprod.float()
    gen = torch.Generator().manual_seed(cfg.seed)
    step, losses = 0, []
    previous = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    wall_before = float(previous.get("train_seconds", 0.0))
    if (run / CKPT / "state.pt").exists():
        unet.load_state_dict(load_file(run / CKPT / "unet.safetensors"))
        ema = load_file(run / CKPT / "ema.safetensors")
        state = torch.load(run / CKPT / "state.pt", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, losses = int(state["step"]), list(state["losses"])
        if progress:
            print(f"resuming {run} at step {step}", flush=True)
    n_params = sum(p.numel() for p in unet.parameters())
    meta = {
        "config": cfg.to_dict(),
        "data": {"path": str(data) if data else None, "images": len(ts), "prompts": len(ts.prompts)},
        "unet_parameters": n_params,
        "data_seconds": round(data_seconds, 1),
    }
    unet.train()
    t0, interval, interval_loss, interval_n = time.time(), time.time(), 0.0, 0
    end = min(cfg.steps, stop_at) if stop_at else cfg.steps
    while step < end:
        idx = torch.randint(len(ts), (cfg.batch_size,), generator=gen)
        x0 = ts.pixels[idx].float() / 127.5 - 1
        p = ts.prompt_index[idx]
        states, mask = ts.states[p].clone(), ts.mask[p].clone()
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.cond_drop
        states[drop], mask[drop] = ts.null_states, ts.null_mask
        t = torch.randint(cfg.num_train_timesteps, (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(xt, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(step)
        opt.step()
        step += 1
        _ema_update(ema, unet, min(cfg.ema_decay, (1 + step) / (10 + step)))
        interval_loss += loss.item()
        interval_n += 1
        if step % log_every == 0 or step == cfg.steps:
            mean = interval_loss / interval_n
            losses.append((step, mean))
            seconds = round(wall_before + time.time() - t0, 1)
            rec = {"step": step, "loss": round(mean, 5), "lr": opt.param_groups[0]["lr"], "seconds": seconds}
            with (run / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if progress:
                rate = interval_n / (time.time() - interval)
                print(f"step {step}/{cfg.steps} loss {mean:.4f} lr {rec['lr']:.2e} {rate:.2f} it/s", flush=True)
            interval, interval_loss, interval_n = time.time(), 0.0, 0
        done = step == cfg.steps
        if step % cfg.ckpt_every == 0 or done or step == end:
            _save_checkpoint(run, unet, ema, opt, step, gen, losses)
            pipe = build_pipeline(ema, cfg, text)
            pipe.save_pretrained(run / "pipeline")
            plot_losses(losses, run / "loss.png")
            if step % cfg.sample_every == 0 or done:
                sample_grid(pipe, run / "samples" / f"step_{step:06d}.png", cfg)
            meta.update(
                steps_completed=step,
                train_seconds=round(wall_before + time.time() - t0, 1),
                final_loss=losses[-1][1] if losses else None,
            )
            (run / "run.json").write_text(json.dumps(meta, indent=2))
            wall_before, t0 = wall_before + time.time() - t0, time.time()
    if not meta.get("steps_completed"):
        meta.update(steps_completed=step, train_seconds=wall_before, final_loss=losses[-1][1] if losses else None)
    return meta
