"""torch -> ONNX with a dynamic batch axis, and the parity check that guards every exported version."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .graphs import GraphSpec

OPSET = 18
EXPORTERS = ("torchscript", "dynamo")


class ParityError(RuntimeError):
    """The ONNX graph disagrees with the torch module beyond the tolerance; nothing was written."""


def export_onnx(spec: GraphSpec, example: dict[str, np.ndarray], path: Path, exporter: str = "torchscript") -> None:
    """Write ``spec.module`` to ``path`` as one self-contained ONNX file (opset 18, batch axis dynamic)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    args = tuple(torch.from_numpy(example[t.name]) for t in spec.inputs)
    input_names = [t.name for t in spec.inputs]
    output_names = [t.name for t in spec.outputs]
    # Grad mode stays on: under no_grad nn.TransformerEncoderLayer takes its fused inference kernel
    # (aten::_transformer_encoder_layer_fwd), which has no ONNX mapping; the traced graph is the same math.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        if exporter == "torchscript":
            torch.onnx.export(
                spec.module,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
                opset_version=OPSET,
                dynamo=False,
            )
        else:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(
                spec.module,
                args,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=tuple({0: batch} for _ in args),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
            program.save(str(path), external_data=False)


def run_torch(spec: GraphSpec, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = spec.module(*(torch.from_numpy(inputs[t.name]) for t in spec.inputs))
    out = out if isinstance(out, tuple) else (out,)
    return {t.name: o.numpy() for t, o in zip(spec.outputs, out, strict=True)}


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    diffs = []
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            raise ParityError(f"output {name}: torch shape {x.shape} but ONNX shape {y.shape}")
        diffs.append(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) if x.size else 0.0)
    return max(diffs)


def parity(spec: GraphSpec, path: Path, cases: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Max |torch - onnx| over all outputs, per named input case (e.g. random and real)."""
    return {name: max_abs_diff(run_torch(spec, inputs), run_onnx(path, inputs)) for name, inputs in cases.items()}
