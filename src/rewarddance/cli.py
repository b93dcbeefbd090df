"""The one ``rewarddance`` command line: subcommands are modules loaded on demand.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first sentence is the
help text. Only the module of the command being run is imported (the others' docstrings are read from source), so
an install with one extra runs its commands; modules import their heavy dependencies (torch, onnxruntime) inside
``run`` so that ``--help`` stays light.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

# group -> {command -> module}; a command of None means the group itself is the command.
COMMANDS: dict[str, dict[str | None, str]] = {
    "data": {
        "synth": "rewarddance_trainer.shapes.synth_cmd",
        "validate": "rewarddance_trainer.data.validate",
        "import": "rewarddance_trainer.data.importers.cli",
        "preview": "rewarddance_trainer.shapes.preview",
        "embed": "rewarddance_trainer.encoders.embed_cmd",
        "prompt-states": "rewarddance_trainer.pixel_reward.states_cmd",
    },
    "train": {
        "encoder": "rewarddance_trainer.encoders.train_cmd",
        "components": "rewarddance_trainer.components.fit_cmd",
        "reward": "rewarddance_trainer.reward.train_cmd",
        "pixel-reward": "rewarddance_trainer.pixel_reward.train_cmd",
        "soup": "rewarddance_trainer.pixel_reward.soup",
        "generator": "rewarddance_trainer.generator.train_cmd",
        "rlhf": "rewarddance_trainer.rlhf.train_cmd",
    },
    "demo": {None: "rewarddance_trainer.demo"},
    "export": {None: "rewarddance_exporter.export_cmd"},
    "bootstrap": {None: "rewarddance_exporter.bootstrap"},
    "deploy": {None: "rewarddance_exporter.deploy_cmd"},
    "rollback": {None: "rewarddance_exporter.rollback_cmd"},
    "generate": {None: "rewarddance_trainer.generator.generate_cmd"},
    "eval": {
        "oracle": "rewarddance_trainer.oracle.eval_cmd",
        "reward": "rewarddance_trainer.pixel_reward.eval_cmd",
        "generators": "rewarddance_trainer.evaluation.eval_cmd",
    },
    "ab": {"serve": "rewarddance.ab.serve_cmd"},
    "serve": {None: "rewarddance_server.serve_cmd"},
}


def _docstring(module_name: str) -> str:
    """A command module's docstring, read from its source: listing commands imports none of them."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return ""
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""


def _summary(doc: str) -> str:
    """The first sentence of a docstring (its first paragraph may wrap over several lines)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(?:\s|$)", paragraph)
    return match.group(1) if match else paragraph


def _add_command(subparsers, name: str, module_name: str, chosen: bool) -> None:
    """Only the chosen command's module is imported (a serve-only install has no pandas or torch for the others)."""
    doc = _docstring(module_name)
    parser = subparsers.add_parser(
        name, help=_summary(doc), description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if chosen:
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(_run=module.run)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``: every command listed, the one ``argv`` names with its arguments."""
    parser = argparse.ArgumentParser(prog="rewarddance", description=__doc__.strip().splitlines()[0])
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for group, commands in COMMANDS.items():
        if None in commands:
            _add_command(groups, group, commands[None], argv[:1] == [group])
            continue
        group_parser = groups.add_parser(group, help=f"{group} commands")
        sub = group_parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
        for name, module_name in commands.items():
            _add_command(sub, name, module_name, argv[:2] == [group, name])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except ModuleNotFoundError as exc:  # a command of an extra this install does not have
        print(
            f"error: this command needs {exc.name!r}: install the extra that has it (README, Layout)", file=sys.stderr
        )
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
