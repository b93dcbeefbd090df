"""Load any generator ``rewarddance generate`` accepts and sample uint8 images from it.

- a run of ``rewarddance train generator`` (``RUN/pipeline`` holds a ``ShapesDiffusionPipeline``);
- a LoRA run (``RUN/lora.json`` names the base pipeline; ``RUN/lora`` holds the adapters);
- any local diffusers pipeline directory (``model_index.json``), e.g. a Stable Diffusion checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LORA_META = "lora.json"
LORA_DIR = "lora"


def load_generator(path: Path | str, device: str = "cpu"):
    """A diffusers pipeline, progress bar off, on ``device``."""
    from diffusers import DiffusionPipeline

    from .pipeline import ShapesDiffusionPipeline

    path = Path(path)
    if (path / LORA_META).exists():
        meta = json.loads((path / LORA_META).read_text())
        pipe = load_generator(meta["base"], device)
        pipe.load_lora_weights(str(path / LORA_DIR), adapter_name="rewarddance")
    elif (path / "pipeline" / "model_index.json").exists():
        pipe = ShapesDiffusionPipeline.from_pretrained(path / "pipeline")
    elif (path / "model_index.json").exists():
        index = json.loads((path / "model_index.json").read_text())
        if index.get("_class_name") == ShapesDiffusionPipeline.__name__:
            pipe = ShapesDiffusionPipeline.from_pretrained(path)
        else:
            pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    else:
        raise FileNotFoundError(f"{path} is neither a generator run nor a diffusers pipeline (no model_index.json)")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _as_uint8(images) -> np.ndarray:
    if isinstance(images, list):  # PIL
        return np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    arr = np.asarray(images)
    if arr.dtype != np.uint8:  # diffusers' "np" output is float in [0, 1]
        arr = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    return arr


@torch.no_grad()
def generate_images(
    pipe,
    prompts: list[str],
    n: int = 1,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = 0,
    batch_prompts: int = 16,
    eta: float = 0.0,
) -> np.ndarray:
    """uint8 (len(prompts) * n, h, w, 3), prompt-major; one seeded torch generator per prompt batch.

    A given (prompt list, n, steps, guidance, seed, batch_prompts) always gives the same pixels.
    """
    out = []
    for b, i in enumerate(range(0, len(prompts), batch_prompts)):
        g = torch.Generator().manual_seed(seed * 100_003 + b)
        kwargs = {"eta": eta} if eta else {}
        result = pipe(
            prompts[i : i + batch_prompts],
            num_images_per_prompt=n,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=g,
            output_type="np",
            **kwargs,
        )
        out.append(_as_uint8(result.images))
    return np.concatenate(out)
