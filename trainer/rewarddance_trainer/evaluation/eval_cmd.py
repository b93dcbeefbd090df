"""Compare two generators on the same prompts and seeds: automatic metrics with bootstrap intervals, a simulated A/B
and the pair set for `rewarddance ab serve`.

Examples:
  rewarddance eval generators --a runs/generator-base --b runs/rlhf/pipeline --prompts 200 --n 2 \
      --data data/shapes20k --encoder runs/encoder-ab --repo model_repository --name base-vs-rlhf

--a / --b take a generator run or any local diffusers pipeline folder. Per side: the oracle's gold components and
utility, the served reward's components and R (scored through the serving pipeline from --repo), the encoder score
(CLIPScore's formula with our encoder), the patch diversity (LPIPS-style on our encoder's patch features) and FID /
KID (torchmetrics with our encoder as feature network) against faithful renders of the same prompts. Every metric:
A, B, B - A and a 95% bootstrap interval over prompts. The simulated A/B judges each (A, B) pair with the shapes
world's rater model on the oracle's reading and reports how often the served reward agrees with the raters.
Writes OUT/ab_<name>.{json,md,png} and the pair set (images + pairs.json) to --pairs-out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from .compare import CompareConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", type=Path, required=True, help="generator A (run or diffusers pipeline folder)")
    parser.add_argument("--b", type=Path, required=True, help="generator B")
    parser.add_argument("--encoder", type=Path, required=True, help="`rewarddance train encoder` run (features)")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository to score with")
    parser.add_argument("--model", default=None, help="reward model in --repo (default: the first one)")
    parser.add_argument("--data", type=Path, default=None, help="take prompts from this dataset's --split")
    parser.add_argument("--name", default=None, help="result name (default: <A name>-vs-<B name>)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where ab_<name>.* go")
    parser.add_argument("--pairs-out", type=Path, default=None, help="pair-set folder (default runs/ab/<name>)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    for f in fields(CompareConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"(default {f.default})"
        )


def run(args: argparse.Namespace) -> int:
    import torch

    from .compare import compare_generators
    from .report import write

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = CompareConfig(**{f.name: getattr(args, f.name) for f in fields(CompareConfig)})
    name = args.name or f"{args.a.name}-vs-{args.b.name}"
    try:
        if cfg.n < 2:
            raise ValueError("--n must be >= 2 (diversity compares a prompt's samples)")
        for label, path in (("--a", args.a), ("--b", args.b), ("--encoder", args.encoder), ("--repo", args.repo)):
            if not path.exists():
                raise FileNotFoundError(f"{label} {path} does not exist")
        result = compare_generators(
            args.a,
            args.b,
            args.encoder,
            args.repo,
            cfg,
            name,
            pairs_out=args.pairs_out or Path("runs/ab") / name,
            data=args.data,
            model=args.model,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    paths = write(result, args.out, shlex.join(["rewarddance", *sys.argv[1:]]))
    m, sim = result["metrics"], result["simulated_ab"]
    print(
        f"{name}: oracle utility A {m['oracle_utility']['a']:.3f} B {m['oracle_utility']['b']:.3f} "
        f"(B - A {m['oracle_utility']['diff']:+.3f}, 95% CI {m['oracle_utility']['diff_ci95'][0]:+.3f} .. "
        f"{m['oracle_utility']['diff_ci95'][1]:+.3f}); simulated raters prefer B {sim['b_preferred']['mean']:.2f}, "
        f"A {sim['a_preferred']['mean']:.2f}; reward agrees with them {sim['reward_agrees_with_raters']['mean']:.2f}"
    )
    print(f"wrote {', '.join(str(p) for p in paths.values())}; pair set {result['pair_set']}")
    return 0
