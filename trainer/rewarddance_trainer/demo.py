"""Run the shapes-world demo end to end: dataset -> validate -> contact sheet -> encoder -> feature cache ->
component scorers -> composite R, with each component's agreement with the simulator's gold on held-out prompts.

This is what the README's first command runs until the serving stack lands. Sizes are small (a tiny encoder,
150 steps) so it finishes in a few minutes on 2 cores; the full-size runs are in benchmarks/.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DEMO_ENCODER_STEPS = 150


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="working directory (default runs/demo)")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--images-per-prompt", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)


def _dataset(args: argparse.Namespace) -> tuple[Path, dict]:
    from .data.validate import validate_dataset
    from .shapes.preview import contact_sheet
    from .shapes.synth import SynthConfig, default_chunk_prompts, synthesize

    data = args.out / "shapes"
    config = SynthConfig(
        n_prompts=args.prompts,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        chunk_prompts=default_chunk_prompts(args.prompts),
    )
    card = synthesize(data, config, overwrite=True, command=f"rewarddance demo --out {args.out}")
    problems = validate_dataset(data)
    sheet = contact_sheet(data, args.out / "contact_sheet.png")
    ceiling = card["noise_ceiling"]
    print(f"dataset     {data}  {card['counts']}")
    print(f"speed       {card['run']['images_per_second']} images/s on {card['run']['workers']} workers")
    print(f"validate    {'clean' if not problems else f'{len(problems)} problems'}")
    rho = ", ".join(f"{k} {v:.3f}" for k, v in ceiling["spearman_vs_mean_rating"].items())
    print(f"ceiling     Spearman(gold, mean rating): {rho}")
    print(f"sheet       {sheet}")
    if problems:
        raise SystemExit(1)
    return data, card


def _components(data: Path, out: Path) -> None:
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    from rewarddance.components.base import COMPONENTS
    from rewarddance.components.composite import composite, resolve_weights

    from .components.fit import Table, component_signals, fit_components, style_text_embeddings
    from .encoders.config import EncoderTrainConfig
    from .encoders.embed import embed_dataset
    from .encoders.model import Encoder
    from .encoders.train import train
    from .shapes.world import STYLE_WORDS

    cfg = EncoderTrainConfig(
        model="shapes-clip-tiny",
        steps=DEMO_ENCODER_STEPS,
        batch_size=64,
        lr=2e-3,
        warmup=10,
        eval_every=50,
        ckpt_every=DEMO_ENCODER_STEPS,
    )
    run = out / "encoder"
    shutil.rmtree(run, ignore_errors=True)  # the dataset was just rewritten: never reuse an older encoder
    meta = train(data, run, cfg)
    encoder = Encoder.load(run)
    cache = embed_dataset(data, run, data / "features" / "encoder", batch=128)
    table = Table.load(data, cache)
    split = table.images.split.to_numpy()
    temperature = encoder.model.logit_scale.exp().clamp(max=100).item()
    components = fit_components(
        table, np.flatnonzero(split == "train"), style_text_embeddings(encoder, STYLE_WORDS), temperature
    )
    test = np.flatnonzero(split == "test")
    scores = component_signals(components, table, test)
    reward = composite(scores, resolve_weights(None))
    gold = pd.read_parquet(data / "gold" / "gold.parquet").set_index("image_id").loc[table.images.image_id.iloc[test]]
    r = meta["test_retrieval"]
    print(f"encoder     tiny, {DEMO_ENCODER_STEPS} steps: held-out R@1 i2t {r['i2t_r1']:.3f} t2i {r['t2i_r1']:.3f}")
    rho = {c: spearmanr(scores[:, i], gold[c])[0] for i, c in enumerate(COMPONENTS)}
    rho["R"] = spearmanr(reward, gold["utility"])[0]
    print("gold rho    " + ", ".join(f"{k} {v:.3f}" for k, v in rho.items()) + f"  ({len(test)} held-out images)")
    first = table.images.prompt_id.iloc[test[0]]
    rows = np.flatnonzero(table.images.prompt_id.iloc[test].to_numpy() == first)
    print(f"example     {table.images.text.iloc[test[0]]!r}: candidates ranked by R")
    for i in rows[np.argsort(-reward[rows])]:
        parts = " ".join(f"{c[0].upper()}={scores[i, j]:.2f}" for j, c in enumerate(COMPONENTS))
        print(f"            R={reward[i]:.3f}  {parts}  gold utility {gold['utility'].iloc[i]:.3f}")


def run(args: argparse.Namespace) -> int:
    data, _ = _dataset(args)
    _components(data, args.out)
    return 0
