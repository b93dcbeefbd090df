"""Candidate images for a prompt: the faithful scene, then copies with controlled errors.

``realize`` fills the attributes the prompt leaves free from the domain prior and places objects on their
grid anchors; ``perturb`` applies named errors (the same names are recorded with each image).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .world import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    STYLES,
    Scene,
    SceneObject,
    SceneSpec,
    anchor,
    domain_prior,
    position_of,
)

PERTURBATIONS = (
    "wrong_color",
    "wrong_shape",
    "wrong_size",
    "wrong_position",
    "missing_object",
    "extra_object",
    "wrong_background",
    "style_drift",
    "wrong_style",
    "bad_placement",
    "rare_combo",
)
PERTURBATION_P = np.array([0.11, 0.09, 0.07, 0.09, 0.06, 0.06, 0.03, 0.21, 0.09, 0.12, 0.07])
N_ERRORS_P = (0.2, 0.35, 0.3, 0.15)  # 0..3 errors per candidate


def _choice(rng: np.random.Generator, options: list[str] | tuple[str, ...], exclude: str | None = None) -> str:
    pool = [o for o in options if o != exclude]
    return pool[int(rng.integers(len(pool)))]


def _placed(rng: np.random.Generator, position: str, **attrs) -> SceneObject:
    x, y = anchor(position)
    return SceneObject(
        x=x + float(rng.uniform(-0.04, 0.04)),
        y=y + float(rng.uniform(-0.04, 0.04)),
        scale=float(rng.uniform(0.92, 1.08)),
        rotation=float(rng.uniform(-10, 10)),
        **attrs,
    )


def realize(spec: SceneSpec, rng: np.random.Generator) -> Scene:
    """The faithful rendering of a spec, free attributes drawn from the domain prior."""
    prior = domain_prior()
    taken = {o.position for o in spec.objects if o.position}
    free = [p for p in POSITIONS if p not in taken]
    rng.shuffle(free)
    objects = []
    for i, o in enumerate(spec.objects):
        color = o.color or list(COLORS)[int(rng.choice(len(COLORS), p=prior.color_given_shape[SHAPES.index(o.shape)]))]
        size = o.size or _choice(rng, list(SIZES))
        position = o.position or free.pop()
        objects.append(_placed(rng, position, shape=o.shape, color=color, size=size, source=i))
    background = spec.background or list(BACKGROUNDS)[int(rng.choice(len(BACKGROUNDS), p=prior.background))]
    style = spec.style or STYLES[int(rng.choice(len(STYLES), p=prior.style))]
    return Scene(objects=tuple(objects), background=background, style=style)


def _edit_object(scene: Scene, rng: np.random.Generator, **change) -> Scene:
    objs = list(scene.objects)
    if not objs:
        return scene
    i = int(rng.integers(len(objs)))
    objs[i] = replace(objs[i], **{k: f(objs[i]) for k, f in change.items()})
    return scene.with_objects(objs)


def _free_position(scene: Scene, rng: np.random.Generator) -> str:
    used = {position_of(o.x, o.y) for o in scene.objects}
    return _choice(rng, [p for p in POSITIONS if p not in used] or list(POSITIONS))


def _bad_placement(scene: Scene, rng: np.random.Generator) -> Scene:
    objs = list(scene.objects)
    kind = _choice(rng, ["cutoff", "overlap", "cramped"])
    if kind == "overlap" and len(objs) >= 2:
        i, j = rng.choice(len(objs), size=2, replace=False)
        objs[j] = replace(objs[j], x=objs[i].x + float(rng.uniform(-0.06, 0.06)), y=objs[i].y + 0.04)
    elif kind == "cramped":
        cx, cy = (float(v) for v in rng.choice([0.16, 0.84], size=2))
        objs = [replace(o, x=cx + (o.x - 0.5) * 0.25, y=cy + (o.y - 0.5) * 0.25) for o in objs]
    elif objs:
        i = int(rng.integers(len(objs)))
        edge = float(rng.uniform(-0.02, 0.08))
        if abs(objs[i].x - 0.5) >= abs(objs[i].y - 0.5):
            objs[i] = replace(objs[i], x=edge if objs[i].x < 0.5 else 1 - edge)
        else:
            objs[i] = replace(objs[i], y=edge if objs[i].y < 0.5 else 1 - edge)
    return scene.with_objects(objs)


def _rare_combo(scene: Scene, spec: SceneSpec, rng: np.random.Generator) -> Scene:
    """Rarest colour for objects whose colour the prompt leaves free; a rare background when it is free."""
    prior = domain_prior()
    colors = list(COLORS)
    objs = list(scene.objects)
    free = [i for i, o in enumerate(objs) if o.source is None or spec.objects[o.source].color is None]
    if not free and objs:
        free = [int(rng.integers(len(objs)))]  # every colour is named: a rare colour is then also a wrong one
    for i in free:
        rarest = colors[int(np.argmin(prior.color_given_shape[SHAPES.index(objs[i].shape)]))]
        objs[i] = replace(objs[i], color=rarest)
    background = scene.background
    if spec.background is None:
        background = list(BACKGROUNDS)[int(np.argmin(prior.background))]
    return replace(scene.with_objects(objs), background=background)


def perturb(scene: Scene, spec: SceneSpec, kind: str, rng: np.random.Generator) -> Scene:
    if kind == "wrong_color":
        return _edit_object(scene, rng, color=lambda o: _choice(rng, list(COLORS), o.color))
    if kind == "wrong_shape":
        return _edit_object(scene, rng, shape=lambda o: _choice(rng, SHAPES, o.shape))
    if kind == "wrong_size":
        return _edit_object(scene, rng, size=lambda o: _choice(rng, list(SIZES), o.size))
    if kind == "wrong_position":
        target = _free_position(scene, rng)
        x, y = anchor(target)
        return _edit_object(scene, rng, x=lambda o: x, y=lambda o: y)
    if kind == "missing_object":
        if len(scene.objects) < 2:
            return perturb(scene, spec, "wrong_shape", rng)
        drop = int(rng.integers(len(scene.objects)))
        return scene.with_objects([o for i, o in enumerate(scene.objects) if i != drop])
    if kind == "extra_object":
        extra = _placed(
            rng,
            _free_position(scene, rng),
            shape=_choice(rng, SHAPES),
            color=_choice(rng, list(COLORS)),
            size=_choice(rng, list(SIZES)),
        )
        return scene.with_objects([*scene.objects, extra])
    if kind == "wrong_background":
        return replace(scene, background=_choice(rng, list(BACKGROUNDS), scene.background))
    if kind == "style_drift":
        return replace(scene, style_mix=_choice(rng, STYLES, scene.style), style_weight=float(rng.uniform(0.15, 0.9)))
    if kind == "wrong_style":
        return replace(scene, style=_choice(rng, STYLES, scene.style))
    if kind == "bad_placement":
        return _bad_placement(scene, rng)
    if kind == "rare_combo":
        return _rare_combo(scene, spec, rng)
    raise ValueError(f"unknown perturbation {kind!r}")


def candidates(spec: SceneSpec, n: int, rng: np.random.Generator) -> list[Scene]:
    """n candidate scenes; the first is always faithful so every prompt has a correct image."""
    out = []
    for k in range(n):
        scene = realize(spec, rng)
        n_errors = 0 if k == 0 else int(rng.choice(len(N_ERRORS_P), p=N_ERRORS_P))
        kinds = rng.choice(len(PERTURBATIONS), size=n_errors, replace=False, p=PERTURBATION_P)
        for kind in sorted(int(i) for i in kinds):
            scene = perturb(scene, spec, PERTURBATIONS[kind], rng)
        out.append(replace(scene, perturbations=tuple(PERTURBATIONS[int(i)] for i in sorted(kinds))))
    return out
