"""``python -m rewarddance_server ...``: the same as ``rewarddance serve ...`` without loading the other commands."""

from __future__ import annotations

import argparse
import sys

from . import serve_cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rewarddance_server", description=serve_cmd.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    serve_cmd.add_arguments(parser)
    return serve_cmd.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
