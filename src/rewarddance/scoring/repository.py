"""Moved to :mod:`rewarddance.repository`; this re-export goes once every reader imports it from there."""

from rewarddance.repository import (  # noqa: F401
    CONFIG,
    FORMAT,
    MANIFEST,
    MODEL_FILE,
    PIN_FILE,
    PIXEL_ARCHITECTURE,
    REWARD_KIND,
    ModelRepository,
    ModelVersion,
    RepositoryError,
)
