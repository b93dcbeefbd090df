"""The shifted world: an evaluation-only prompt distribution (reward models are never trained on it).

It measures how a reward model trained on the standard world generalises under distribution shift. Scenes,
rendering, gold scores and raters are the standard world's: the same 6 shapes, 8 colours, 3 sizes, 9 positions,
5 backgrounds and 7 styles, and novelty stays surprisal under the fixed standard ``domain_prior()``. Only what
the prompts ask for and how they say it changes:

- wording: sentence templates, glue words and attribute orders the standard world never uses ("draw ...",
  "I want ... please", "... — in the style of ...", "an orb, ruby, giant, in the northwest corner"), and
  synonyms it never uses, drawn alongside the standard ones;
- mix: more objects per scene (half the scenes have three), every colour-shape combination and every background
  equally likely (the standard world asks for some combinations far more often than others), colours,
  positions and backgrounds named more often, sizes less often.

Every phrase here is absent from the standard vocabulary in ``world.py`` (tests/test_shifted_world.py checks it).
"""

from __future__ import annotations

# Prompt mix.
OBJECT_COUNT_P = (0.2, 0.3, 0.5)  # 1, 2 or 3 objects
P_COLOR, P_SIZE, P_POSITION, P_BACKGROUND = 0.9, 0.5, 0.75, 0.5

# Synonyms the standard world never uses; the shifted world picks from these and the standard ones together.
SHAPE_WORDS = {
    "circle": ("orb", "round blob"),
    "square": ("block", "four-sided tile"),
    "triangle": ("three-sided shape", "wedge"),
    "star": ("five-point star", "starburst"),
    "hexagon": ("six-sided shape", "honeycomb cell"),
    "diamond": ("lozenge", "rhomboid"),
}
COLOR_WORDS = {
    "red": ("ruby", "cherry"),
    "orange": ("amber", "apricot"),
    "yellow": ("lemon", "canary"),
    "green": ("jade", "grassy"),
    "cyan": ("aqua", "aquamarine"),
    "blue": ("sapphire", "ultramarine"),
    "purple": ("plum", "amethyst"),
    "pink": ("fuchsia", "bubblegum"),
}
SIZE_WORDS = {
    "small": ("miniature", "teeny"),
    "medium": ("average-sized", "regular-sized"),
    "large": ("giant", "oversized"),
}
POSITION_WORDS = {
    "top left": ("in the northwest corner", "high on the left"),
    "top": ("along the top", "high up in the middle"),
    "top right": ("in the northeast corner", "high on the right"),
    "left": ("on the left-hand side", "at mid-left"),
    "center": ("dead center", "centered"),
    "right": ("on the right-hand side", "at mid-right"),
    "bottom left": ("in the southwest corner", "low on the left"),
    "bottom": ("along the bottom", "low down in the middle"),
    "bottom right": ("in the southeast corner", "low on the right"),
}
BACKGROUND_WORDS = {
    "white": ("snow-white", "ivory"),
    "gray": ("slate", "pewter"),
    "beige": ("sandy", "oatmeal"),
    "sky": ("pale blue", "powder blue"),
    "black": ("midnight", "pitch-black"),
}
STYLE_WORDS = {
    "flat": ("vector clip art", "clean vector shapes"),
    "watercolor": ("aquarelle", "wet-on-wet wash"),
    "sketch": ("graphite drawing", "rough pencil doodle"),
    "pixel-art": ("16-bit sprite", "pixelated game art"),
    "neon": ("fluorescent tubes", "electric glow"),
    "oil": ("oil on canvas", "old-master painting"),
    "photo": ("camera snapshot", "lifelike photography"),
}

# Glue between objects (the ones before the last are separated by "; ") and around the background.
OBJECT_GLUE = ("; and ", "; also ", " together with ")
BACKGROUND_TEMPLATES = ("; the background is {}", " over a {} canvas")
# Sentence templates; each holds a marker that no standard prompt contains (see MARKERS).
TEMPLATES = ("draw {}", "I want {} please", "show me {}", "could you make {}?")
STYLE_TEMPLATES = (
    "draw {body} — in the style of {style}",
    "I want {body} please, done as {style}",
    "{body} — in the style of {style}",
    "show me {body} as {style}",
    "could you make {body} in the look of {style}?",
)
MARKERS = ("draw ", "I want ", " please", "show me ", "could you ", " — in the style of ")
