"""Parse a shapes-world prompt back into the scene spec it asks for (the vocabulary and its synonyms).

The oracle needs the prompt's scene for fidelity; dataset prompts also have it in ``gold/prompts.parquet``, but
prompts typed on the command line or produced by a generator run only exist as text. Unknown words are ignored,
so a prompt outside the shapes world parses to an empty spec (no objects).
"""

from __future__ import annotations

import re
from functools import cache

from ..shapes.world import (
    BACKGROUND_WORDS,
    COLOR_WORDS,
    POSITION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    STYLE_WORDS,
    ObjectSpec,
    SceneSpec,
)


def _alternation(table: dict[str, tuple[str, ...]]) -> tuple[str, dict[str, str]]:
    lookup = {w.lower(): k for k, words in table.items() for w in words}
    words = sorted(lookup, key=len, reverse=True)
    return "|".join(re.escape(w) for w in words), lookup


@cache
def _patterns():
    size, size_of = _alternation(SIZE_WORDS)
    color, color_of = _alternation(COLOR_WORDS)
    shape, shape_of = _alternation(SHAPE_WORDS)
    pos, pos_of = _alternation(POSITION_WORDS)
    bg, bg_of = _alternation(BACKGROUND_WORDS)
    style, style_of = _alternation(STYLE_WORDS)
    obj = re.compile(rf"\b(?:a|an)\s+(?:({size})\s+)?(?:({color})\s+)?({shape})\b(?:\s+({pos})\b)?")
    background = re.compile(rf"\b(?:on|against)\s+(?:a|an)\s+({bg})\s+(?:background|backdrop)\b")
    style_re = re.compile(rf"(?<![\w-])({style})(?![\w-])")
    return obj, background, style_re, size_of, color_of, shape_of, pos_of, bg_of, style_of


def parse_prompt(text: str) -> SceneSpec:
    obj, background, style_re, size_of, color_of, shape_of, pos_of, bg_of, style_of = _patterns()
    t = text.lower()
    bg_match = background.search(t)
    bg = bg_of[bg_match.group(1)] if bg_match else None
    if bg_match:  # a background phrase never holds an object; blank it so "a sky blue ..." is not misread
        t = t[: bg_match.start()] + " " * (bg_match.end() - bg_match.start()) + t[bg_match.end() :]
    style_match = style_re.search(t)
    style = style_of[style_match.group(1)] if style_match else None
    objects = tuple(
        ObjectSpec(
            shape=shape_of[m.group(3)],
            color=color_of[m.group(2)] if m.group(2) else None,
            size=size_of[m.group(1)] if m.group(1) else None,
            position=pos_of[m.group(4)] if m.group(4) else None,
        )
        for m in obj.finditer(t)
    )
    return SceneSpec(objects=objects, background=bg, style=style)
