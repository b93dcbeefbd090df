"""Deploy a trained reward run: export it, gate it against the serving version, publish, reload the gateways.

Example:
  rewarddance deploy runs/pixel-small --repo model_repository --eval-data data/shapes20k \\
      --eval-data data/shapes-shifted --gateway http://127.0.0.1:8000

The run is exported as the model's next version into a hidden staging folder and scored with the serving pipeline,
like the version served now, on a fixed evaluation set: a fixed draw of each dataset's test split (all of a
shifted-world dataset); default: the run's own dataset. When the candidate trails on Spearman of R vs the mean
ratings or on pair accuracy by more than --tolerance on any dataset, nothing is published (exit 3). Otherwise it
becomes the default version (the model's ``default_version`` pin), the gate's numbers are stored in its manifest
under "gate", and each --gateway is reloaded and must report it. The admin key comes from --admin-key-file or
$REWARDDANCE_ADMIN_KEY. Interrupting leaves the old version served. Undo with ``rewarddance rollback``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .deploy import GateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="finished reward run directory (has run.json)")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    parser.add_argument(
        "--eval-data", type=Path, action="append", default=[], help="evaluation dataset (repeat; default: the run's)"
    )
    parser.add_argument("--gateway", action="append", default=[], help="gateway base URL to reload (repeat)")
    parser.add_argument("--admin-key-file", type=Path, default=None, help="admin key (default $REWARDDANCE_ADMIN_KEY)")
    for f in fields(GateConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            help=f"{f.metadata['help']} (default {f.default})",
        )
    parser.add_argument("--json", type=Path, default=None, help="also write the outcome (gate included) here")


def _run_data(run: Path) -> list[Path]:
    path = (json.loads((run / "run.json").read_text()).get("data") or {}).get("path")
    return [Path(path)] if path and (Path(path) / "prompts.parquet").exists() else []


def run(args: argparse.Namespace) -> int:
    from rewarddance.repository import PublishError

    from .deploy import DeployError, deploy
    from .export import ExportError
    from .gateways import GatewayError, admin_key
    from .onnx_io import ParityError

    config = GateConfig(**{f.name: getattr(args, f.name) for f in fields(GateConfig)})
    if not (args.run / "run.json").exists():
        print(f"error: {args.run} is not a finished reward run (no run.json)", file=sys.stderr)
        return 2
    eval_data = args.eval_data or _run_data(args.run)
    try:
        key = admin_key(args.admin_key_file)
        result = deploy(args.run, args.repo, eval_data, args.gateway, key, config)
    except (DeployError, ExportError, ParityError, PublishError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"error: published, but a gateway did not switch: {exc}", file=sys.stderr)
        return 4
    if args.json:
        outcome = {
            "model": result.model,
            "candidate": result.candidate,
            "serving": result.serving,
            "published": result.published,
            "gate": result.gate,
            "gateways": result.gateways,
        }
        args.json.write_text(json.dumps(outcome, indent=2) + "\n")
    if not result.published:
        print(f"refused: {result.model} v{result.candidate} not published; v{result.serving} stays the default")
        return 3
    return 0
