"""The transport-neutral form of a scoring request, checked for types before anything is sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

Weights = Mapping[str, float]


@dataclass(frozen=True)
class ScoringRequest:
    """What score, compare and rank send; ``images`` are encoded bytes (compare: ``[image_a, image_b]``)."""

    prompt: str
    images: list[bytes]
    style: str | None = None
    weights: dict[str, float] | None = None
    model: str | None = None
    version: int | None = None


def scoring_request(
    prompt: str,
    images: list[bytes],
    style: str | None,
    weights: Weights | None,
    model: str | None,
    version: int | None,
) -> ScoringRequest:
    """A :class:`ScoringRequest` after type checks that name the offending argument.

    Value rules (prompt length, known weight names, non-negative weights...) are the server's to enforce, so
    the SDK never disagrees with it; types are checked here because a wrong type would be silently mangled by
    JSON or protobuf encoding.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected str, got {type(prompt).__name__}")
    for name, value in (("style", style), ("model", model)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: expected str or None, got {type(value).__name__}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise TypeError(f"version: expected int or None, got {type(version).__name__}")
    if weights is not None:
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights: expected a mapping of component name to float, got {type(weights).__name__}")
        for key, value in weights.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f"weights: expected str -> float, got {key!r}: {type(value).__name__}")
        weights = {key: float(value) for key, value in weights.items()}
    return ScoringRequest(prompt, images, style, weights, model, version)
