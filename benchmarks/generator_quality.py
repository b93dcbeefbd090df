"""Generator quality and oracle validation on the shapes world.

Part ``oracle``: the gold oracle against the simulator's gold on rendered images of a dataset split (Spearman per
component, attribute detection accuracy) -> results/oracle_validation.{json,md}.

Part ``generator``: for held-out (test-split) prompts, samples of a generator run scored by the oracle against
their own prompt and against a random other prompt (baseline), FID / KID against held-out rendered images with
our image encoder as torchmetrics' feature extractor, per-prompt diversity, contact sheets, and the run's training
budget (steps, wall time, loss curve) -> results/generator_quality.{json,md} and results/generator_*.png.

Example:
  OMP_NUM_THREADS=1 python benchmarks/generator_quality.py --part all --data data/shapes2k \
      --generator runs/generator-shapes32 --encoder runs/encoder-shapes2k --prompts 48 --n 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import RESULTS, command, machine, markdown_table, write_result
from PIL import Image
from rewarddance_trainer.generator.config import DEMO_PROMPTS
from rewarddance_trainer.generator.load import generate_images, load_generator
from rewarddance_trainer.generator.quality import EncoderFeatures, diversity, fid_kid, oracle_fidelity_vs_baseline
from rewarddance_trainer.generator.sheet import contact_sheet
from rewarddance_trainer.oracle.oracle import Oracle, composition, fidelity, novelty, style_score
from rewarddance_trainer.oracle.parse import parse_prompt
from rewarddance_trainer.oracle.validate import validate


def oracle_part(args, oracle: Oracle) -> dict:
    result = validate(oracle, args.data, args.split, args.limit)
    rho, mae = result["spearman"], result["mae"]
    a, af = result["attributes"], result["attributes_faithful_images"]
    keys = ("recall", "precision", "count_accuracy", "shape_accuracy", "color_accuracy", "size_accuracy")
    keys += ("position_accuracy", "background_accuracy", "style_top1_accuracy_pure", "style_weight_mae")
    md = [
        "# Gold oracle vs the simulator's gold",
        "",
        f"{result['images']} rendered images of `{args.data}` split `{args.split}` (faithful and perturbed "
        f"candidates); oracle at {result['images_per_second']} images/s on this machine. "
        "The oracle never saw these images (it is fitted on its own fresh renders) and reads only pixels + "
        "the prompt text's parsed scene.",
        "",
        markdown_table(
            ["component", "Spearman vs gold", "MAE"],
            [[c, f"{rho[c]:.3f}", f"{mae[c]:.3f}" if c in mae else ""] for c in rho],
        ),
        "",
        f"Faithful image scored above a perturbed image of the same prompt with lower gold fidelity: "
        f"{result['faithful_above_wrong_fidelity']:.3f} of pairs.",
        "",
        "## Attribute detection (true objects matched to detections by centre distance)",
        "",
        markdown_table(
            ["measure", "all images", "faithful images"],
            [[k, f"{a[k]:.3f}", f"{af[k]:.3f}"] for k in keys],
        ),
        "",
        f"Objects {a['objects']}, detections {a['detections']}.",
        "",
        f"Command: `{command()}`",
    ]
    payload = {"command": command(), "machine": machine(), **result}
    write_result("oracle_validation", payload, "\n".join(md))
    print("\n".join(md))
    return result


def held_out(data: Path, k: int, seed: int) -> tuple[list[str], pd.DataFrame]:
    prompts = pd.read_parquet(data / "prompts.parquet")
    test = prompts[prompts["split"] == "test"].sort_values("prompt_id")
    chosen = test.sample(n=min(k, len(test)), random_state=seed).sort_values("prompt_id")
    images = pd.read_parquet(data / "images.parquet")
    images = images[images["prompt_id"].isin(test["prompt_id"])]
    faithful = images[images["settings"].map(lambda s: not json.loads(s)["perturbations"])]
    return list(chosen["text"]), faithful.merge(test[["prompt_id", "text"]])


def load_px(data: Path, paths, size: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(data / p).convert("RGB").resize((size, size), Image.BOX)) for p in paths])


def generator_part(args, oracle: Oracle) -> dict:
    from rewarddance_trainer.encoders.model import Encoder

    torch.manual_seed(0)
    run = Path(args.generator)
    meta = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    pipe = load_generator(run)
    size = int(pipe.unet.config.sample_size)
    feature = EncoderFeatures(Encoder.load(args.encoder))
    prompts, faithful = held_out(args.data, args.prompts, args.seed)
    specs = [parse_prompt(p) for p in prompts]
    out: dict = {"generator": str(run), "image_size": size, "prompts": len(prompts), "n_per_prompt": args.n}
    out["training"] = {k: meta.get(k) for k in ("steps_completed", "train_seconds", "final_loss", "unet_parameters")}
    out["training"]["data"] = meta.get("data")
    if (run / "metrics.jsonl").exists():
        curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        out["training"]["loss_curve"] = [(c["step"], c["loss"]) for c in curve[:: max(1, len(curve) // 40)]]
        shutil.copy(run / "loss.png", RESULTS / "generator_loss.png")

    # real references: faithful renders of the held-out prompts at the generator's resolution
    real_all = load_px(args.data, faithful["path"], size)
    first = faithful.drop_duplicates("prompt_id").set_index("text")
    ref_own = load_px(args.data, [first.loc[p, "path"] for p in prompts], size)

    per_guidance = {}
    for g in args.guidance:
        t0 = time.time()
        images = generate_images(pipe, prompts, args.n, args.steps, g, args.seed)
        gen_seconds = time.time() - t0
        fid = oracle_fidelity_vs_baseline(oracle, images, specs, args.n, args.seed)
        readings = fid.pop("readings")
        comps = np.array(
            [
                [fidelity(s, r), style_score(s, r), composition(r), novelty(r)]
                for s, r in zip([s for s in specs for _ in range(args.n)], readings, strict=True)
            ]
        )
        stats = fid_kid(real_all, images, feature, subset_size=args.kid_subset)
        per_guidance[str(g)] = {
            "oracle": fid,
            "oracle_components_mean": dict(
                zip(("fidelity", "style", "composition", "novelty"), comps.mean(0).tolist(), strict=True)
            ),
            "fid_kid_vs_heldout_renders": stats,
            "diversity": diversity(images, args.n, feature),
            "seconds_per_image": gen_seconds / len(images),
        }
        print(g, json.dumps(per_guidance[str(g)], indent=1), flush=True)
        if g == args.guidance[0] or g == 3.0:
            sheet = [(p, [ref_own[i], *images[i * args.n : (i + 1) * args.n]]) for i, p in enumerate(prompts[:8])]
            contact_sheet(sheet, RESULTS / f"generator_heldout_sheet_g{g:g}.png", cell=64)
    out["guidance"] = per_guidance

    # references: the oracle on faithful renders (ceiling) and FID between two halves of the real set (floor)
    ref = oracle_fidelity_vs_baseline(oracle, ref_own, specs, 1, args.seed)
    ref.pop("readings")
    out["rendered_reference_oracle"] = ref
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(real_all))
    m = min(len(images), len(real_all) // 2)
    out["fid_kid_real_vs_real_floor"] = fid_kid(
        real_all[idx[:m]], real_all[idx[m : 2 * m]], feature, subset_size=args.kid_subset
    )
    pairs = faithful.groupby("prompt_id").filter(lambda g: len(g) >= 2).groupby("prompt_id").head(2)
    out["rendered_diversity_pairs"] = diversity(load_px(args.data, pairs["path"], size), 2, feature)
    out["feature_extractor"] = f"EncoderFeatures({args.encoder}): pooled {feature.num_features}-d image embedding"

    # the named prompts, as a contact sheet to look at
    demo = generate_images(pipe, list(DEMO_PROMPTS), 8, args.steps, 3.0, args.seed)
    contact_sheet(
        [(p, list(demo[i * 8 : (i + 1) * 8])) for i, p in enumerate(DEMO_PROMPTS)],
        RESULTS / "generator_contact_sheet.png",
    )
    return out


def generator_markdown(r: dict) -> str:
    t = r["training"]
    rows = []
    for g, v in r["guidance"].items():
        o, f, d = v["oracle"], v["fid_kid_vs_heldout_renders"], v["diversity"]
        rows.append(
            [
                g,
                f"{o['own_prompt_fidelity']:.3f} ± {o['own_sem']:.3f}",
                f"{o['random_prompt_baseline_fidelity']:.3f} ± {o['baseline_sem']:.3f}",
                f"{o['prompts_own_above_baseline']:.2f}",
                f"{f['fid']:.2f}",
                f"{f['kid_mean']:.4f} ± {f['kid_std']:.4f}",
                f"{d['embedding_distance']:.3f}",
                f"{d['pixel_rms_distance']:.3f}",
            ]
        )
    ref, floor = r["rendered_reference_oracle"], r["fid_kid_real_vs_real_floor"]
    return "\n".join(
        [
            "# Generator quality (shapes world)",
            "",
            f"Generator `{r['generator']}` ({r['image_size']} px): {t.get('steps_completed')} steps, "
            f"{t.get('train_seconds')} s of training, final loss {t.get('final_loss')}, "
            f"{t.get('unet_parameters')} UNet parameters; data {t.get('data')}.",
            f"{r['prompts']} held-out (test-split) prompts x {r['n_per_prompt']} samples; DDIM, seeds fixed.",
            f"Feature extractor for FID/KID: {r['feature_extractor']} (not Inception: its weights file cannot be "
            "downloaded here; see docs/generator.md).",
            "",
            markdown_table(
                [
                    "guidance",
                    "oracle fidelity (own prompt)",
                    "random-prompt baseline",
                    "prompts own > baseline",
                    "FID",
                    "KID",
                    "diversity (1-cos)",
                    "diversity (pixel RMS)",
                ],
                rows,
            ),
            "",
            f"Rendered faithful images of the same prompts (ceiling): oracle fidelity {ref['own_prompt_fidelity']:.3f} "
            f"vs random-prompt baseline {ref['random_prompt_baseline_fidelity']:.3f}.",
            f"FID / KID floor (two disjoint halves of the held-out renders, same sizes): FID {floor['fid']:.2f}, "
            f"KID {floor['kid_mean']:.4f}.",
            f"Diversity of rendered faithful pairs of a prompt: {json.dumps(r['rendered_diversity_pairs'])}.",
            "",
            "Loss curve: results/generator_loss.png; contact sheets: results/generator_contact_sheet.png (named "
            "prompts), results/generator_heldout_sheet_g*.png (first column: the rendered faithful image).",
            "",
            f"Command: `{command()}`",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("oracle", "generator", "all"), default="all")
    parser.add_argument("--data", type=Path, default=Path("data/shapes2k"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="oracle validation on a random subset")
    parser.add_argument("--oracle", type=Path, default=None)
    parser.add_argument("--generator", type=Path, default=Path("runs/generator-shapes32"))
    parser.add_argument("--encoder", type=Path, default=Path("runs/encoder-shapes2k"))
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0])
    parser.add_argument("--kid-subset", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    oracle = Oracle.load(args.oracle)
    if args.part in ("oracle", "all"):
        oracle_part(args, oracle)
    if args.part in ("generator", "all"):
        result = generator_part(args, oracle)
        md = generator_markdown(result)
        write_result("generator_quality", {"command": command(), "machine": machine(), **result}, md)
        print(md)


if __name__ == "__main__":
    main()
