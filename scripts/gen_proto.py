"""Regenerates the gRPC stubs of proto/rewarddance_v1.proto for the SDK and the gateway.

    python scripts/gen_proto.py          # rewrite client/rewarddance_client/_proto and server/rewarddance_server/proto
    python scripts/gen_proto.py --check  # exit 1 if the committed stubs differ from what protoc makes now

protoc writes ``import rewarddance_v1_pb2`` into the ``_pb2_grpc`` module, which only works with the output folder
on ``sys.path``; both copies live inside packages, so that import is rewritten to a relative one.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto" / "rewarddance_v1.proto"
TARGETS = (ROOT / "client" / "rewarddance_client" / "_proto", ROOT / "server" / "rewarddance_server" / "proto")
STEM = PROTO.stem
INIT = f'"""Generated from proto/{PROTO.name} by scripts/gen_proto.py; do not edit."""\n'
GENERATED = (f"{STEM}_pb2.py", f"{STEM}_pb2.pyi", f"{STEM}_pb2_grpc.py")
# Keeps `ruff check .` / `ruff format --check .` off protoc's output while the root settings apply to __init__.py.
RUFF = (
    "# protoc output (scripts/gen_proto.py): regenerated, never hand-edited, so neither linted nor reformatted.\n"
    'extend = "../../../pyproject.toml"\n'
    "extend-exclude = [" + ", ".join(f'"{name}"' for name in GENERATED) + "]\n"
)


def generate(out_dir: Path) -> list[Path]:
    """Writes ``__init__.py``, ``ruff.toml`` and protoc's ``_pb2.py``, ``_pb2.pyi``, ``_pb2_grpc.py`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO.parent}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    grpc_module = out_dir / f"{STEM}_pb2_grpc.py"
    source = grpc_module.read_text()
    absolute = f"import {STEM}_pb2 as"
    if absolute not in source:
        raise RuntimeError(f"{grpc_module.name}: expected '{absolute}' from protoc; the generator changed")
    grpc_module.write_text(source.replace(absolute, f"from . import {STEM}_pb2 as"))
    (out_dir / "__init__.py").write_text(INIT)
    (out_dir / "ruff.toml").write_text(RUFF)
    return sorted(out_dir / name for name in ("__init__.py", "ruff.toml", *GENERATED))


def stale_files(target: Path) -> list[str]:
    """Names of the generated files that are missing from ``target`` or differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [f.name for f in fresh if not (target / f.name).is_file() or not filecmp.cmp(f, target / f.name, False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a target is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = {str(t.relative_to(ROOT)): names for t in TARGETS if (names := stale_files(t))}
        for target, names in stale.items():
            print(f"{target}: out of date: {', '.join(names)} (run python scripts/gen_proto.py)")
        return 1 if stale else 0
    for target in TARGETS:
        written = generate(target)
        print(f"{target.relative_to(ROOT)}: {', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
