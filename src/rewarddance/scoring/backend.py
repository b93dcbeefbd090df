"""Where the ONNX graphs run. The pipeline only needs ``infer(version, inputs) -> outputs``.

``OnnxRuntimeBackend`` embeds onnxruntime sessions in the process (the default). The gateway's Triton backend
implements the same interface over tritonclient, so the same request gives the same scores on both.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from ..repository import ModelVersion, Variant


class InferenceBackend(Protocol):
    def load(self, version: ModelVersion) -> None: ...

    def infer(self, version: ModelVersion, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def unload(self, version: ModelVersion) -> None: ...


class OnnxRuntimeBackend:
    """One onnxruntime session per model version, tuned for a server that runs several batches at once.

    Measured on the 2-core box (docs/serving_profile.md): one intra-op thread per run and parallelism across
    concurrent runs (the gateway's inference workers, bare's threads) costs the least CPU per image; with two
    intra-op threads that spin while waiting (onnxruntime's default) a run of 16 images cost up to twice the CPU,
    taken from the threads that parse and decode the next requests. So: ``intra_op_threads`` 1 unless given
    (0 lets onnxruntime choose: one per core), no spinning, one inter-op thread, every graph optimisation, the
    CPU memory arena and memory patterns on (the default shapes repeat). ``options`` records what was set."""

    def __init__(
        self,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        variant: str | None = None,
        allow_spinning: bool = False,
    ) -> None:
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.allow_spinning = allow_spinning
        self.variant = variant  # e.g. "int8" -> model.int8.onnx where the version has it
        self._sessions: dict[tuple[str, int], tuple[object, list[str]]] = {}  # -> (session, output names)
        self._lock = threading.Lock()

    @property
    def options(self) -> dict:
        """The session options every session of this backend gets (for logs and result files)."""
        return {
            "intra_op_num_threads": self.intra_op_threads,
            "inter_op_num_threads": self.inter_op_threads,
            "session.intra_op.allow_spinning": int(self.allow_spinning),
            "session.inter_op.allow_spinning": int(self.allow_spinning),
            "graph_optimization_level": "ORT_ENABLE_ALL (basic where a variant asks for it)",
            "execution_mode": "ORT_SEQUENTIAL",
            "enable_cpu_mem_arena": True,
            "enable_mem_pattern": True,
        }

    def _variant(self, version: ModelVersion) -> Variant | None:
        """The manifest's record of the requested variant (fp16, int8) where the version has one, else None (fp32)."""
        variants = getattr(version.manifest, "variants", {})  # reward versions only
        return variants.get(self.variant) if self.variant else None

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
        for entry in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            options.add_session_config_entry(entry, "1" if self.allow_spinning else "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = True
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if variant is not None and variant.graph_optimization == "basic":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        path = version.path / variant.file if variant is not None else version.onnx
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
