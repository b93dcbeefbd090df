"""The composite reward R and the validation of per-request weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewarddance.components.composite import (
    DEFAULT_WEIGHTS,
    ResolvedWeights,
    WeightsError,
    composite,
    resolve_weights,
)


def test_defaults_are_the_design_weights() -> None:
    resolved = resolve_weights(None)
    assert resolved.weights == pytest.approx({"fidelity": 0.40, "style": 0.25, "composition": 0.25, "novelty": 0.10})
    assert resolved.normalized is False
    assert list(resolved.weights) == ["fidelity", "style", "composition", "novelty"]
    assert resolve_weights({}).weights == resolved.weights


def test_unnormalized_weights_are_rescaled() -> None:
    resolved = resolve_weights({"fidelity": 2, "style": 1, "composition": 1, "novelty": 0})
    assert resolved.weights == pytest.approx({"fidelity": 0.5, "style": 0.25, "composition": 0.25, "novelty": 0.0})
    assert resolved.normalized is True
    assert resolved.original == {"fidelity": 2.0, "style": 1.0, "composition": 1.0, "novelty": 0.0}


def test_partial_weights_keep_the_defaults_of_missing_components() -> None:
    resolved = resolve_weights({"novelty": 0.35})  # 0.40 + 0.25 + 0.25 + 0.35 = 1.25
    assert resolved.original == pytest.approx({**DEFAULT_WEIGHTS, "novelty": 0.35})
    assert resolved.weights["novelty"] == pytest.approx(0.35 / 1.25)
    assert resolved.weights["fidelity"] == pytest.approx(0.40 / 1.25)
    assert sum(resolved.weights.values()) == pytest.approx(1.0)


def test_float32_weights_echo_as_the_decimals_asked_for() -> None:
    """A manifest written from a float32 tensor and gRPC's float fields hold 0.4 as 0.4000000059604645."""
    single = {c: float(np.float32(w)) for c, w in DEFAULT_WEIGHTS.items()}
    assert single["fidelity"] == 0.4000000059604645
    assert resolve_weights(None, default=single).weights == DEFAULT_WEIGHTS  # exactly, not approx
    assert resolve_weights({"style": float(np.float32(0.25)), "novelty": float(np.float32(0.1))}, single).weights == (
        DEFAULT_WEIGHTS
    )
    assert resolve_weights({"fidelity": 1 / 3}).original["fidelity"] == 1 / 3  # a float64 stays as it is
    assert resolve_weights({"fidelity": 1e300}).original["fidelity"] == 1e300  # beyond float32: no overflow


def test_sum_within_tolerance_is_not_flagged() -> None:
    resolved = resolve_weights({"fidelity": 0.4 + 1e-8})
    assert resolved.normalized is False


@pytest.mark.parametrize(
    ("weights", "field"),
    [
        ({"fidelty": 0.5}, "weights.fidelty"),
        ({"style": "high"}, "weights.style"),
        ({"style": None}, "weights.style"),
        ({"style": True}, "weights.style"),
        ({"composition": math.nan}, "weights.composition"),
        ({"novelty": math.inf}, "weights.novelty"),
        ({"fidelity": -0.1}, "weights.fidelity"),
        ({"fidelity": 0, "style": 0, "composition": 0, "novelty": 0}, "weights"),
        ([0.4, 0.25, 0.25, 0.1], "weights"),
    ],
)
def test_invalid_weights_name_the_field(weights: object, field: str) -> None:
    with pytest.raises(WeightsError) as info:
        resolve_weights(weights)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert isinstance(info.value, ValueError)


def test_composite_matches_hand_computation() -> None:
    scores = np.array([[0.9, 0.5, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    got = composite(scores, resolve_weights(None))
    assert got[0] == pytest.approx(0.4 * 0.9 + 0.25 * 0.5 + 0.25 * 0.3 + 0.1 * 0.2)  # 0.58
    assert got[0] == pytest.approx(0.58)
    assert got[1] == pytest.approx(1.0)
    assert got[2] == 0.0
    custom = composite(scores[:1], resolve_weights({"fidelity": 2, "style": 1, "composition": 1, "novelty": 0}))
    assert custom[0] == pytest.approx(0.5 * 0.9 + 0.25 * 0.5 + 0.25 * 0.3)


def test_composite_stays_in_unit_interval() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, size=(2000, 4))
    scores[:10] = 1.0
    for raw in ({"fidelity": 3.3, "style": 1e-9}, {"novelty": 7}, None):
        reward = composite(scores, resolve_weights(raw))
        assert reward.shape == (2000,)
        assert np.all((reward >= 0) & (reward <= 1))


def test_composite_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        composite(np.zeros((3, 3)), resolve_weights(None))
    assert isinstance(resolve_weights(None), ResolvedWeights)
