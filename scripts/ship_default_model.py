"""Copy a finished pixel reward run into exporter/rewarddance_exporter/default_model/: the model `make run` serves.

    python scripts/ship_default_model.py runs/pixel-small --command "rewarddance train pixel-reward ..."

Writes reward.safetensors (the run's selected weights), run.json (its manifest), samples/ (held-out test images
of its dataset, PNG, with their prompts and the components and R the torch model gives them, recorded for
tests/test_default_model.py) and README.md (the commands that made it and its held-out numbers).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
import torch
from rewarddance_exporter.bootstrap import DEFAULT_MODEL
from rewarddance_trainer.data import schema
from rewarddance_trainer.pixel_reward.model import WEIGHTS_FILE, load_model
from rewarddance_trainer.pixel_reward.text import PromptStates
from rewarddance_trainer.pixel_reward.train import earlier_stages

from rewarddance.components.base import COMPONENTS
from rewarddance.preprocess import load_pixels

SAMPLES = 12


def pick_samples(data: Path, n: int) -> pd.DataFrame:
    """``n`` test-split prompts, one image each: the faithful candidate for half, a flawed one for the rest."""
    layout = schema.Layout(data)
    images = pd.read_parquet(layout.table("images"), columns=["image_id", "prompt_id", "path", "settings"])
    prompts = pd.read_parquet(layout.table("prompts"), columns=["prompt_id", "text", "split"])
    rows = images.merge(prompts, on="prompt_id")
    rows = rows[rows.split == "test"]
    chosen = rows.prompt_id.drop_duplicates().sample(n=n, random_state=0)
    picked = []
    for i, prompt_id in enumerate(chosen):
        candidates = rows[rows.prompt_id == prompt_id]
        picked.append(candidates.iloc[0] if i % 2 == 0 else candidates.iloc[-1])
    return pd.DataFrame(picked).reset_index(drop=True)


def synth_seed(data: Path) -> int:
    return int(json.loads(schema.Layout(data).card.read_text())["config"]["seed"])


def synth_commands(data: Path, counts: dict) -> list[str]:
    return [
        f"rewarddance data synth --prompts {counts['prompts']} --images-per-prompt "
        f"{counts['images'] // counts['prompts']} --raters-per-image 4 --seed {synth_seed(data)} --out {data}",
        f"rewarddance data prompt-states {data}",
    ]


def stages(run_json: dict) -> str:
    """For a run fine-tuned from another (``init`` in its run.json): the earlier stages' steps and time."""
    parts = [
        f"{s['steps_done']} steps in {s['wall_seconds'] / 60:.0f} min (lr {s['lr']:g})"
        for s in earlier_stages(run_json)
    ]
    n = len(parts) + 1
    return f"; stage {n} of {n}, started from the weights of {', then '.join(parts)}" if parts else ""


def soup(run_json: dict) -> str:
    """For a soup (``rewarddance train soup``): its arms, each with its seed and test R on its own dataset."""
    members = run_json.get("soup", {}).get("members", [])
    arms = ", ".join(f"seed {m['seed']} on {m['data']}: R {m['metrics']['spearman_reward']:.3f}" for m in members)
    return f"; the mean of the weights of {len(members)} arms of the last stage ({arms}), time summed" if arms else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--command", required=True, help="the command line that trained the run (for the README)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    parser.add_argument(
        "--earlier-data",
        type=Path,
        nargs="*",
        default=[],
        help="datasets the earlier stages trained on, when not the run's own (for the README's commands)",
    )
    args = parser.parse_args()
    run_json = json.loads((args.run / "run.json").read_text())
    data = Path(run_json["data"]["path"])
    run_json["data"]["seed"] = synth_seed(data)  # which draw of the world the last stage saw
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "samples").mkdir(parents=True)
    shutil.copy(args.run / WEIGHTS_FILE, args.out / WEIGHTS_FILE)
    (args.out / "run.json").write_text(json.dumps(run_json, indent=2) + "\n")

    picked = pick_samples(data, SAMPLES)
    model, states = load_model(args.run), PromptStates()
    pixels = load_pixels([data / p for p in picked.path], model.cfg.image_size)
    tokens, mask = states.encode(picked.text.tolist())
    with torch.no_grad():
        c, r = model(torch.from_numpy(pixels), torch.from_numpy(tokens), torch.from_numpy(mask))
    samples = []
    for i, row in picked.iterrows():
        name = f"{i:02d}.png"
        shutil.copy(data / row.path, args.out / "samples" / name)
        scores = dict(zip(COMPONENTS, c[i].tolist(), strict=True)) | {"reward": float(r[i])}
        samples.append({"image": name, "prompt": row.text, "image_id": row.image_id, "scores": scores})
    (args.out / "samples" / "samples.json").write_text(json.dumps({"samples": samples}, indent=2) + "\n")

    m = run_json["metrics"]
    size = (args.out / WEIGHTS_FILE).stat().st_size / 2**20
    lines = [
        "# The default reward model",
        "",
        f"`reward_{run_json['scale']}`: the pixel reward model (v2), {run_json['parameters']:,} parameters "
        f"({size:.1f} MiB float32), trained on CPU. `rewarddance bootstrap` (and so `make run`) exports it into",
        "the model repository; `rewarddance bootstrap --from-scratch` reruns the recipe below.",
        "",
        "Made by:",
        "",
        "```bash",
        *(line for d in [*args.earlier_data, data] for line in synth_commands(d, run_json["data"]["counts"])),
        args.command,
        f"python scripts/ship_default_model.py {args.run} --command '...'",
        "```",
        "",
        f"Held-out test split of {data} ({m['n_eval_images']:,} images): Spearman R {m['spearman_reward']:.3f}, "
        f"fidelity {m['spearman_fidelity']:.3f}, style {m['spearman_style']:.3f}, "
        f"composition {m['spearman_composition']:.3f}, novelty {m['spearman_novelty']:.3f}, "
        f"pair accuracy {m['pair_accuracy']:.3f}; selected step "
        f"{run_json['selected_step']} of {run_json['steps_done']}, {run_json['wall_seconds'] / 60:.0f} min on "
        f"{run_json['torch_threads']} CPU thread(s){soup(run_json)}{stages(run_json)}. Full numbers: run.json; "
        "the scaling table: benchmarks/results/scaling.md.",
        "",
        f"`samples/`: {SAMPLES} held-out images with their prompts and the scores recorded from the torch model "
        "(tests/test_default_model.py checks the exported graph against them).",
    ]
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {size:.1f} MiB of weights, {SAMPLES} samples")


if __name__ == "__main__":
    main()
