"""A real Triton Inference Server for tests and benchmarks (from the ``nvidia-pytriton`` wheel), stdlib only.

Test and benchmark harness, not part of the installed package: tests import it from ``tests/`` (on pytest's path),
benchmarks put ``tests/`` on ``sys.path`` first. ``python tests/triton_harness [VENV]`` provisions and prints JSON.

- :mod:`.provision`: ``provision()`` builds the separate Triton venv (numpy<2 + onnxruntime) and backend directory;
- :mod:`.server`: ``TritonServer`` starts/stops a ``tritonserver`` process on 127.0.0.1 and drives its HTTP API;
- ``write_version``: a bare ONNX version directory (+ the generic python-backend ``model.py``) for tests that
  build their own graphs. The config.pbtxt writer and ``model.py`` belong to :mod:`rewarddance.repository`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .provision import ProvisionError, TritonInstall, provision
from .server import TritonServer, TritonServerError, free_port


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
        from rewarddance.repository.triton import PYTHON_MODEL_FILE

        shutil.copyfile(PYTHON_MODEL_FILE, staging / "model.py")
    staging.rename(final)
    return final


__all__ = [
    "ProvisionError",
    "TritonInstall",
    "TritonServer",
    "TritonServerError",
    "free_port",
    "provision",
    "write_version",
]
