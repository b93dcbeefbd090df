"""S, style alignment: how strongly the image shows the target style.

The target style comes from the request or is recognised in the prompt (longest matching phrase of the style
vocabulary). Two estimates of P(style | image), averaged by default (``mode``):
- zero-shot: softmax over the similarity of the image embedding to each style's text embedding (the mean of
  the encoder's embeddings of that style's phrases);
- probe: multinomial logistic regression on image embeddings, trained on images whose prompt names a style and
  whose human style rating is high.
With a target style the score is P(target | image). Without one it is style coherence: 1 minus the normalised
entropy of P(style | image) — one clear style scores near 1, a blend of several near 0.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .base import FeatureBatch, load_arrays, save_arrays

MODES = ("mean", "zero-shot", "probe")


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


class StyleScorer:
    name = "style"

    def __init__(
        self,
        vocabulary: dict[str, list[str]],
        style_text: np.ndarray,
        temperature: float = 50.0,
        probe_w: np.ndarray | None = None,
        probe_b: np.ndarray | None = None,
        mode: str = "mean",
    ):
        if mode not in MODES:
            raise ValueError(f"style mode must be one of {MODES}, got {mode!r}")
        self.vocabulary = {k: list(v) for k, v in vocabulary.items()}
        self.styles = list(self.vocabulary)
        self.style_text = np.asarray(style_text, dtype=np.float32)  # (styles, d), unit rows
        self.temperature = float(temperature)
        self.probe_w, self.probe_b = probe_w, probe_b
        self.mode = mode if probe_w is not None or mode == "zero-shot" else "zero-shot"
        phrases = sorted(
            ((p.lower(), s) for s, ps in self.vocabulary.items() for p in [s, *ps]), key=lambda x: -len(x[0])
        )
        self._phrases = [(re.compile(rf"\b{re.escape(p)}\b"), s) for p, s in phrases]

    def recognise(self, prompt: str) -> str | None:
        """The style a prompt names (its longest matching phrase), or None."""
        text = prompt.lower()
        return next((style for pattern, style in self._phrases if pattern.search(text)), None)

    def zero_shot(self, embeddings: np.ndarray) -> np.ndarray:
        return _softmax(self.temperature * embeddings @ self.style_text.T)

    def probe(self, embeddings: np.ndarray) -> np.ndarray:
        if self.probe_w is None:
            raise ValueError("the style probe is not fitted")
        return _softmax(embeddings @ self.probe_w + self.probe_b)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        if self.mode == "zero-shot":
            return self.zero_shot(embeddings)
        if self.mode == "probe":
            return self.probe(embeddings)
        return 0.5 * (self.zero_shot(embeddings) + self.probe(embeddings))

    def fit_probe(self, embeddings: np.ndarray, labels: list[str], l2: float = 1e-3) -> StyleScorer:
        """Multinomial logistic regression (L-BFGS) on image embeddings."""
        from scipy.optimize import minimize

        y = np.array([self.styles.index(s) for s in labels])
        x = np.asarray(embeddings, dtype=np.float64)
        n, d, k = len(x), x.shape[1], len(self.styles)
        onehot = np.eye(k)[y]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[: d * k].reshape(d, k), theta[d * k :]
            p = _softmax(x @ w + b)
            value = -np.log(p[np.arange(n), y] + 1e-12).mean() + l2 * (w**2).sum()
            g = (p - onehot) / n
            return value, np.concatenate([(x.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)])

        theta = minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
        self.probe_w = theta[: d * k].reshape(d, k).astype(np.float32)
        self.probe_b = theta[d * k :].astype(np.float32)
        self.mode = "mean"
        return self

    def targets(self, batch: FeatureBatch) -> list[str | None]:
        requested = batch.target_styles or [None] * len(batch)
        prompts = batch.prompts or [""] * len(batch)
        for style in requested:
            if style is not None and style not in self.styles:
                raise ValueError(f"unknown style {style!r}; known styles: {', '.join(self.styles)}")
        return [r if r is not None else self.recognise(p) for r, p in zip(requested, prompts, strict=True)]

    def score(self, batch: FeatureBatch) -> np.ndarray:
        batch.need("image_embeddings")
        probs = self.probabilities(np.asarray(batch.image_embeddings, dtype=np.float32))
        entropy = -(probs * np.log(probs + 1e-12)).sum(axis=1) / np.log(len(self.styles))
        out = 1.0 - entropy
        for i, target in enumerate(self.targets(batch)):
            if target is not None:
                out[i] = probs[i, self.styles.index(target)]
        return np.clip(out, 0, 1).astype(np.float32)

    def save(self, directory: Path) -> None:
        arrays = {"style_text": self.style_text}
        if self.probe_w is not None:
            arrays |= {"probe_w": self.probe_w, "probe_b": self.probe_b}
        # The style order indexes style_text rows and probe columns; JSON objects do not keep it.
        meta = {
            "styles": self.styles,
            "vocabulary": self.vocabulary,
            "temperature": self.temperature,
            "mode": self.mode,
        }
        save_arrays(directory, self.name, arrays, meta)

    @classmethod
    def load(cls, directory: Path) -> StyleScorer:
        arrays, meta = load_arrays(directory, cls.name)
        vocabulary = {style: meta["vocabulary"][style] for style in meta["styles"]}
        return cls(
            vocabulary,
            arrays["style_text"],
            meta["temperature"],
            arrays.get("probe_w"),
            arrays.get("probe_b"),
            meta["mode"],
        )
