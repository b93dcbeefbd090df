"""Make an earlier version of a model the served one again, and reload the gateways.

Example: rewarddance rollback --repo model_repository --model reward_small --gateway http://127.0.0.1:8000

Without --to: the newest version older than the current default. The version is loaded once (it must load) before
it is pinned as the model's default (``default_version``, replaced atomically); each --gateway is then reloaded and
must report it. The admin key comes from --admin-key-file or $REWARDDANCE_ADMIN_KEY.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .deploy import GateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    parser.add_argument("--model", required=True, help="model name, e.g. reward_small")
    parser.add_argument("--to", type=int, default=None, help="version to serve (default: the one before the default)")
    parser.add_argument("--gateway", action="append", default=[], help="gateway base URL to reload (repeat)")
    parser.add_argument("--admin-key-file", type=Path, default=None, help="admin key (default $REWARDDANCE_ADMIN_KEY)")
    parser.add_argument("--reload-timeout-s", type=float, default=GateConfig.reload_timeout_s)


def run(args: argparse.Namespace) -> int:
    from rewarddance.repository import RepositoryError

    from .deploy import DeployError, rollback
    from .gateways import GatewayError, admin_key

    try:
        key = admin_key(args.admin_key_file)
        rollback(args.repo, args.model, args.to, args.gateway, key, args.reload_timeout_s)
    except (DeployError, RepositoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"error: the repository is rolled back, but a gateway did not switch: {exc}", file=sys.stderr)
        return 4
    return 0
