"""Serve the A/B voting page: people compare two generators' images for a prompt; votes go to SQLite.

Examples:
  rewarddance ab serve --pairs runs/ab/base-vs-rlhf --db runs/ab/votes.sqlite --port 8080
  rewarddance ab serve --pairs runs/ab/base-vs-rlhf --db votes.sqlite --order uncertain   # least sure pairs first

--pairs is a pair-set folder written by `rewarddance eval generators` (pairs.json + images). Open
http://HOST:PORT/ to vote (keys 1 / 2 / 0 tie / s skip) and /results for win rates with 95% intervals. One vote per
rater per pair (voting again updates it); each vote is committed before the page hears back. Turn the votes into a
training dataset with `rewarddance data import ab-votes DB --out DATASET`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .pairs import ORDERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="pair-set folder (pairs.json + images)")
    parser.add_argument("--db", type=Path, required=True, help="SQLite vote database (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--order", choices=ORDERS, default="uncertain", help="uncertain: smallest |R_b - R_a| first (default)"
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .pairs import PairSet, PairSetError
    from .store import VoteError, VoteStore

    try:
        pair_set = PairSet.read(args.pairs)
        store = VoteStore(args.db, pair_set)
    except (PairSetError, VoteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"A/B page for {pair_set.name} ({len(pair_set.pairs)} pairs) on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(pair_set, store, args.order), host=args.host, port=args.port, log_level="warning")
    store.close()
    return 0
