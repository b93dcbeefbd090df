"""Scene specs sampled from the domain prior, and their natural-language descriptions with paraphrases.

``world="shifted"`` samples and words prompts the evaluation-only shifted way (``shifted.py``); the default,
``"standard"``, is the world every training set comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from . import shifted
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
WORLDS = ("standard", "shifted")


@dataclass(frozen=True)
class PromptMix:
    """What a world's prompts ask for: object counts, how often each optional attribute is named, and the
    distributions of the colours (given the shape) and backgrounds they name."""

    object_count_p: tuple[float, float, float]
    p_color: float
    p_size: float
    p_position: float
    p_background: float
    color_given_shape: np.ndarray
    background: np.ndarray


@cache
def prompt_mix(world: str = "standard") -> PromptMix:
    prior = domain_prior()
    if world == "standard":
        return PromptMix(
            OBJECT_COUNT_P, P_COLOR, P_SIZE, P_POSITION, P_BACKGROUND, prior.color_given_shape, prior.background
        )
    if world == "shifted":  # every colour-shape combination and every background equally likely
        return PromptMix(
            shifted.OBJECT_COUNT_P,
            shifted.P_COLOR,
            shifted.P_SIZE,
            shifted.P_POSITION,
            shifted.P_BACKGROUND,
            color_given_shape=np.full_like(prior.color_given_shape, 1 / len(COLORS)),
            background=np.full_like(prior.background, 1 / len(BACKGROUNDS)),
        )
    raise ValueError(f"unknown world {world!r}; expected one of {', '.join(WORLDS)}")


def sample_spec(rng: np.random.Generator, style_probability: float = 0.75, world: str = "standard") -> SceneSpec:
    prior, mix = domain_prior(), prompt_mix(world)
    n = int(rng.choice(3, p=mix.object_count_p)) + 1
    cells = rng.choice(len(POSITIONS), size=n, replace=False)
    names = list(POSITIONS)
    objects = []
    for i in range(n):
        shape = int(rng.choice(len(SHAPES), p=prior.shape))
        color = int(rng.choice(len(COLORS), p=mix.color_given_shape[shape]))
        objects.append(
            ObjectSpec(
                shape=SHAPES[shape],
                color=list(COLORS)[color] if rng.random() < mix.p_color else None,
                size=list(SIZES)[int(rng.integers(len(SIZES)))] if rng.random() < mix.p_size else None,
                position=names[int(cells[i])] if rng.random() < mix.p_position else None,
            )
        )
    background = None
    if rng.random() < mix.p_background:
        background = list(BACKGROUNDS)[int(rng.choice(len(BACKGROUNDS), p=mix.background))]
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


def describe(spec: SceneSpec, rng: np.random.Generator, world: str = "standard") -> str:
    """One paraphrase of the spec; different rngs give different wordings of the same scene."""
    if world == "shifted":
        return describe_shifted(spec, rng)
    if world != "standard":
        raise ValueError(f"unknown world {world!r}; expected one of {', '.join(WORLDS)}")
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


# --- the shifted world's wording (evaluation only; vocabulary and templates in shifted.py) ---------------------


def _shifted_word(rng: np.random.Generator, standard: dict, new: dict, key: str) -> str:
    return _pick(rng, standard[key] + new[key])


def describe_object_shifted(obj: ObjectSpec, rng: np.random.Generator) -> str:
    """Standard and unseen synonyms in one of three orders: "a giant ruby orb", "an orb, ruby, giant" (attributes
    after the noun) or "a giant orb in ruby"; the position follows after a comma."""
    size = obj.size and _shifted_word(rng, SIZE_WORDS, shifted.SIZE_WORDS, obj.size)
    color = obj.color and _shifted_word(rng, COLOR_WORDS, shifted.COLOR_WORDS, obj.color)
    shape = _shifted_word(rng, SHAPE_WORDS, shifted.SHAPE_WORDS, obj.shape)
    order = int(rng.integers(3))
    if order == 0:
        text = _article(" ".join(w for w in (size, color, shape) if w))
    elif order == 1:
        text = ", ".join([_article(shape), *(w for w in (color, size) if w)])
    else:
        text = _article(" ".join(w for w in (size, shape) if w)) + (f" in {color}" if color else "")
    if obj.position:
        text += ", " + _shifted_word(rng, POSITION_WORDS, shifted.POSITION_WORDS, obj.position)
    return text


def describe_shifted(spec: SceneSpec, rng: np.random.Generator) -> str:
    """One paraphrase of the spec in the shifted world's wording."""
    parts = [describe_object_shifted(o, rng) for o in spec.objects]
    body = parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + _pick(rng, shifted.OBJECT_GLUE) + parts[-1]
    if spec.background:
        bg = _shifted_word(rng, BACKGROUND_WORDS, shifted.BACKGROUND_WORDS, spec.background)
        body += _pick(rng, shifted.BACKGROUND_TEMPLATES).format(bg)
    if not spec.style:
        return _pick(rng, shifted.TEMPLATES).format(body)
    style = _shifted_word(rng, STYLE_WORDS, shifted.STYLE_WORDS, spec.style)
    return _pick(rng, shifted.STYLE_TEMPLATES).format(body=body, style=style)
