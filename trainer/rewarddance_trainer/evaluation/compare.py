"""Compare generators A and B on the same prompts and seeds: every metric per side, B - A, bootstrap intervals
over prompts, the simulated A/B, and the pair set for the voting page.

Per prompt (mean over its ``n`` samples): the oracle's gold components and utility, the served reward's components
and R (through the serving pipeline, as a client would get them), the encoder score (CLIPScore's formula with our
encoder) and the patch diversity (LPIPS-style). Per side as a set: FID and KID against faithful renders of the same
prompts, with our encoder's features. See ``features.py`` for what each metric is.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rewarddance.ab.pairs import Pair, PairSet
from rewarddance.ab.stats import bootstrap_interval
from rewarddance.components.base import COMPONENTS

from .features import EncoderMetrics, encoder_score, fid_features, frechet_distance, kernel_distance, patch_diversity
from .prompts import eval_prompts, reference_renders
from .simulated import simulated_ab

UTILITY_WEIGHTS = np.array([0.40, 0.25, 0.25, 0.10])  # the shapes world's utility (DESIGN.md section 1)
SIDES = ("a", "b")


@dataclass(frozen=True)
class CompareConfig:
    prompts: int = 200
    n: int = 4  # samples per prompt and side; sample k of A and of B start from the same noise
    steps: int = 25  # sampler steps
    guidance: float = 3.0
    seed: int = 0
    split: str = "test"  # dataset split the prompts come from (with --data)
    raters_per_pair: int = 3  # simulated raters per (A, B) pair
    bootstrap: int = 2000  # resamples of prompts for the per-prompt metrics
    set_bootstrap: int = 200  # resamples for FID / KID (each recomputes the statistic)
    batch_prompts: int = 16  # prompts per sampling batch


@dataclass
class Side:
    path: str
    images: np.ndarray  # (P * n, s, s, 3) uint8, prompt-major
    per_image: dict[str, np.ndarray]  # metric -> (P * n,)
    per_prompt: dict[str, np.ndarray]  # metric -> (P,)
    fid_kid: dict[str, float]
    features: np.ndarray  # FID features (P * n, d)
    seconds_generating: float


def generate(
    path: Path, prompts: list[str], cfg: CompareConfig, progress: bool = True, cache: Path | None = None
) -> tuple[np.ndarray, float]:
    """Samples of one generator; batch i of prompts uses seed ``cfg.seed * 100_003 + i`` on both sides.

    With ``cache`` (a .npz path) the samples are kept there and reused by a rerun with the same generator, prompts
    and sampling settings: sampling is the long part, so an interrupted comparison resumes after it."""
    from ..generator.load import generate_images, load_generator

    key = json.dumps([str(Path(path).resolve()), prompts, cfg.n, cfg.steps, cfg.guidance, cfg.seed, cfg.batch_prompts])
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                return stored["images"], float(stored["seconds"])
    pipe = load_generator(path)
    started = time.perf_counter()
    out = []
    batches = range(0, len(prompts), cfg.batch_prompts)
    for i, start in enumerate(tqdm(batches, desc=f"sampling {Path(path).name}", disable=not progress)):
        chunk = prompts[start : start + cfg.batch_prompts]
        out.append(generate_images(pipe, chunk, cfg.n, cfg.steps, cfg.guidance, cfg.seed * 100_003 + i, len(chunk)))
    images, seconds = np.concatenate(out), time.perf_counter() - started
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache.with_suffix(".tmp"), "wb") as f:
            np.savez(f, key=key, images=images, seconds=seconds)
        cache.with_suffix(".tmp").replace(cache)
    return images, seconds


def served_scores(repo: Path, model: str | None, images: np.ndarray, texts: list[str]) -> np.ndarray:
    """(n, 5) served components and R, through the serving pipeline (images resized as the gateway does)."""
    from rewarddance.preprocess import load_pixels
    from rewarddance.repository import REWARD_KIND, ModelRepository
    from rewarddance.scoring.pipeline import RewardPipeline

    if model is None:
        rewards = ModelRepository(repo).models(kind=REWARD_KIND)
        if not rewards:
            raise ValueError(f"no reward model in {repo} (run `rewarddance bootstrap --repo {repo}`)")
        model = rewards[0]
    pipeline = RewardPipeline(repo, model).load()
    pixels = load_pixels(list(images), pipeline.image_size)
    out = []
    for i in range(0, len(pixels), 64):
        s = pipeline.score(pixels[i : i + 64], texts[i : i + 64])
        out.append(np.concatenate([s.components, s.reward[:, None]], axis=1))
    return np.concatenate(out)


def per_prompt_mean(values: np.ndarray, n: int) -> np.ndarray:
    return values.reshape(-1, n).mean(1)


def paired(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> dict:
    """Means of A and B over prompts, B - A, and 95% bootstrap intervals (prompts resampled, A and B together)."""
    n = len(a)
    mean = lambda x: lambda i: float(x[i].mean())  # noqa: E731
    return {
        "a": float(a.mean()),
        "a_ci95": list(bootstrap_interval(mean(a), n, n_boot, seed)),
        "b": float(b.mean()),
        "b_ci95": list(bootstrap_interval(mean(b), n, n_boot, seed)),
        "diff": float(b.mean() - a.mean()),
        "diff_ci95": list(bootstrap_interval(mean(b - a), n, n_boot, seed)),
    }


def set_metric(
    statistic,
    real: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    point: tuple[float, float],
    n: int,
    n_boot: int,
    seed: int,
) -> dict:
    """A set-level metric (FID, KID): torchmetrics' point values, intervals from recomputing ``statistic`` on
    resampled prompts (real and generated rows of the same prompts)."""
    prompts = len(real) // n

    def rows(i: np.ndarray) -> np.ndarray:
        return (i[:, None] * n + np.arange(n)).ravel()

    draws = []
    rng = np.random.default_rng([seed, 99])
    for _ in range(n_boot):
        r = rows(rng.integers(0, prompts, prompts))
        draws.append((statistic(real[r], a[r]), statistic(real[r], b[r])))
    draws = np.array(draws)
    ci = lambda x: [float(v) for v in np.percentile(x, [2.5, 97.5])]  # noqa: E731
    everything = rows(np.arange(prompts))
    return {
        "a": point[0],
        "a_ci95": ci(draws[:, 0]),
        "b": point[1],
        "b_ci95": ci(draws[:, 1]),
        "diff": point[1] - point[0],
        "diff_ci95": ci(draws[:, 1] - draws[:, 0]),
        "numpy_a": statistic(real[everything], a[everything]),  # the interval's statistic on the full set
        "numpy_b": statistic(real[everything], b[everything]),
    }


def measure_side(path, images, seconds, texts, real, metrics, oracle, specs, repo, model, cfg) -> Side:
    from ..generator.quality import fid_kid

    per_image: dict[str, np.ndarray] = {}
    gold = oracle.score(list(images), specs)
    for i, c in enumerate(COMPONENTS):
        per_image[f"oracle_{c}"] = gold[:, i]
    per_image["oracle_utility"] = gold @ UTILITY_WEIGHTS
    served = served_scores(repo, model, images, texts)
    for i, c in enumerate(COMPONENTS):
        per_image[f"reward_{c}"] = served[:, i]
    per_image["reward_R"] = served[:, 4]
    pooled, tokens = metrics.images(images)
    per_image["encoder_score"] = encoder_score(pooled, metrics.texts(texts))
    per_prompt = {k: per_prompt_mean(v, cfg.n) for k, v in per_image.items()}
    per_prompt["patch_diversity"] = patch_diversity(tokens, cfg.n)
    torch.manual_seed(cfg.seed)  # KID's random subsets: the same draw for both sides and every rerun
    point = fid_kid(real, images, metrics.fid_features, subset_size=min(100, len(images)))
    return Side(str(path), images, per_image, per_prompt, point, fid_features(metrics, images), seconds)


def write_pair_set(root: Path, name: str, prompts: list[str], sides: dict[str, Side], n: int) -> PairSet:
    """Images as ``<side>/<prompt>_<sample>.png`` and pairs.json (sample k of A against sample k of B)."""
    from PIL import Image

    pairs = []
    for p, text in enumerate(prompts):
        for k in range(n):
            row, names = p * n + k, {}
            for side, result in sides.items():
                rel = f"{side}/{p:04d}_{k}.png"
                (root / side).mkdir(parents=True, exist_ok=True)
                Image.fromarray(result.images[row]).save(root / rel)
                names[side] = rel
            ra, rb = (float(sides[s].per_image["reward_R"][row]) for s in SIDES)
            pairs.append(Pair(f"{p:04d}-{k}", text, names["a"], names["b"], ra, rb))
    pair_set = PairSet(root.resolve(), name, sides["a"].path, sides["b"].path, tuple(pairs))
    pair_set.write()
    return pair_set


def compare_generators(
    a: Path,
    b: Path,
    encoder_run: Path,
    repo: Path,
    cfg: CompareConfig,
    name: str,
    pairs_out: Path | None = None,
    data: Path | None = None,
    model: str | None = None,
    progress: bool = True,
) -> dict:
    """Everything of the comparison as one JSON-able dict (see the module docstring)."""
    from ..encoders.model import Encoder
    from ..oracle.oracle import Oracle
    from ..oracle.parse import parse_prompt

    started = time.perf_counter()
    prompts = eval_prompts(cfg.prompts, data, cfg.split, cfg.seed)
    texts = [t for t in prompts for _ in range(cfg.n)]
    specs = [parse_prompt(t) for t in texts]
    caches = {side: Path(pairs_out) / ".samples" / f"{side}.npz" if pairs_out else None for side in SIDES}
    samples = {
        side: generate(path, prompts, cfg, progress, caches[side]) for side, path in zip(SIDES, (a, b), strict=True)
    }
    if samples["a"][0].shape != samples["b"][0].shape:
        raise ValueError(f"A and B sample at different sizes: {samples['a'][0].shape} vs {samples['b'][0].shape}")
    real = reference_renders(prompts, cfg.n, samples["a"][0].shape[1], cfg.seed)
    metrics, oracle = EncoderMetrics(Encoder.load(encoder_run)), Oracle.load()
    sides = {
        side: measure_side(path, *samples[side], texts, real, metrics, oracle, specs, repo, model, cfg)
        for side, path in zip(SIDES, (a, b), strict=True)
    }

    per_prompt = {
        key: paired(sides["a"].per_prompt[key], sides["b"].per_prompt[key], cfg.bootstrap, cfg.seed)
        for key in sides["a"].per_prompt
    }
    real_features = fid_features(metrics, real)
    fa, fb = sides["a"].features, sides["b"].features
    set_level = {
        "fid": set_metric(
            frechet_distance,
            real_features,
            fa,
            fb,
            (sides["a"].fid_kid["fid"], sides["b"].fid_kid["fid"]),
            cfg.n,
            cfg.set_bootstrap,
            cfg.seed,
        ),
        "kid": set_metric(
            kernel_distance,
            real_features,
            fa,
            fb,
            (sides["a"].fid_kid["kid_mean"], sides["b"].fid_kid["kid_mean"]),
            cfg.n,
            cfg.set_bootstrap,
            cfg.seed,
        ),
    }
    ab = simulated_ab(
        sides["a"].per_image["oracle_utility"],
        sides["b"].per_image["oracle_utility"],
        sides["a"].per_image["reward_R"],
        sides["b"].per_image["reward_R"],
        cfg.n,
        cfg.raters_per_pair,
        cfg.bootstrap,
        cfg.seed,
    )
    pair_set = write_pair_set(Path(pairs_out), name, prompts, sides, cfg.n) if pairs_out else None
    return {
        "name": name,
        "a": str(a),
        "b": str(b),
        "config": asdict(cfg),
        "encoder": str(encoder_run),
        "repo": str(repo),
        "data": str(data) if data else None,
        "prompts": prompts,
        "metrics": per_prompt | set_level,
        "simulated_ab": ab,
        "real_vs_real_fid": frechet_distance(real_features[::2], real_features[1::2]),
        "fid_kid_std": {s: {"kid_std": sides[s].fid_kid["kid_std"]} for s in SIDES},
        "seconds_generating": {s: round(sides[s].seconds_generating, 1) for s in SIDES},
        "seconds_total": round(time.perf_counter() - started, 1),
        "pair_set": str(pair_set.root) if pair_set else None,
    }
