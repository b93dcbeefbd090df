"""The four reward components (P, S, C, N) and the composite R, in numpy only: the gateway runs them too.

Every scorer takes a ``FeatureBatch`` and returns scores in [0, 1]; learned parts (calibration, probes, the
novelty bank) are fitted offline and saved as plain arrays + JSON with ``save``/``load``.
"""

from .base import COMPONENTS, FeatureBatch

__all__ = ["COMPONENTS", "FeatureBatch"]
