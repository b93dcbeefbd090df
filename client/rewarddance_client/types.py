"""Typed responses of the gateway, field for field as in docs/api.md (HTTP JSON) and proto/rewarddance_v1.proto.

Unknown fields the server adds later are kept (``extra="allow"``): the contract adds fields, never renames them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "CompareResponse",
    "Components",
    "HealthStatus",
    "ModelInfo",
    "ModelList",
    "ModelRef",
    "RankResponse",
    "Result",
    "ScoreResponse",
    "VersionInfo",
    "Weights",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Response(_Model):
    """A top-level response; remembers the server's ``x-request-id`` when it sent one."""

    _request_id: str | None = PrivateAttr(default=None)

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id`` for this response (quote it when reporting a problem)."""
        return self._request_id


class ModelRef(_Model):
    """Which model and version produced a response."""

    name: str
    version: int


class Components(_Model):
    """The four reward components of one image."""

    fidelity: float
    style: float
    composition: float
    novelty: float


class Weights(_Model):
    """The component weights the composite reward was computed with (request overrides merged on defaults)."""

    fidelity: float
    style: float
    composition: float
    novelty: float


class Result(_Model):
    """The composite reward R of one image and its components."""

    reward: float
    components: Components


class ScoreResponse(_Response):
    """``POST /v1/score``: one result per image, in input order."""

    model: ModelRef
    weights: Weights
    results: list[Result]


class CompareResponse(_Response):
    """``POST /v1/compare``: the preferred image and P(preferred beats the other) >= 0.5."""

    model: ModelRef
    weights: Weights
    preferred: Literal["a", "b"]
    probability: float = Field(ge=0.0, le=1.0)
    a: Result
    b: Result


class RankResponse(_Response):
    """``POST /v1/rank``: input indices best first, and the results in input order."""

    model: ModelRef
    weights: Weights
    indices: list[int]
    results: list[Result]


class VersionInfo(_Model):
    """One loaded version of a model: readiness, size, validation metrics, default weights."""

    version: int
    ready: bool
    parameters: int
    metrics: dict[str, float]
    default_weights: dict[str, float]
    components: list[str]


class ModelInfo(_Model):
    """One model and its loaded versions."""

    name: str
    scale: str
    default_version: int
    versions: list[VersionInfo]


class ModelList(_Response):
    """``GET /v1/models``: every loaded model and the one used when a request names none."""

    default_model: str
    models: list[ModelInfo]


class HealthStatus(_Response):
    """``GET /healthz`` / ``GET /readyz``: ``"ok"`` while alive, ``"ready"`` once models are warmed."""

    status: str
