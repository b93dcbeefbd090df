"""The Triton side of an exported model: config.pbtxt and, for the python flavour, the generic model.py.

Flavours (DESIGN.md 3.2, 6):
- ``onnxruntime``: production Triton (NGC image) runs model.onnx with its onnxruntime backend;
- ``python``: the generic ``model.py`` runs model.onnx with onnxruntime inside Triton's python backend, for builds
  without the onnxruntime backend (the ``nvidia-pytriton`` server the tests start);
- ``tensorrt``: the onnxruntime backend with the TensorRT execution accelerator on GPU instances (fp16).
config.pbtxt is per model, not per version; each export rewrites it (the I/O contract of a model name is fixed,
so versions share it). Dims leave out the batch axis, which ``max_batch_size`` stands for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rewarddance.triton import pbtxt

from .graphs import GraphSpec

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


def _tensors(specs) -> list[pbtxt.TensorSpec]:
    return [pbtxt.TensorSpec(t.name, TRITON_TYPES[t.dtype], list(t.shape[1:])) for t in specs]


def model_config(name: str, spec: GraphSpec, opts, version_policy: str) -> pbtxt.ModelConfig:
    backend = "python" if opts.flavour == "python" else "onnxruntime"
    preferred = sorted({b for b in (8, 32) if b <= opts.max_batch_size} | {opts.max_batch_size})
    # Encoders: every version (each reward version names the encoder version it was trained with). Rewards: the
    # newest two, so requests already routed to the previous version finish while a reload swaps the new one in.
    policy = pbtxt.VersionPolicy.all() if version_policy == "all" else pbtxt.VersionPolicy.latest(2)
    kind = "KIND_GPU" if opts.flavour == "tensorrt" else "KIND_CPU"
    return pbtxt.ModelConfig(
        name=name,
        backend=backend,
        max_batch_size=opts.max_batch_size,
        inputs=_tensors(spec.inputs),
        outputs=_tensors(spec.outputs),
        dynamic_batching=pbtxt.DynamicBatching(
            preferred_batch_size=preferred,
            max_queue_delay_microseconds=opts.queue_delay_us,
            max_queue_size=opts.max_queue_size,
        ),
        instance_groups=[pbtxt.InstanceGroup(count=opts.instances, kind=kind)],
        version_policy=policy,
        warmup=[pbtxt.Warmup("zeros_b1", batch_size=1, data="zero")],
        parameters={"intra_op_thread_count": str(opts.intra_op_threads)},
    )


def write(model_dir: Path, spec: GraphSpec, staging: Path, opts, version_policy: str) -> Path:
    """config.pbtxt for ``model_dir`` and the flavour's files in the staged version directory."""
    config = model_config(model_dir.name, spec, opts, version_policy)
    if opts.flavour == "python":
        shutil.copy(Path(pbtxt.__file__).with_name("python_model.py"), staging / "model.py")
    path = pbtxt.write_config(config, model_dir)
    if opts.flavour == "tensorrt":
        path.write_text(path.read_text() + TENSORRT_ACCELERATOR)
    return path
