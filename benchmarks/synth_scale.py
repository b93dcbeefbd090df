"""Shapes-world simulator throughput on this machine, and the projected time and disk for the full size.

Renders the same dataset with 1 and with all workers (same seed, so the same images), measures images/s and
bytes per image on disk, and projects the seed's full size (10,000 prompts x 50 images = 500,000 images).

    python benchmarks/synth_scale.py --prompts 200 --images-per-prompt 25
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.shapes.synth import SynthConfig, synthesize


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the render workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(config: SynthConfig, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        started, cpu_started = time.perf_counter(), cpu_seconds()
        card = synthesize(out, config, workers=workers, progress=True)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
        images = card["counts"]["images"]
        return {
            "cpu_seconds": round(cpu, 2),
            "images_per_cpu_second": round(images / cpu, 1),
            "workers": workers,
            "images": images,
            "render_seconds": card["run"]["seconds"],
            "wall_seconds": round(wall, 2),
            "images_per_second": round(images / wall, 1),
            "bytes_per_image": round(disk_bytes(out) / images, 1),
            "image_file_bytes": round(sum(p.stat().st_size for p in (out / "images").rglob("*.png")) / images, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--images-per-prompt", type=int, default=25)
    parser.add_argument("--full-prompts", type=int, default=10_000)
    parser.add_argument("--full-images-per-prompt", type=int, default=50)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    config = SynthConfig(n_prompts=args.prompts, images_per_prompt=args.images_per_prompt, chunk_prompts=10)
    worker_counts = sorted({1, os.cpu_count() or 1})
    rows = [measure(config, w) for w in worker_counts]
    best = max(rows, key=lambda r: r["images_per_second"])
    full_images = args.full_prompts * args.full_images_per_prompt
    cores = os.cpu_count() or 1
    # CPU time per image does not depend on what else the machine runs; wall time does. Project both.
    per_cpu = min(r["images_per_cpu_second"] for r in rows)
    projection = {
        "images": full_images,
        "minutes": round(full_images / best["images_per_second"] / 60, 1),
        "minutes_if_all_cores_free": round(full_images / (per_cpu * cores) / 60, 1),
        "disk_gb": round(full_images * best["bytes_per_image"] / 1e9, 2),
        "workers": best["workers"],
    }
    payload = {
        "machine": machine(),
        "command": command(),
        "config": config.to_json(),
        "runs": rows,
        "full_size_projection": projection,
        "speedup": round(rows[-1]["images_per_second"] / rows[0]["images_per_second"], 2),
    }
    table = markdown_table(
        [
            "workers",
            "images",
            "wall s",
            "images/s",
            "CPU s",
            "images/CPU-s",
            "bytes/image (all files)",
            "PNG bytes/image",
        ],
        [
            [
                r["workers"],
                r["images"],
                r["wall_seconds"],
                r["images_per_second"],
                r["cpu_seconds"],
                r["images_per_cpu_second"],
                r["bytes_per_image"],
                r["image_file_bytes"],
            ]
            for r in rows
        ],
    )
    md = (
        f"# Shapes-world simulator throughput\n\nMachine: {payload['machine']}\n\nCommand: `{payload['command']}`"
        f"\n\n{table}\n\nSpeed-up {rows[-1]['workers']} vs 1 worker(s): {payload['speedup']}x.\n\n"
        f"Projected full size ({full_images:,} images, {best['workers']} workers): "
        f"**{projection['minutes']} min** at the measured wall-clock rate "
        f"({projection['minutes_if_all_cores_free']} min from CPU time per image if all {cores} cores are free), "
        f"**{projection['disk_gb']} GB** on disk. Other load on the machine during the run slows the wall-clock "
        "figures, not the CPU-time ones.\n"
    )
    write_result("synth_scale", payload, md, args.out_dir)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([str(r["workers"]) for r in rows], [r["images_per_second"] for r in rows], color="#4878a8")
    ax.set_xlabel("worker processes")
    ax.set_ylabel("images / s (render + PNG + tables)")
    ax.set_title(f"shapes world, {config.images_per_prompt} img/prompt; full size ~{projection['minutes']} min")
    fig.tight_layout()
    fig.savefig(args.out_dir / "synth_scale.png", dpi=120)
    print(md)


if __name__ == "__main__":
    main()
