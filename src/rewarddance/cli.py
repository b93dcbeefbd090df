"""The one ``rewarddance`` command line: subcommands are modules loaded on demand.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first line is the
help text. Modules import their heavy dependencies (torch, onnxruntime) inside ``run`` so that ``--help`` and the
serving commands stay light.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
        "generator": "rewarddance_trainer.generator.train_cmd",
    },
    "demo": {None: "rewarddance_trainer.demo"},
    "export": {None: "rewarddance_exporter.export_cmd"},
    "bootstrap": {None: "rewarddance_exporter.bootstrap"},
    "generate": {None: "rewarddance_trainer.generator.generate_cmd"},
    "eval": {"oracle": "rewarddance_trainer.oracle.eval_cmd", "reward": "rewarddance_trainer.pixel_reward.eval_cmd"},
    "serve": {None: "rewarddance_server.serve_cmd"},
}


def _summary(module) -> str:
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def _add_command(subparsers, name: str, module_name: str) -> None:
    module = importlib.import_module(module_name)
    parser = subparsers.add_parser(
        name,
        help=_summary(module),
        description=(module.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewarddance", description=__doc__.strip().splitlines()[0])
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for group, commands in COMMANDS.items():
        if None in commands:
            _add_command(groups, group, commands[None])
            continue
        group_parser = groups.add_parser(group, help=f"{group} commands")
        sub = group_parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
        for name, module_name in commands.items():
            _add_command(sub, name, module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
