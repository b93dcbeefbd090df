"""``ShapesDiffusionPipeline``: a pixel-space text-to-image diffusers pipeline conditioned on frozen MiniLM states.

Components (all saved by ``save_pretrained`` and reloaded by ``ShapesDiffusionPipeline.from_pretrained``):
``unet`` (a small ``UNet2DConditionModel`` whose ``encoder_hid_proj`` maps 384-d MiniLM states to its
cross-attention width), ``scheduler`` (DDIM by default; any diffusers scheduler with the same config works),
``text_encoder`` (transformers ``BertModel``, frozen) and ``tokenizer``.

Classifier-free guidance: the unconditional branch is the empty prompt's token states, the same input the
trainer substitutes for a dropped condition; ``guidance_scale`` 1 (or below) samples the conditional model alone.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel

from .text import encode_prompts


def default_unet_config(image_size: int = 32, width: int = 32, text_dim: int = 384) -> dict:
    """The default generator UNet (about 4.3M parameters at width 32): cross-attention at 1/2 and 1/4 resolution."""
    return {
        "sample_size": image_size,
        "in_channels": 3,
        "out_channels": 3,
        "layers_per_block": 1,
        "block_out_channels": (width, 2 * width, 4 * width),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 4 * width,
        "encoder_hid_dim": text_dim,
        "encoder_hid_dim_type": "text_proj",
        "attention_head_dim": 4,  # diffusers' legacy name: the number of heads
        "norm_num_groups": min(32, width),
    }


def make_unet(image_size: int = 32, width: int = 32, text_dim: int = 384) -> UNet2DConditionModel:
    return UNet2DConditionModel(**default_unet_config(image_size, width, text_dim))


def default_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
    )


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(n, 3, h, w) in [-1, 1] -> (n, h, w, 3) uint8."""
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class ShapesDiffusionPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet, scheduler, text_encoder, tokenizer):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        states, mask = encode_prompts(self.text_encoder, self.tokenizer, prompts)
        return states.to(self.device, self.unet.dtype), mask.to(self.device)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.0,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        prompt_embeds: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """Sample images. ``output_type`` is ``pil``, ``np`` (uint8 (n, h, w, 3)) or ``pt`` (float in [-1, 1]).

        ``prompt_embeds`` (token states, mask) skips the text tower, e.g. for cached prompt states.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if prompt_embeds is None:
            states, mask = self.encode(prompts)
        else:
            states, mask = (t.to(self.device) for t in prompt_embeds)
        states = states.repeat_interleave(num_images_per_prompt, 0)
        mask = mask.repeat_interleave(num_images_per_prompt, 0)
        n = states.shape[0]
        cfg = guidance_scale > 1.0
        if cfg:
            null_states, null_mask = self.encode([""])
            states = torch.cat([null_states.expand(n, -1, -1), states])
            mask = torch.cat([null_mask.expand(n, -1), mask])
        size = self.unet.config.sample_size
        shape = (n, self.unet.config.in_channels, size, size)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device, self.unet.dtype)
        x = latents * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        extra = {"eta": eta, "generator": generator} if isinstance(self.scheduler, DDIMScheduler) else {}
        for t in self.progress_bar(self.scheduler.timesteps):
            inp = torch.cat([x, x]) if cfg else x
            inp = self.scheduler.scale_model_input(inp, t)
            eps = self.unet(inp, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            if cfg:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            x = self.scheduler.step(eps, t, x, **extra).prev_sample
        if output_type == "pt":
            images = x.clamp(-1, 1)
        else:
            images = to_uint8(x)
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
