"""Where the ONNX graphs run. The pipeline only needs ``infer(version, inputs) -> outputs``.

``OnnxRuntimeBackend`` embeds onnxruntime sessions in the process (the default). The gateway's Triton backend
implements the same interface over tritonclient, so the same request gives the same scores on both.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from .repository import ModelVersion


class InferenceBackend(Protocol):
    def load(self, version: ModelVersion) -> None: ...

    def infer(self, version: ModelVersion, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def unload(self, version: ModelVersion) -> None: ...


class OnnxRuntimeBackend:
    """One onnxruntime session per model version; ``intra_op_threads`` 0 lets onnxruntime choose."""

    def __init__(self, intra_op_threads: int = 0, inter_op_threads: int = 0, variant: str | None = None) -> None:
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.variant = variant  # e.g. "int8" -> model.int8.onnx where the version has it
        self._sessions: dict[tuple[str, int], tuple[object, list[str]]] = {}  # -> (session, output names)
        self._lock = threading.Lock()

    def _variant(self, version: ModelVersion) -> dict:
        """The manifest's record of the requested variant (fp16, int8) where the version has one, else fp32."""
        if self.variant:
            return version.manifest.get("variants", {}).get(self.variant) or {}
        return {}

    def load(self, version: ModelVersion) -> None:
        import onnxruntime as ort

        key = (version.name, version.version)
        with self._lock:
            if key in self._sessions:
                return
        variant = self._variant(version)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        if variant.get("graph_optimization") == "basic":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        path = version.path / variant["file"] if variant else version.onnx
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        with self._lock:
            self._sessions.setdefault(key, (session, [o.name for o in session.get_outputs()]))

    def infer(self, version: ModelVersion, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = (version.name, version.version)
        if key not in self._sessions:
            self.load(version)
        session, names = self._sessions[key]
        return dict(zip(names, session.run(names, inputs), strict=True))

    def unload(self, version: ModelVersion) -> None:
        with self._lock:
            self._sessions.pop((version.name, version.version), None)
