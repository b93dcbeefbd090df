"""Minimal prompt edits for hard negatives: the same prompt with one colour, shape or position changed.

The prompt-swap term reads an image with another prompt of the batch, which differs from the image's own prompt in
almost everything, so the fidelity head can pass it by noticing anything at all. An edited prompt differs in one
attribute only ("a red circle at the top" -> "a red square at the top"): to score it lower the model has to bind
that word to what it sees. The edit is made on the text with the world's public vocabulary (the words its prompts
use, as a lexicon would), never from the gold scene spec, so training still reads the human tables only.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from ..shapes.world import BACKGROUND_WORDS, COLOR_WORDS, POSITION_WORDS, SHAPE_WORDS, SIZE_WORDS, STYLE_WORDS

EDITABLE = {"color": COLOR_WORDS, "shape": SHAPE_WORDS, "position": POSITION_WORDS}
# Matched too, so that their words are not taken for editable ones ("sky blue" is a background, not a colour).
PROTECTED = {"background": BACKGROUND_WORDS, "style": STYLE_WORDS, "size": SIZE_WORDS}


@cache
def _lexicon() -> tuple[re.Pattern, dict[str, tuple[str, str]]]:
    meaning: dict[str, tuple[str, str]] = {}
    for kind, words in {**PROTECTED, **EDITABLE}.items():  # an editable reading wins a tie
        for value, phrases in words.items():
            for phrase in phrases:
                meaning[phrase] = (kind, value)
    alternation = "|".join(re.escape(p) for p in sorted(meaning, key=len, reverse=True))  # longest phrase first
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE), meaning


def _reattach_article(text: str, start: int) -> str:
    """Fix "a"/"an" right before position ``start`` for the word that now follows it."""
    head = re.search(r"\b(an?) $", text[:start], re.IGNORECASE)
    if head is None:
        return text
    article = "an" if text[start : start + 1].lower() in "aeiou" else "a"
    if head.group(1)[0].isupper():
        article = article.capitalize()
    return text[: head.start(1)] + article + " " + text[start:]


def edit_prompt(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """One attribute of ``text`` changed to another value of its kind -> (edited text, kind edited); the text is
    returned unchanged with kind "" when it names no colour, shape or position."""
    pattern, meaning = _lexicon()
    spans = [(m.start(), m.end(), *meaning[m.group(0).lower()]) for m in pattern.finditer(text)]
    spans = [s for s in spans if s[2] in EDITABLE]
    if not spans:
        return text, ""
    start, end, kind, value = spans[int(rng.integers(len(spans)))]
    others = [v for v in EDITABLE[kind] if v != value]
    new_value = others[int(rng.integers(len(others)))]
    phrases = EDITABLE[kind][new_value]
    phrase = phrases[int(rng.integers(len(phrases)))]
    return _reattach_article(text[:start] + phrase + text[end:], start), kind


def edited_texts(texts: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """One edit per prompt, reproducible per prompt index -> (edited texts, kinds)."""
    out, kinds = [], []
    for i, text in enumerate(texts):
        edited, kind = edit_prompt(text, np.random.default_rng([seed, 7_211, i]))
        out.append(edited)
        kinds.append(kind)
    return out, kinds
