"""The pair set: the one contract between ``rewarddance eval generators`` (writer) and the A/B page (reader).

A pair-set folder holds ``pairs.json`` and the images it names (paths relative to the folder). Each pair is one
prompt with one image of generator A and one of generator B made from the same seed; the served reward of both
sides travels with it so the page can ask the least certain pairs first.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT_VERSION = 1
PAIRS_FILE = "pairs.json"
ORDERS = ("uncertain", "random", "file")


class PairSetError(ValueError):
    """A pair-set folder that is missing, malformed or of another format version."""


@dataclass(frozen=True)
class Pair:
    pair_id: str
    prompt: str
    image_a: str  # relative to the pair-set folder
    image_b: str
    reward_a: float | None = None  # the served reward of each side (None when it was not scored)
    reward_b: float | None = None

    @property
    def reward_gap(self) -> float:
        """|R_b - R_a|, infinite when unscored (asked last under ``--order uncertain``)."""
        if self.reward_a is None or self.reward_b is None:
            return math.inf
        return abs(self.reward_b - self.reward_a)


@dataclass(frozen=True)
class PairSet:
    root: Path
    name: str
    a: str  # what side A is (a generator path or label)
    b: str
    pairs: tuple[Pair, ...]

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "a": self.a,
            "b": self.b,
            "pairs": [asdict(p) for p in self.pairs],
        }

    def write(self) -> Path:
        """Write ``pairs.json`` atomically (the images must already be in the folder)."""
        missing = [p for pair in self.pairs for p in (pair.image_a, pair.image_b) if not (self.root / p).is_file()]
        if missing:
            raise PairSetError(f"{len(missing)} images named by the pair set are missing, e.g. {missing[0]}")
        path = self.root / PAIRS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, root: Path | str) -> PairSet:
        root = Path(root).resolve()
        path = root / PAIRS_FILE
        if not path.is_file():
            raise PairSetError(
                f"{root} is not a pair set (no {PAIRS_FILE}; write one with `rewarddance eval generators`)"
            )
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PairSetError(f"{path}: not JSON ({err})") from None
        if raw.get("format_version") != FORMAT_VERSION:
            raise PairSetError(f"{path}: format_version {raw.get('format_version')!r}, expected {FORMAT_VERSION}")
        try:
            pairs = tuple(Pair(**p) for p in raw["pairs"])
            out = cls(root, str(raw["name"]), str(raw["a"]), str(raw["b"]), pairs)
        except (KeyError, TypeError) as err:
            raise PairSetError(f"{path}: malformed ({err})") from None
        ids = [p.pair_id for p in pairs]
        if len(set(ids)) != len(ids):
            raise PairSetError(f"{path}: pair ids are not unique")
        for pair in pairs:
            for rel in (pair.image_a, pair.image_b):
                if Path(rel).is_absolute() or ".." in Path(rel).parts:
                    raise PairSetError(f"{path}: image path {rel!r} must be relative and inside the folder")
        return out

    def by_id(self) -> dict[str, Pair]:
        return {p.pair_id: p for p in self.pairs}

    def ordered(self, order: str) -> list[str]:
        """Pair ids in the order the page asks them: ``uncertain`` (smallest |R_b - R_a| first), ``random`` (a fixed
        shuffle) or ``file``."""
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        ids = [p.pair_id for p in self.pairs]
        if order == "uncertain":  # a stable sort: equal gaps keep the file order
            return [p.pair_id for p in sorted(self.pairs, key=lambda p: p.reward_gap)]
        if order == "random":
            import random

            random.Random(0).shuffle(ids)
        return ids
