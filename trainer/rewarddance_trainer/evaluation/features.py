"""Our encoder as the feature network of the image metrics (no downloadable backbone is available here).

- **FID / KID**: torchmetrics with ``EncoderFeatures`` (the pooled image embedding), as ``generator/quality.py``;
  numpy versions of the same statistics give the bootstrap intervals (checked against torchmetrics in the tests).
- **Encoder score**: the CLIPScore formula, ``2.5 * max(cos(image, prompt), 0)`` (Hessel et al. 2021), with our
  encoder's image and text embeddings instead of CLIP's; named for what it is, not "CLIPScore".
- **Patch diversity (LPIPS-style)**: LPIPS compares unit-normalised deep features position by position; its
  backbones (AlexNet / VGG + learned linear heads) need downloaded weights, so this uses our encoder's patch tokens
  (last layer), unit-normalised per token, squared distance averaged over positions, no learned weights. The mean
  over pairs of a prompt's samples measures diversity (higher = more varied).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

CLIPSCORE_WEIGHT = 2.5


class EncoderMetrics:
    def __init__(self, encoder) -> None:
        from ..generator.quality import EncoderFeatures

        self.encoder = encoder
        self.fid_features = EncoderFeatures(encoder)

    @torch.no_grad()
    def images(self, pixels: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(pooled embeddings (n, d) unit-norm, patch tokens (n, t, w) unit-norm per token) at the encoder's size."""
        from rewarddance.preprocess import load_pixels

        size = self.encoder.image_spec.size
        if pixels.shape[1] != size:
            pixels = load_pixels(list(pixels), size)
        pooled, tokens = [], []
        for i in range(0, len(pixels), batch):
            p, t = self.encoder.encode_images(pixels[i : i + batch])
            pooled.append(p)
            tokens.append(t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-8))
        return np.concatenate(pooled), np.concatenate(tokens)

    def texts(self, prompts: list[str]) -> np.ndarray:
        return self.encoder.encode_texts(prompts).pooled


def encoder_score(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """CLIPScore's formula on unit embeddings, one per row: 2.5 * max(cos, 0)."""
    return CLIPSCORE_WEIGHT * np.maximum((image_embeddings * text_embeddings).sum(-1), 0.0)


def patch_diversity(tokens: np.ndarray, n_per_prompt: int) -> np.ndarray:
    """Per prompt (prompt-major layout): mean over pairs of its samples of the position-averaged squared distance
    between unit-normalised patch tokens."""
    if n_per_prompt < 2:
        raise ValueError("patch diversity needs at least 2 samples per prompt (--n)")
    iu = np.triu_indices(n_per_prompt, 1)
    out = []
    for i in range(0, len(tokens), n_per_prompt):
        t = tokens[i : i + n_per_prompt]
        d = ((t[:, None] - t[None]) ** 2).sum(-1).mean(-1)
        out.append(float(d[iu].mean()))
    return np.array(out)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID's statistic on feature rows: |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^1/2)."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(s_r @ s_f)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(s_r + s_f - 2 * covmean))


def kernel_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """KID's statistic: unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3, over all rows at once
    (torchmetrics averages it over random subsets, which estimates the same quantity)."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    d = real.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    m, n = len(real), len(fake)
    k_rr, k_ff, k_rf = k(real, real), k(fake, fake), k(real, fake)
    return float(
        (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1)) + (k_ff.sum() - np.trace(k_ff)) / (n * (n - 1)) - 2 * k_rf.mean()
    )


@torch.no_grad()
def fid_features(metrics: EncoderMetrics, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """The exact features torchmetrics sees (``EncoderFeatures`` on uint8 NCHW)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    return torch.cat([metrics.fid_features(x[i : i + batch]) for i in range(0, len(x), batch)]).double().numpy()
