"""Import people's votes from the A/B page's SQLite database (``rewarddance ab serve``) as a reward dataset.

Every vote that states a preference (``a``, ``b`` or ``tie``; skips are counted, not imported) becomes one row of
pairs.parquet with the voter as ``rater_id`` (``ab:<name>``); both images are copied in content-addressed, the
prompts get folds from their text like every importer. People compare pairs and rate nothing, so ratings.parquet
is empty: ``rewarddance train pixel-reward --init RUN`` then trains on the Bradley-Terry term alone.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .common import DatasetBuilder, ImportInputError, ImportReport, prepare_output, progress, require_source

FORMAT = "ab-votes"
RATER_PREFIX = "ab:"


def _read(db: Path) -> tuple[dict[str, str], dict[str, tuple], list[tuple]]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        with con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            pairs = {row[0]: row[1:] for row in con.execute("SELECT pair_id, prompt, image_a, image_b FROM pairs")}
            votes = con.execute("SELECT rater, pair_id, choice FROM votes ORDER BY first_voted, rater").fetchall()
        con.close()
    except sqlite3.DatabaseError as err:
        raise ImportInputError(f"{db}: not an A/B vote database ({err})") from None
    return meta, pairs, votes


def import_ab_votes(db: Path, out: Path, pairs_root: Path | None = None) -> ImportReport:
    """``pairs_root``: the pair-set folder holding the images (default: the one recorded in the database)."""
    require_source(db)
    meta, pairs, votes = _read(db)
    root = Path(pairs_root or meta.get("pair_set", ""))
    if not root.is_dir():
        raise ImportInputError(f"pair-set folder {root} not found: pass --images-root PAIR_SET_DIR")
    prepare_output(out)
    builder = DatasetBuilder(FORMAT, out)
    files: dict[str, str | None] = {}

    def image(prompt_id: str, rel: str, side: str) -> str | None:
        key = f"{prompt_id}/{rel}"
        if key not in files:
            if (root / rel).is_file():
                settings = {"pair_set": meta.get("name"), "side": side, "source_path": rel}
                files[key] = builder.image(
                    prompt_id, (root / rel).read_bytes(), rel, generator=meta.get(side), settings=settings
                )
            else:
                builder.skip("image file missing", rel)
                files[key] = None
        return files[key]

    for rater, pair_id, choice in progress(votes, len(votes), "ab votes"):
        if choice == "skip":
            builder.skip("the voter skipped the pair (no preference)", f"{rater}/{pair_id}")
            continue
        prompt, rel_a, rel_b = pairs[pair_id]
        prompt_id = builder.prompt(prompt)
        a, b = image(prompt_id, rel_a, "a"), image(prompt_id, rel_b, "b")
        builder.pair(prompt_id, a, b, choice, RATER_PREFIX + rater, f"{rater}/{pair_id}")
    card = {
        "license": "votes collected with `rewarddance ab serve`; images from the compared generators",
        "mapping": {"votes.choice": "pairs.winner", "votes.rater": "pairs.rater_id (ab:<name>)"},
        "unmapped": {
            "source_fields": {
                "votes.left_side": "which side was shown on the left: presentation, not preference (stays in the db)",
                "votes.revisions": "how often the voter changed the vote; the last vote is imported",
                "pairs.reward_a/reward_b": "the served reward at collection time: a model output, not a label",
            },
            "schema_fields": {
                "ratings": "people compare pairs on the A/B page; nobody gives Likert ratings",
                "prompts.style": "the page stores prompt text only",
                "images.seed": "the pair set does not record per-image seeds",
            },
        },
    }
    return builder.write(
        src=db, command=f"rewarddance data import ab-votes {db} --out {out}", records_read=len(votes), card=card
    )
