"""Export a trained reward run and its encoders to ONNX in a Triton model repository.

Example: rewarddance export --run runs/reward-small --repo model_repository --precision int8

A pixel reward run (``rewarddance train pixel-reward``) writes prompt_encoder/ and reward_<scale>/; a feature run
(``rewarddance train reward``) writes image_encoder/ and text_encoder/ (reused when identical weights are already
there) and reward_<scale>/; all as new versions (never overwriting one), each with manifest.json and config.pbtxt;
see docs/exporter.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewarddance.repository import DEFAULT_RESIZE, FLAVOURS, RESIZE_MODES, PublishError


def _version(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--version must be a positive integer or 'auto', got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="finished reward run directory (has run.json)")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    parser.add_argument("--version", type=_version, default="auto", help="version number or 'auto' (the next)")
    parser.add_argument("--flavour", choices=FLAVOURS, default="onnxruntime", help="Triton backend flavour")
    parser.add_argument(
        "--resize", choices=RESIZE_MODES, default=DEFAULT_RESIZE, help="how the gateway squares non-square uploads"
    )
    parser.add_argument(
        "--precision", action="append", choices=("fp16", "int8"), default=[], help="also write this variant"
    )
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="Triton dynamic batching delay")
    parser.add_argument("--max-queue-size", type=int, default=256, help="Triton queue bound (then it rejects)")
    parser.add_argument("--instances", type=int, default=1, help="Triton model instances")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |torch - onnx| allowed (fp32)")


def run(args: argparse.Namespace) -> int:
    from .export import ExportError, ExportOptions, export_run
    from .onnx_io import ParityError

    opts = ExportOptions(
        version=args.version,
        flavour=args.flavour,
        resize=args.resize,
        precisions=tuple(dict.fromkeys(args.precision)),
        exporter=args.exporter,
        max_batch_size=args.max_batch_size,
        queue_delay_us=args.queue_delay_us,
        max_queue_size=args.max_queue_size,
        instances=args.instances,
        tolerance=args.tolerance,
    )
    try:
        from .pixel_export import export_pixel_run, is_pixel_run

        (export_pixel_run if is_pixel_run(args.run) else export_run)(args.run, args.repo, opts)
    except (ExportError, ParityError, PublishError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
