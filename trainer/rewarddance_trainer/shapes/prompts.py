"""Scene specs sampled from the domain prior, and their natural-language descriptions with paraphrases."""

from __future__ import annotations

import numpy as np

from .world import (
    BACKGROUND_WORDS,
    BACKGROUNDS,
    COLOR_WORDS,
    COLORS,
    POSITION_WORDS,
    POSITIONS,
    SHAPE_WORDS,
    SHAPES,
    SIZE_WORDS,
    SIZES,
    STYLE_WORDS,
    STYLES,
    ObjectSpec,
    SceneSpec,
    domain_prior,
)

# How often a prompt names each optional attribute.
P_COLOR, P_SIZE, P_POSITION, P_BACKGROUND = 0.85, 0.6, 0.6, 0.25
OBJECT_COUNT_P = (0.45, 0.35, 0.2)  # 1, 2 or 3 objects


def sample_spec(rng: np.random.Generator, style_probability: float = 0.75) -> SceneSpec:
    prior = domain_prior()
    n = int(rng.choice(3, p=OBJECT_COUNT_P)) + 1
    cells = rng.choice(len(POSITIONS), size=n, replace=False)
    names = list(POSITIONS)
    objects = []
    for i in range(n):
        shape = int(rng.choice(len(SHAPES), p=prior.shape))
        color = int(rng.choice(len(COLORS), p=prior.color_given_shape[shape]))
        objects.append(
            ObjectSpec(
                shape=SHAPES[shape],
                color=list(COLORS)[color] if rng.random() < P_COLOR else None,
                size=list(SIZES)[int(rng.integers(len(SIZES)))] if rng.random() < P_SIZE else None,
                position=names[int(cells[i])] if rng.random() < P_POSITION else None,
            )
        )
    background = None
    if rng.random() < P_BACKGROUND:
        background = list(BACKGROUNDS)[int(rng.choice(len(BACKGROUNDS), p=prior.background))]
    style = STYLES[int(rng.integers(len(STYLES)))] if rng.random() < style_probability else None
    return SceneSpec(objects=tuple(objects), background=background, style=style)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def describe_object(obj: ObjectSpec, rng: np.random.Generator) -> str:
    words = []
    if obj.size:
        words.append(_pick(rng, SIZE_WORDS[obj.size]))
    if obj.color:
        words.append(_pick(rng, COLOR_WORDS[obj.color]))
    words.append(_pick(rng, SHAPE_WORDS[obj.shape]))
    text = _article(" ".join(words))
    if obj.position:
        text += " " + _pick(rng, POSITION_WORDS[obj.position])
    return text


def _join(parts: list[str], rng: np.random.Generator) -> str:
    if len(parts) == 1:
        return parts[0]
    glue = _pick(rng, (" and ", ", plus ", " with "))
    return ", ".join(parts[:-1]) + glue + parts[-1]


def describe(spec: SceneSpec, rng: np.random.Generator) -> str:
    """One paraphrase of the spec; different rngs give different wordings of the same scene."""
    body = _join([describe_object(o, rng) for o in spec.objects], rng)
    if spec.background:
        bg = _pick(rng, BACKGROUND_WORDS[spec.background])
        body += _pick(rng, (" on a {} background", " against a {} backdrop")).format(bg)
    if not spec.style:
        return _pick(rng, ("{}", "an image of {}", "a picture showing {}", "there is {}")).format(body)
    style = _pick(rng, STYLE_WORDS[spec.style])
    template = (
        "{body}, {style}",
        "{style}: {body}",
        "{body}, rendered as {style}",
        "{body} in {style} style",
    )
    return _pick(rng, template).format(body=body, style=style)
