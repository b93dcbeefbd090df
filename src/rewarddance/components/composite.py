"""The composite reward R = sum(w_i * component_i) and the validation of user-supplied weights.

Weights come from requests and deployment configs, so they are checked here once, with errors that name the
offending field (``weights.style``) for the HTTP/gRPC layers to report as 400/INVALID_ARGUMENT.

Rules:
- a partial mapping overrides only the components it names; the others keep their *default* weight
  (``{"novelty": 0.5}`` means "defaults, but novelty 0.5"), then everything is normalized to sum 1;
- values must be finite, non-negative real numbers (bools are rejected), and not all zero;
- unknown component names are rejected rather than ignored, so a typo never silently changes R;
- a value that is exactly a float32 (a gRPC ``float`` field, a manifest written from a float32 tensor) is read as
  the shortest decimal that float32 rounds to it, so 0.4 echoes as 0.4, not 0.4000000059604645.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .base import COMPONENTS

DEFAULT_WEIGHTS: dict[str, float] = {"fidelity": 0.40, "style": 0.25, "composition": 0.25, "novelty": 0.10}
SUM_TOLERANCE = 1e-6
FLOAT32_MAX = float(np.finfo(np.float32).max)


class WeightsError(ValueError):
    """Invalid reward weights; ``field`` is the request field at fault (``weights`` or ``weights.<name>``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights ready to use: every component present, in COMPONENTS order, summing to 1.

    ``original`` is the full weight vector before normalization (the caller's values with defaults filled
    in); ``normalized`` says whether it had to be rescaled (its sum was not 1 within 1e-6).
    """

    weights: dict[str, float]
    normalized: bool = False
    original: dict[str, float] = field(default_factory=dict)

    @property
    def vector(self) -> np.ndarray:
        return np.array([self.weights[c] for c in COMPONENTS], dtype=np.float64)


def as_decimal(value: float) -> float:
    """``value``, or the shortest decimal with the same float32 when ``value`` is exactly a float32."""
    if not abs(value) <= FLOAT32_MAX:
        return value
    single = np.float32(value)
    return float(str(single)) if float(single) == value else value  # numpy prints a float32's shortest decimal


def _check_value(name: str, value: object) -> float:
    where = f"weights.{name}"
    # bool is an int subclass; True as a weight is almost certainly a client bug, so refuse it.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise WeightsError(where, f"must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise WeightsError(where, f"must be finite, got {number}")
    if number < 0:
        raise WeightsError(where, f"must be >= 0, got {number}")
    return as_decimal(number)


def resolve_weights(
    weights: Mapping[str, float] | None, default: Mapping[str, float] = DEFAULT_WEIGHTS
) -> ResolvedWeights:
    """Validate ``weights`` (partial allowed: missing components keep their default) and normalize to sum 1."""
    missing_default = [c for c in COMPONENTS if c not in default]
    if missing_default:
        raise ValueError(f"default weights lack {', '.join(missing_default)}")
    if weights is None:
        weights = {}
    if not isinstance(weights, Mapping):
        raise WeightsError("weights", f"must be an object mapping component names to numbers, got {weights!r}")
    unknown = sorted(str(k) for k in weights if k not in COMPONENTS)
    if unknown:
        raise WeightsError(
            f"weights.{unknown[0]}",
            f"unknown component {unknown[0]!r}; expected some of {', '.join(COMPONENTS)}",
        )
    merged = {c: _check_value(c, weights[c]) if c in weights else as_decimal(float(default[c])) for c in COMPONENTS}
    total = sum(merged.values())
    if total <= 0:
        raise WeightsError("weights", "at least one weight must be > 0 (all are zero)")
    if not math.isfinite(total):  # each is finite, but a sum of huge values can still overflow
        raise WeightsError("weights", "the weights' sum overflows")
    normalized = abs(total - 1.0) > SUM_TOLERANCE
    resolved = {c: v / total for c, v in merged.items()} if normalized else merged
    return ResolvedWeights(weights=resolved, normalized=normalized, original=merged)


def composite(scores: np.ndarray, weights: ResolvedWeights) -> np.ndarray:
    """R per image from an (n, 4) array of component scores in COMPONENTS order."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(COMPONENTS):
        raise ValueError(f"scores must have shape (n, {len(COMPONENTS)}), got {scores.shape}")
    reward = scores @ weights.vector
    # Weights sum to 1 and components lie in [0, 1]; the clip only removes float round-off past the ends.
    return np.clip(reward, 0.0, 1.0)
