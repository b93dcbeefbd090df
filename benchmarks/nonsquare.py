"""Non-square uploads: centre crop or pad? The default model scored through the serving pipeline on non-square
versions of the shapes world's held-out renders, each way, against the square originals.

Each test-split render (64x64) is widened (or heightened) to 96x64 (64x96) by extending its own border (edge
padding) at a seeded offset, so the scene sits off-centre in a non-square picture the way an upload's subject may.
``crop`` then cuts the long side back to the middle square (part of the scene can fall outside); ``pad`` shrinks the
long side to 64 and pads the short one (nothing is lost, everything is smaller). Scores: Spearman of R with the
weighted mean human rating (and per component), pair accuracy on decided pairs, Spearman of R with the gold
utility (the simulator's ground truth).

    python benchmarks/nonsquare.py --data data/shapes20k --prompts 300
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result

from rewarddance.components.base import COMPONENTS
from rewarddance.components.composite import DEFAULT_WEIGHTS
from rewarddance.preprocess import RESIZE_MODES, square_pixels
from rewarddance.repository import ModelRepository
from rewarddance.scoring.pipeline import RewardPipeline

BATCH = 64
SHAPES = {"wide 96x64": (96, 64), "tall 64x96": (64, 96)}


def non_square(render: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """``render`` (s, s, 3) inside a (height, width) picture at a random offset, the rest its own edge extended."""
    s = render.shape[0]
    left = int(rng.integers(0, width - s + 1))
    top = int(rng.integers(0, height - s + 1))
    return np.pad(render, ((top, height - s - top), (left, width - s - left), (0, 0)), mode="edge")


def score(pipeline: RewardPipeline, pixels: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    components, reward = [], []
    for start in range(0, len(pixels), BATCH):
        out = pipeline.score(pixels[start : start + BATCH], texts[start : start + BATCH], use_cache=True)
        components.append(out.components)
        reward.append(out.reward)
    return np.concatenate(components), np.concatenate(reward)


def default_repository(work: Path) -> Path:
    """The default model exported into ``work`` (what ``make run`` serves)."""
    from rewarddance_exporter.bootstrap import DEFAULT_MODEL
    from rewarddance_exporter.export import ExportOptions
    from rewarddance_exporter.pixel_export import export_pixel_run

    repo = work / "model_repository"
    if not ModelRepository(repo).models(kind="reward"):
        export_pixel_run(DEFAULT_MODEL, repo, ExportOptions(), log=lambda _: None)
    return repo


def main() -> int:
    from rewarddance_trainer.pixel_reward import evaluate
    from rewarddance_trainer.pixel_reward.data import Tables
    from rewarddance_trainer.pixel_reward.train import fixed_draw

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/shapes20k"))
    parser.add_argument("--repo", type=Path, default=None, help="model repository (default: export the default model)")
    parser.add_argument("--model", default=None, help="reward model name (default: the repository's only one)")
    parser.add_argument("--prompts", type=int, default=300, help="test-split prompts (fixed draw; 0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        repo = ModelRepository(args.repo or default_repository(Path(tmp)))
        name = args.model or repo.models(kind="reward")[0]
        pipeline = RewardPipeline(repo, name).load()
        size = pipeline.image_size
        tables = Tables.load(args.data)
        rows = tables.image_rows_of(fixed_draw(tables.prompt_rows("test"), args.prompts, 0))
        images = tables.images.iloc[rows]
        texts = images.text.tolist()
        renders = [np.asarray(Image.open(args.data / p).convert("RGB")) for p in tqdm(images.path, desc="renders")]
        weights = np.array([DEFAULT_WEIGHTS[c] for c in COMPONENTS])

        def measure(pictures: list[np.ndarray], resize: str) -> dict:
            pixels = np.stack([square_pixels(Image.fromarray(p), size, resize) for p in pictures])
            components, reward = score(pipeline, pixels, texts)
            out = evaluate.metrics(tables, rows, components, reward, weights)
            gold = evaluate.gold_metrics(args.data, images.image_id, components, reward)
            return {k: float(v) for k, v in out.items()} | {"gold_spearman_reward": float(gold["reward"])}

        results = {"square (original)": {"crop": measure(renders, "crop")}}
        for label, (width, height) in SHAPES.items():
            rng = np.random.default_rng([args.seed, width, height])
            pictures = [non_square(r, width, height, rng) for r in renders]
            results[label] = {mode: measure(pictures, mode) for mode in tqdm(RESIZE_MODES, desc=label)}
    payload = {
        "benchmark": "nonsquare",
        "model": {"name": name, "version": pipeline.version},
        "data": str(args.data),
        "images": len(rows),
        "prompts": len(np.unique(images.prompt_row)),
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "command": command(),
        "loadavg": os.getloadavg(),
    }
    headers = ["pictures", "resize", "Spearman R vs ratings", "R vs gold", "pair accuracy", "fidelity", "composition"]
    metrics = ("spearman_reward", "gold_spearman_reward", "pair_accuracy", "spearman_fidelity", "spearman_composition")
    table = [
        [label, mode, *(f"{m[k]:.4f}" for k in metrics)]
        for label, modes in results.items()
        for mode, m in modes.items()
    ]
    text = markdown_table(headers, table)
    print(text)
    markdown = (
        f"# Non-square uploads: crop vs pad\n\n{name} v{pipeline.version} through the serving pipeline, "
        f"{len(rows)} test-split images of {args.data} ({payload['prompts']} prompts); non-square pictures are "
        f"the renders edge-padded at a seeded offset (seed {args.seed}).\n\n{text}\n\n"
        f"Command: `{payload['command']}`; load average {payload['loadavg'][0]:.1f}; {payload['seconds']} s."
    )
    write_result("nonsquare", payload, markdown, args.out)
    plot(results, args.out / "nonsquare.png")
    return 0


def plot(results: dict, path: Path) -> None:
    labels = [f"{label}\n{mode}" for label, modes in results.items() for mode in modes]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(labels))
    bars = {"spearman_reward": "vs ratings", "gold_spearman_reward": "vs gold"}
    for offset, (key, title) in zip((-0.2, 0.2), bars.items(), strict=True):
        values = [m[key] for modes in results.values() for m in modes.values()]
        ax.bar(x + offset, values, width=0.4, label=f"Spearman R {title}")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Non-square uploads: centre crop vs pad (default model)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
