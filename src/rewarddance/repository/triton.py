"""A model's ``config.pbtxt`` from its manifest, and the flavour's files in a version directory.

Flavours (DESIGN.md 3.2, 6):
- ``onnxruntime``: production Triton (NGC image) runs model.onnx with its onnxruntime backend;
- ``python``: the generic ``model.py`` (:data:`PYTHON_MODEL_FILE`) runs model.onnx with onnxruntime inside Triton's
  python backend, for builds without the onnxruntime backend (the ``nvidia-pytriton`` server the tests start);
- ``tensorrt``: the onnxruntime backend with the TensorRT execution accelerator on GPU instances (fp16).
config.pbtxt is per model, not per version; each publication rewrites it (the I/O contract of a model name is fixed,
so versions share it). Dims leave out the batch axis, which ``max_batch_size`` stands for. Encoders keep every
version loaded (each reward version names the encoder version it was trained with); reward models the newest two,
so requests already routed to the previous version finish while a reload swaps the new one in.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import pbtxt
from .manifest import REWARD_KIND, Manifest, Tensor

FLAVOURS = ("onnxruntime", "python", "tensorrt")
PYTHON_MODEL_FILE = Path(__file__).with_name("python_model.py")
TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
TENSORRT_ACCELERATOR = """
optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" }
      }
    ]
  }
}
"""


@dataclass
class TritonOptions:
    """How Triton serves a model: backend flavour, batching, queue bound, instances."""

    flavour: str = "onnxruntime"
    max_batch_size: int = 64
    queue_delay_us: int = 2000
    max_queue_size: int = 256
    instances: int = 1
    intra_op_threads: int = 0

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, got {self.flavour!r}")


def _tensors(tensors: tuple[Tensor, ...]) -> list[pbtxt.TensorSpec]:
    return [pbtxt.TensorSpec(t.name, TRITON_TYPES[t.dtype], list(t.shape[1:])) for t in tensors]


def model_config(manifest: Manifest, options: TritonOptions) -> pbtxt.ModelConfig:
    preferred = sorted({b for b in (8, 32) if b <= options.max_batch_size} | {options.max_batch_size})
    policy = pbtxt.VersionPolicy.latest(2) if manifest.kind == REWARD_KIND else pbtxt.VersionPolicy.all()
    return pbtxt.ModelConfig(
        name=manifest.name,
        backend="python" if options.flavour == "python" else "onnxruntime",
        max_batch_size=options.max_batch_size,
        inputs=_tensors(manifest.inputs),
        outputs=_tensors(manifest.outputs),
        dynamic_batching=pbtxt.DynamicBatching(
            preferred_batch_size=preferred,
            max_queue_delay_microseconds=options.queue_delay_us,
            max_queue_size=options.max_queue_size,
        ),
        instance_groups=[
            pbtxt.InstanceGroup(
                count=options.instances, kind="KIND_GPU" if options.flavour == "tensorrt" else "KIND_CPU"
            )
        ],
        version_policy=policy,
        warmup=[pbtxt.Warmup("zeros_b1", batch_size=1, data="zero")],
        parameters={"intra_op_thread_count": str(options.intra_op_threads)},
    )


def write(model_dir: Path, manifest: Manifest, version_dir: Path, options: TritonOptions) -> Path:
    """``<model_dir>/config.pbtxt`` (replaced in one rename) and, for the python flavour, ``model.py`` in
    ``version_dir``."""
    if options.flavour == "python":
        shutil.copy(PYTHON_MODEL_FILE, version_dir / "model.py")
    text = pbtxt.render_config(model_config(manifest, options))
    if options.flavour == "tensorrt":
        text += TENSORRT_ACCELERATOR
    path = Path(model_dir) / "config.pbtxt"
    tmp = path.with_name(f".config.pbtxt.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
