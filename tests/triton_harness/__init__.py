"""A real Triton Inference Server for tests and benchmarks (from the ``nvidia-pytriton`` wheel), stdlib only.

- :mod:`.provision`: ``provision()`` builds the separate Triton venv (numpy<2 + onnxruntime) and backend directory;
- :mod:`.server`: ``TritonServer`` starts/stops a ``tritonserver`` process on 127.0.0.1 and drives its HTTP API;
- :mod:`.pbtxt`: config.pbtxt writer;
- ``python_model.py``: the generic python-backend ``model.py`` running ``model.onnx`` with onnxruntime (it runs
  inside the Triton venv; never import it from here: use ``PYTHON_MODEL_FILE`` / ``write_version``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rewarddance.triton.pbtxt import (
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    TensorSpec,
    VersionPolicy,
    Warmup,
    render_config,
    write_config,
)
from rewarddance.triton.provision import ProvisionError, TritonInstall, provision
from rewarddance.triton.server import TritonServer, TritonServerError, free_port

PYTHON_MODEL_FILE = Path(__file__).with_name("python_model.py")


def write_version(
    model_dir: str | os.PathLike, version: int, onnx_model: str | os.PathLike | bytes, flavour: str = "python"
) -> Path:
    """Lay out ``<model_dir>/<version>/model.onnx`` (+ ``model.py`` for the python flavour); return the version dir.

    The files are written into a hidden staging directory first and renamed into place, so a server polling or
    loading the repository never sees a half-written version."""
    if flavour not in ("python", "onnxruntime"):
        raise ValueError("flavour must be 'python' or 'onnxruntime'")
    model_dir = Path(model_dir)
    final = model_dir / str(int(version))
    if final.exists():
        raise FileExistsError(f"{final} exists")
    staging = model_dir / f".staging-{int(version)}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if isinstance(onnx_model, bytes):
        (staging / "model.onnx").write_bytes(onnx_model)
    else:
        shutil.copyfile(onnx_model, staging / "model.onnx")
    if flavour == "python":
        shutil.copyfile(PYTHON_MODEL_FILE, staging / "model.py")
    staging.rename(final)
    return final


__all__ = [
    "PYTHON_MODEL_FILE",
    "DynamicBatching",
    "InstanceGroup",
    "ModelConfig",
    "ProvisionError",
    "TensorSpec",
    "TritonInstall",
    "TritonServer",
    "TritonServerError",
    "VersionPolicy",
    "Warmup",
    "free_port",
    "provision",
    "render_config",
    "write_config",
    "write_version",
]
