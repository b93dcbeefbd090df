"""Generator quality measures: oracle fidelity against a random-prompt baseline, FID / KID through torchmetrics with
our own image encoder as the feature extractor, and per-prompt sample diversity.

FID and KID need a feature network. torchmetrics' default is the FID Inception-v3, whose weights file
(``pt_inception-2015-12-05``, fetched by ``torch-fidelity`` from GitHub on first use) cannot be downloaded here;
where a user has that file, ``FrechetInceptionDistance(feature=2048)`` works unchanged once it sits in torch's
hub cache. We pass ``EncoderFeatures`` instead: the image tower of a trained ``rewarddance train encoder`` run
(pooled embedding, 128-d for the shapes encoder), which torchmetrics accepts as a custom ``nn.Module``. Numbers
from different feature networks are not comparable with each other or with published Inception FIDs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class EncoderFeatures(nn.Module):
    """uint8 (n, 3, h, w) images -> (n, d) pooled embeddings of an ``Encoder``'s image tower (resized, normalised)."""

    def __init__(self, encoder):
        super().__init__()
        self.visual = encoder.model.visual.eval()
        spec = encoder.image_spec
        self.size = int(spec.size)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self.num_features = int(encoder.embed_dim)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(0, 1)
        out = self.visual((x - self.mean) / self.std)
        if isinstance(out, tuple):
            out = out[0]
        return out.float()


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def fid_kid(
    real: np.ndarray, fake: np.ndarray, feature: nn.Module, subset_size: int = 50, subsets: int = 50, batch: int = 128
) -> dict:
    """FID and KID (mean, std) of uint8 (n, h, w, 3) image sets with torchmetrics and a custom feature module."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    fid = FrechetInceptionDistance(feature=feature, normalize=False)
    kid = KernelInceptionDistance(
        feature=feature, subset_size=min(subset_size, len(real), len(fake)), subsets=subsets, normalize=False
    )
    for metric in (fid, kid):
        for images, is_real in ((real, True), (fake, False)):
            for i in range(0, len(images), batch):
                metric.update(_nchw(images[i : i + batch]), real=is_real)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


@torch.no_grad()
def diversity(images: np.ndarray, n_per_prompt: int, feature: nn.Module) -> dict:
    """Mean pairwise (1 - cosine) distance of feature embeddings and mean pairwise pixel RMS distance within each
    prompt's samples (prompt-major layout), averaged over prompts."""
    emb = F.normalize(feature(_nchw(images)), dim=-1).numpy()
    px = images.reshape(len(images), -1).astype(np.float32) / 255.0
    cos, rms = [], []
    iu = np.triu_indices(n_per_prompt, 1)
    for i in range(0, len(images), n_per_prompt):
        e, p = emb[i : i + n_per_prompt], px[i : i + n_per_prompt]
        cos.append(float(np.mean((1 - e @ e.T)[iu])))
        d = np.sqrt(((p[:, None] - p[None]) ** 2).mean(-1))
        rms.append(float(np.mean(d[iu])))
    return {"embedding_distance": float(np.mean(cos)), "pixel_rms_distance": float(np.mean(rms))}


def oracle_fidelity_vs_baseline(oracle, images: np.ndarray, specs: list, n_per_prompt: int, seed: int = 0) -> dict:
    """Oracle fidelity of each prompt's own samples, against the same prompts scored on samples generated for a
    random other prompt (a derangement of prompts): the gap is what the prompt contributes."""
    readings = oracle.read(list(images))
    from ..oracle.oracle import fidelity

    n_prompts = len(specs)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_prompts)
    while n_prompts > 1 and np.any(perm == np.arange(n_prompts)):
        perm = rng.permutation(n_prompts)
    own, base = [], []
    for p in range(n_prompts):
        for k in range(n_per_prompt):
            own.append(fidelity(specs[p], readings[p * n_per_prompt + k]))
            base.append(fidelity(specs[p], readings[perm[p] * n_per_prompt + k]))
    own, base = np.array(own), np.array(base)
    per_prompt_own = own.reshape(n_prompts, n_per_prompt).mean(1)
    per_prompt_base = base.reshape(n_prompts, n_per_prompt).mean(1)
    return {
        "own_prompt_fidelity": float(own.mean()),
        "random_prompt_baseline_fidelity": float(base.mean()),
        "gap": float(own.mean() - base.mean()),
        "prompts_own_above_baseline": float(np.mean(per_prompt_own > per_prompt_base)),
        "own_sem": float(per_prompt_own.std(ddof=1) / np.sqrt(n_prompts)) if n_prompts > 1 else 0.0,
        "baseline_sem": float(per_prompt_base.std(ddof=1) / np.sqrt(n_prompts)) if n_prompts > 1 else 0.0,
        "readings": readings,
    }
