"""LoRA fine-tuning (peft) of a user's local diffusers text-to-image pipeline on a reward dataset's images.

The base pipeline (e.g. a Stable Diffusion checkpoint directory) must have ``unet``, ``text_encoder``,
``tokenizer`` and ``scheduler``; with a ``vae`` the loss is taken in its latent space (latents are encoded once),
without one in pixel space. Only the LoRA adapters on the UNet attention projections train; the run stores them
in the diffusers ``load_lora_weights`` layout (``RUN/lora``) plus ``RUN/lora.json`` naming the base, and a
resumable ``RUN/checkpoint`` (adapters + optimizer + RNG).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import GeneratorTrainConfig
from .load import LORA_DIR, LORA_META, load_generator

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


def _encode_text(pipe, prompts: list[str]) -> torch.Tensor:
    tok = pipe.tokenizer
    states = []
    for i in range(0, len(prompts), 32):
        ids = tok(
            prompts[i : i + 32],
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        states.append(pipe.text_encoder(ids.to(pipe.device))[0].float())
    return torch.cat(states)


def _resolution(pipe) -> int:
    factor = getattr(pipe, "vae_scale_factor", 1) if getattr(pipe, "vae", None) is not None else 1
    return int(pipe.unet.config.sample_size) * int(factor)


@torch.no_grad()
def _targets(pipe, pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return x
    out = []
    for i in range(0, len(x), 16):
        out.append(vae.encode(x[i : i + 16].to(pipe.device, vae.dtype)).latent_dist.mode().float())
    return torch.cat(out) * vae.config.scaling_factor


def _lora_state(unet) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(unet).items()}


def save_lora(pipe, unet, directory: Path) -> None:
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = convert_state_dict_to_diffusers(_lora_state(unet))
    shutil.rmtree(directory, ignore_errors=True)
    type(pipe).save_lora_weights(save_directory=str(directory), unet_lora_layers=layers, safe_serialization=True)


def train_lora(
    base: Path, data: Path | None, run: Path, cfg: GeneratorTrainConfig, progress: bool = True, log_every: int = 50
) -> dict:
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    from .data import dataset_examples, synthetic_examples

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    pipe = load_generator(base)
    if not hasattr(type(pipe), "save_lora_weights"):
        raise ValueError(f"{type(pipe).__name__} does not support LoRA weights (no save_lora_weights)")
    for module in (pipe.unet, getattr(pipe, "vae", None), pipe.text_encoder):
        if module is not None:
            module.requires_grad_(False)
    size = _resolution(pipe)
    pixels, texts = [], []
    if data is not None:
        pixels, texts = dataset_examples(Path(data), tuple(cfg.splits.split(",")), size)
    if cfg.synthetic:
        p, t = synthetic_examples(cfg.synthetic, size, cfg.seed)
        pixels, texts = pixels + p, texts + t
    if not pixels:
        raise ValueError("no training images")
    unique = sorted(set(texts))
    with torch.no_grad():
        states = _encode_text(pipe, [*unique, ""])
    null_states, states = states[-1], states[:-1]
    prompt_index = torch.tensor([unique.index(t) for t in texts])
    targets = _targets(pipe, np.stack(pixels))

    unet = pipe.unet
    unet.add_adapter(
        LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES
        )
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_sched.alphas_cumprod.float()
    n_timesteps = int(noise_sched.config.num_train_timesteps)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, losses, wall = 0, [], 0.0
    ckpt = run / "checkpoint"
    if (ckpt / "state.pt").exists():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        set_peft_model_state_dict(unet, state["lora"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, losses, wall = int(state["step"]), list(state["losses"]), float(state["wall"])
        if progress:
            print(f"resuming {run} at step {step}", flush=True)
    unet.train()
    t0, acc, acc_n = time.time(), 0.0, 0
    while step < cfg.steps:
        idx = torch.randint(len(targets), (cfg.batch_size,), generator=gen)
        x0 = targets[idx]
        cond = states[prompt_index[idx]].clone()
        cond[torch.rand(cfg.batch_size, generator=gen) < cfg.cond_drop] = null_states
        t = torch.randint(n_timesteps, (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = noise if noise_sched.config.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        pred = unet(xt.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype)).sample.float()
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        acc, acc_n = acc + loss.item(), acc_n + 1
        if step % log_every == 0 or step == cfg.steps:
            losses.append((step, acc / acc_n))
            if progress:
                print(f"step {step}/{cfg.steps} loss {acc / acc_n:.4f}", flush=True)
            acc, acc_n = 0.0, 0
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            wall += time.time() - t0
            t0 = time.time()
            tmp = run / "checkpoint.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            torch.save(
                {
                    "lora": _lora_state(unet),
                    "optimizer": opt.state_dict(),
                    "generator": gen.get_state(),
                    "step": step,
                    "losses": losses,
                    "wall": wall,
                },
                tmp / "state.pt",
            )
            shutil.rmtree(ckpt, ignore_errors=True)
            tmp.rename(ckpt)
            save_lora(pipe, unet, run / LORA_DIR)
    meta = {
        "base": str(Path(base).resolve()),
        "config": cfg.to_dict(),
        "target_modules": TARGET_MODULES,
        "data": {"path": str(data) if data else None, "images": len(targets), "prompts": len(unique)},
        "resolution": size,
        "steps_completed": step,
        "train_seconds": round(wall + time.time() - t0, 1),
        "final_loss": losses[-1][1] if losses else None,
        "losses": losses,
    }
    (run / LORA_META).write_text(json.dumps(meta, indent=2))
    return meta
