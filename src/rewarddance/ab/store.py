"""Votes in SQLite: one vote per rater per pair, each committed before the page hears back.

WAL journal with ``synchronous=FULL``: a vote the server has answered survives the process being killed. Tables:

- ``meta``: the pair set the database belongs to (its folder, name and sides), so votes never mix two sets;
- ``pairs``: the pair set's pairs (prompt, image paths, served rewards), copied in so the database alone says
  what was voted on (``rewarddance data import ab-votes`` reads it);
- ``assignments``: every pair shown, with a one-time token, the rater and which side was on the left (sides are
  randomised per showing); a token answers once, so a replayed request is refused;
- ``votes``: (rater, pair) is the primary key; voting on a pair again updates the row (``revisions`` counts it).

A vote's ``choice`` is ``a``, ``b``, ``tie`` or ``skip`` (a skip is kept so the pair is not shown again, and is
not a preference).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .pairs import PairSet

CHOICES = ("a", "b", "tie", "skip")
SCREEN_CHOICES = ("left", "right", "tie", "skip")
RATER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id TEXT PRIMARY KEY, prompt TEXT NOT NULL, image_a TEXT NOT NULL, image_b TEXT NOT NULL,
    reward_a REAL, reward_b REAL
);
CREATE TABLE IF NOT EXISTS assignments (
    token TEXT PRIMARY KEY, rater TEXT NOT NULL, pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')), issued REAL NOT NULL, used REAL
);
CREATE TABLE IF NOT EXISTS votes (
    rater TEXT NOT NULL, pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'skip')),
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')), token TEXT NOT NULL,
    first_voted REAL NOT NULL, voted REAL NOT NULL, revisions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rater, pair_id)
);
"""


class VoteError(ValueError):
    """A request the store refuses; ``status`` is the HTTP code the page gets (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Assignment:
    token: str
    rater: str
    pair_id: str
    left_side: str


@dataclass(frozen=True)
class Vote:
    rater: str
    pair_id: str
    choice: str
    left_side: str
    revisions: int


def check_rater(rater: str) -> str:
    if not isinstance(rater, str) or not RATER_PATTERN.match(rater):
        raise VoteError(422, "rater name must be 1-40 characters: letters, digits, space, '_', '.', '-'")
    return rater


class VoteStore:
    def __init__(self, path: Path | str, pair_set: PairSet | None = None) -> None:
        """Open (or create) the database; with ``pair_set``, bind it to that set (refused if bound to another)."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        if pair_set is not None:
            self._bind(pair_set)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self):
        return _Transaction(self._db, self._lock)

    def _bind(self, pair_set: PairSet) -> None:
        with self._transaction() as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta and meta.get("name") != pair_set.name:
                raise VoteError(409, f"{self.path} holds votes on pair set {meta.get('name')!r}, not {pair_set.name!r}")
            for key, value in (("name", pair_set.name), ("a", pair_set.a), ("b", pair_set.b)):
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('pair_set', ?)", (str(pair_set.root),))
            db.executemany(
                "INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?)",
                [(p.pair_id, p.prompt, p.image_a, p.image_b, p.reward_a, p.reward_b) for p in pair_set.pairs],
            )

    # -- reads ----------------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def answered(self, rater: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT pair_id FROM votes WHERE rater = ?", (rater,)).fetchall()
        return {r[0] for r in rows}

    def votes(self) -> list[Vote]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rater, pair_id, choice, left_side, revisions FROM votes ORDER BY voted, rater"
            ).fetchall()
        return [Vote(*r) for r in rows]

    def pairs(self) -> list[tuple]:
        """(pair_id, prompt, image_a, image_b, reward_a, reward_b) of every pair the database knows."""
        with self._lock:
            return self._db.execute("SELECT * FROM pairs ORDER BY pair_id").fetchall()

    # -- writes ---------------------------------------------------------------------------------------------------
    def assign(self, rater: str, pair_id: str) -> Assignment:
        """Show ``pair_id`` to ``rater``: a fresh token and a random left side, committed."""
        check_rater(rater)
        token, left = secrets.token_urlsafe(18), secrets.choice(("a", "b"))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO assignments (token, rater, pair_id, left_side, issued) VALUES (?, ?, ?, ?, ?)",
                (token, rater, pair_id, left, time.time()),
            )
        return Assignment(token, rater, pair_id, left)

    def vote(self, token: str, rater: str, screen_choice: str) -> Vote:
        """Record the answer to one showing: ``left``/``right``/``tie``/``skip`` as seen on screen, mapped to a/b
        through the side recorded at ``assign``. Committed before returning."""
        check_rater(rater)
        if screen_choice not in SCREEN_CHOICES:
            raise VoteError(422, f"choice must be one of {', '.join(SCREEN_CHOICES)}, got {screen_choice!r}")
        if not isinstance(token, str) or not token:
            raise VoteError(422, "token is required")
        with self._transaction() as db:
            row = db.execute(
                "SELECT rater, pair_id, left_side, used FROM assignments WHERE token = ?", (token,)
            ).fetchone()
            if row is None:
                raise VoteError(404, "unknown token: ask /api/next for a pair first")
            owner, pair_id, left, used = row
            if owner != rater:
                raise VoteError(403, "this pair was shown to another rater")
            if used is not None:
                raise VoteError(409, "this showing was already answered (replayed request); ask /api/next")
            choice = {"left": left, "right": "b" if left == "a" else "a"}.get(screen_choice, screen_choice)
            now = time.time()
            db.execute("UPDATE assignments SET used = ? WHERE token = ?", (now, token))
            db.execute(
                """INSERT INTO votes (rater, pair_id, choice, left_side, token, first_voted, voted)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (rater, pair_id) DO UPDATE SET choice = excluded.choice,
                       left_side = excluded.left_side, token = excluded.token, voted = excluded.voted,
                       revisions = revisions + 1""",
                (rater, pair_id, choice, left, token, now, now),
            )
            revisions = db.execute(
                "SELECT revisions FROM votes WHERE rater = ? AND pair_id = ?", (rater, pair_id)
            ).fetchone()[0]
        return Vote(rater, pair_id, choice, left, revisions)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the store's lock (rollback on error)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.lock.release()
