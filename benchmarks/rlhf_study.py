"""RLHF study: the same RL budget against each reward model, best-of-N as the no-training baseline, and the oracle
(independent of every reward model) as the judge of real gain versus reward hacking.

Phases (each resumable; run them together or one at a time):
- ``rl``: ``rlhf.train`` against each ``--models`` entry (``name@version:steps``), reward in-process through the
  serving pipeline (``repo:PATH``); runs in ``--runs``/<name>-v<version> (rerun to resume).
- ``bon``: N samples per held-out prompt from the base generator (the RL sampler, fixed seeds), gold once, each
  reward model picks the best of the first 1, 4, ..., N.
- ``net``: the scoring cost of one RL step's batch in-process, through the gateway over HTTP and over gRPC (SDK).
- ``report``: ``benchmarks/results/rlhf.{md,json,png}``.

    python benchmarks/rlhf_study.py --repo /tmp/rlhf-repo --models reward_cpu-xs@1:30 reward_cpu-s@1:10 \\
        --phases rl bon net report
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, machine, markdown_table, write_result
from rewarddance_trainer.rlhf.config import RLHFConfig
from rewarddance_trainer.rlhf.gold import GoldScorer
from rewarddance_trainer.rlhf.reward import DifferentiableReward, InProcessReward, ServiceReward
from rewarddance_trainer.rlhf.train import read_metrics, train
from rewarddance_trainer.rlhf.train_cmd import split_prompts

from rewarddance.repository import ModelRepository

ROOT = Path(__file__).resolve().parents[1]


def parse_model(spec: str) -> tuple[str, int, int]:
    """``name@version:steps`` -> (name, version, steps)."""
    head, _, steps = spec.partition(":")
    name, _, version = head.partition("@")
    return name, int(version or 1), int(steps or 0)


def run_dir(args, name: str, version: int, seed: int = 0) -> Path:
    return args.runs / (f"{name}-v{version}" + (f"-seed{seed}" if seed else ""))


def model_metrics(repo: Path, name: str, version: int) -> dict:
    m = ModelRepository(repo).get(name, version).manifest.metrics
    return {"test_spearman_R": m.get("spearman_reward"), "pair_accuracy": m.get("pair_accuracy")}


def phase_rl(args, cfg: RLHFConfig, train_prompts, eval_prompts, gold) -> None:
    for spec in args.models:
        name, version, steps = parse_model(spec)
        if steps <= 0:
            continue
        reward = InProcessReward(args.repo, cfg.weights(), name, version)  # --set reward_weights=fidelity=1
        val = split_prompts(args.data, "val")[: cfg.val_prompts] if cfg.val_prompts else None
        # --set algorithm=reward-grad reward_run=RUN: RUN must hold the torch weights of name@version (its served
        # proxy is logged beside the torch reward's value on every batch, so a mismatch shows)
        grad = None
        if cfg.algorithm == "reward-grad":
            grad = DifferentiableReward(cfg.reward_run, cfg.weights(), cfg.reward_ensemble_penalty)
        for seed in args.seeds:
            run = run_dir(args, name, version, seed)
            print(f"== RL against {name} v{version}, seed {seed}: {steps} steps -> {run}", flush=True)
            start = time.time()
            meta = {"reward": f"repo:{args.repo}", "reward_source": reward.describe(), "load_at_start": os.getloadavg()}
            run_cfg = _with(cfg, steps=steps, seed=seed)
            train(
                args.generator,
                reward,
                run,
                run_cfg,
                train_prompts,
                eval_prompts,
                gold,
                meta=meta,
                val_prompts=val,
                grad_reward=grad,
            )
            print(f"   {time.time() - start:.0f} s", flush=True)


def _with(cfg: RLHFConfig, **kw) -> RLHFConfig:
    return RLHFConfig(**(cfg.to_dict() | kw))


@torch.no_grad()
def base_samples(args, cfg: RLHFConfig, prompts: list[str], n: int) -> np.ndarray:
    """(len(prompts), n, h, w, 3) uint8 from the base generator with the RL sampler, cached in --runs."""
    from rewarddance_trainer.generator.load import load_generator
    from rewarddance_trainer.rlhf.policy import Policy
    from rewarddance_trainer.rlhf.rollout import rollout

    cache = args.runs / f"bon_samples_{len(prompts)}x{n}.npy"
    if cache.exists():
        return np.load(cache)
    pipe = load_generator(args.generator)
    policy = Policy(pipe, lora=False, guidance=cfg.guidance)  # never updated: the base itself
    cond = pipe.encode(prompts)
    out = np.zeros((len(prompts), n, 32, 32, 3), np.uint8)
    per = max(1, 48 // n)
    from tqdm.auto import tqdm

    for b, i in enumerate(tqdm(range(0, len(prompts), per), desc="best-of-N samples")):
        j = min(i + per, len(prompts))
        c = (cond[0][i:j].repeat_interleave(n, 0), cond[1][i:j].repeat_interleave(n, 0))
        g = torch.Generator().manual_seed(cfg.seed * 7919 + 2_000_000 + b)
        ro = rollout(policy, c, cfg.sample_steps, cfg.eta, g, cfg.min_sigma, with_base=False)
        out[i:j] = ro.images.reshape(j - i, n, *ro.images.shape[1:])
    args.runs.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def phase_bon(args, cfg: RLHFConfig, eval_prompts, gold) -> None:
    n = args.bon_n
    eval_prompts = eval_prompts[: args.bon_prompts]
    images = base_samples(args, cfg, eval_prompts, n)
    flat = images.reshape(-1, *images.shape[2:])
    rep = [p for p in eval_prompts for _ in range(n)]
    gold_path = args.runs / f"bon_gold_{len(eval_prompts)}x{n}.npy"
    if not gold_path.exists():
        np.save(gold_path, gold(flat, rep)["utility"].reshape(len(eval_prompts), n))
    g = np.load(gold_path)
    results = {}
    for spec in args.models:
        name, version, _ = parse_model(spec)
        reward = InProcessReward(args.repo, None, name, version)
        proxy = reward(flat, rep).reshape(len(eval_prompts), n)
        rows = []
        for k in args.bon_ks:
            pick = proxy[:, :k].argmax(1)
            idx = np.arange(len(eval_prompts))
            rows.append({"n": k, "proxy": float(proxy[idx, pick].mean()), "gold": float(g[idx, pick].mean())})
        results[f"{name}@{version}"] = {"rows": rows, "proxy_mean_all": float(proxy.mean())}
        print(name, version, rows, flush=True)
    payload = {"n": n, "prompts": len(eval_prompts), "gold_mean_all": float(g.mean()), "models": results}
    (args.runs / "bon.json").write_text(json.dumps(payload, indent=2))


def phase_net(args, cfg: RLHFConfig, train_prompts) -> None:
    """Score one RL step's batch (prompts_per_step x samples_per_prompt images) in-process, over HTTP and gRPC."""
    from serving import Gateway

    name, version, _ = parse_model(args.models[0])
    rng = np.random.default_rng(0)
    prompts = [train_prompts[i] for i in rng.choice(len(train_prompts), cfg.prompts_per_step, replace=False)]
    rep = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    images = rng.integers(0, 256, (len(rep), 32, 32, 3), dtype=np.uint8)
    samples = sorted((args.runs).glob("*/eval/step_00000.npy"))
    if samples:  # real generator samples rather than noise, where a run has them
        images = np.load(samples[0])[: len(rep)]
    gateway = Gateway(args.repo, name, [])
    out = {"batch_images": len(rep), "requests_per_step": len(prompts), "repeats": args.net_repeats}
    try:
        sources = {
            "in-process": InProcessReward(args.repo, None, name, version),
            "http": ServiceReward(gateway.url, None, name, version),
            "grpc": ServiceReward(f"grpc://127.0.0.1:{gateway.grpc_port}", None, name, version),
        }
        scores = {}
        for label, fn in sources.items():
            scores[label] = fn(images, rep)  # warm-up (prompt cache, connections)
            times = []
            for _ in range(args.net_repeats):
                t0 = time.perf_counter()
                fn(images, rep)
                times.append(time.perf_counter() - t0)
            out[label] = {"seconds_per_step_median": float(np.median(times)), "seconds_all": times}
        out["max_abs_diff_http_vs_inprocess"] = float(np.abs(scores["http"] - scores["in-process"]).max())
        out["max_abs_diff_grpc_vs_inprocess"] = float(np.abs(scores["grpc"] - scores["in-process"]).max())
    finally:
        gateway.stop()
    out["load"] = os.getloadavg()
    print(json.dumps(out, indent=2), flush=True)
    (args.runs / "net.json").write_text(json.dumps(out, indent=2))


def _rows_rl(args, spec, seed: int = 0, study_cfg: dict | None = None) -> list[dict]:
    """One row per held-out evaluation after the start (so runs compare at equal budgets); the last has the curve.
    A seed other than 0 is another RL run (prompt draws, noise, LoRA init and the evaluation noise all differ).
    A run stopped before its end has no run.json yet: its settings are the study's (``study_cfg``), which a rerun
    would resume it with."""
    name, version, _ = parse_model(spec)
    run = run_dir(args, name, version, seed)
    rows = read_metrics(run)
    evals = [r for r in rows if r["kind"] == "eval"]
    train_rows = [r for r in rows if r["kind"] == "train"]
    if len(evals) < 2:
        return []
    cfg = json.loads((run / "run.json").read_text())["config"] if (run / "run.json").exists() else study_cfg or {}
    per_part = {
        k: float(np.median([r[f"seconds_{k}"] for r in train_rows])) for k in ("sampling", "scoring", "gold", "update")
    }
    base = evals[0]
    val = {r["step"]: r["proxy"] for r in rows if r["kind"] == "val"}
    out = []
    for ev in evals[1:]:
        proxy_gain = (ev["proxy"] - base["proxy"]) / base["proxy"]
        gold_gain = (ev["gold_utility"] - base["gold_utility"]) / base["gold_utility"]
        out.append(
            {
                "reward_model": f"{name} v{version}",
                "spec": f"{name}@{version}",
                **model_metrics(args.repo, name, version),
                "method": "rlhf",
                "algorithm": cfg.get("algorithm", "ppo"),
                "seed": seed,
                "lr": lr_label(cfg),
                "steps": ev["step"],
                "samples_seen": ev["step"] * cfg.get("prompts_per_step", 0) * cfg.get("samples_per_prompt", 0),
                "kl": ev["kl"],
                "proxy_base": base["proxy"],
                "proxy_tuned": ev["proxy"],
                "gold_base": base["gold_utility"],
                "gold_tuned": ev["gold_utility"],
                "gold_fidelity_base": base["gold_fidelity"],
                "gold_fidelity_tuned": ev["gold_fidelity"],
                "proxy_gain_rel": proxy_gain,
                "gold_gain_rel": gold_gain,
                "hacking_gap": proxy_gain - gold_gain,
                "seconds_per_step_median": per_part,
            }
        )
        if val:  # early stopping: the evaluation up to this budget whose policy had the best val-split proxy
            chosen = max((ev_ for ev_ in evals if ev_["step"] <= ev["step"]), key=lambda e: val.get(e["step"], -1e9))
            out[-1] |= {
                "selected_step": chosen["step"],
                "gold_selected": chosen["gold_utility"],
                "gold_gain_selected_rel": (chosen["gold_utility"] - base["gold_utility"]) / base["gold_utility"],
            }
    out[-1]["curve"] = [
        {"step": r["step"], "proxy": r["proxy"], "gold": r["gold_utility"], "kl": r["kl"]} for r in evals
    ]
    return out


def phase_report(args, cfg: RLHFConfig) -> None:
    rows = [r for s in args.models for seed in args.seeds for r in _rows_rl(args, s, seed, cfg.to_dict())]
    bon = json.loads((args.runs / "bon.json").read_text()) if (args.runs / "bon.json").exists() else None
    if bon:
        base_gold = next((r["gold"] for m in bon["models"].values() for r in m["rows"] if r["n"] == 1), None)
        for key, m in bon["models"].items():
            name, version = key.split("@")
            base_proxy = next(r["proxy"] for r in m["rows"] if r["n"] == 1)
            for r in m["rows"]:
                rows.append(
                    {
                        "reward_model": f"{name} v{version}",
                        **model_metrics(args.repo, name, int(version)),
                        "method": "best_of_n",
                        "n": r["n"],
                        "kl": None,
                        "kl_bound_nats": float(np.log(r["n"]) - (r["n"] - 1) / r["n"]),
                        "proxy_base": base_proxy,
                        "proxy_tuned": r["proxy"],
                        "gold_base": base_gold,
                        "gold_tuned": r["gold"],
                        "proxy_gain_rel": (r["proxy"] - base_proxy) / base_proxy,
                        "gold_gain_rel": (r["gold"] - base_gold) / base_gold,
                        "hacking_gap": (r["proxy"] - base_proxy) / base_proxy - (r["gold"] - base_gold) / base_gold,
                    }
                )
    if bon:
        subset_gold(args, rows, bon["prompts"])
    net = json.loads((args.runs / "net.json").read_text()) if (args.runs / "net.json").exists() else None
    payload = {
        "machine": machine(),
        "command": command(),
        "load": os.getloadavg(),
        "generator": str(args.generator),
        "eval_prompts": args.eval_prompts,
        "bon_prompts": bon["prompts"] if bon else None,
        "bon_n": bon["n"] if bon else None,
        "rl_config": cfg.to_dict(),
        "rows": rows,
        "network": net,
    }
    if args.keep:
        keep_earlier(payload, args.keep)
    write_result(args.name, payload, markdown(payload))
    plot(rows, bon, RESULTS / f"{args.name}.png")
    before_after_sheet(args, rows, RESULTS / f"{args.name}_sheet.png")
    print(markdown(payload))


def lr_label(cfg: dict) -> str:
    """How an RL run's learning rate went and what it trained, e.g. "5e-3", "6e-3 cosine", "2e-3 lora-all" (LoRA on
    attention and every convolution), "5e-3 lora-all conv x0.2" (the convolution adapters at a fifth of the rate),
    "1e-4 full" (the whole UNet), "5e-3 beta 0.1" (a KL weight other than the default 0.01), "5e-3 weights
    fidelity=1" (the reward's components weighted per request), "1e-3 reward-grad K2" (the reward's gradient through
    the chain's last 2 steps instead of PPO); runs from before these options: PPO, constant rate, LoRA on attention,
    beta 0.01, the model's own weights."""
    lr = _short(cfg.get("lr", 0))
    if cfg.get("algorithm", "ppo") == "reward-grad":
        lr += f" reward-grad K{cfg.get('grad_steps')}"
        members = [Path(r.strip()).name for r in str(cfg.get("reward_run", "")).split(",") if r.strip()]
        if len(members) > 1:  # an ensemble's gradient (members named by run folder): mean - penalty * their std
            penalty = cfg.get("reward_ensemble_penalty", 0.0)
            lr += f" ensemble {'+'.join(members)}" + (f" - {penalty:g} sd" if penalty else "")
    lr += " cosine" if cfg.get("lr_schedule", "constant") == "cosine" else ""
    if not cfg.get("lora", True):
        lr += " full"
    elif cfg.get("lora_targets", "attention") == "all":
        lr += " lora-all"
        scale = cfg.get("conv_lr_scale", 1.0)
        lr += f" conv x{scale:g}" if scale != 1.0 else ""
    beta = cfg.get("kl_coef", DEFAULT_KL_COEF)
    lr += f" beta {beta:g}" if beta != DEFAULT_KL_COEF else ""
    batch = cfg.get("prompts_per_step", DEFAULT_BATCH[0]), cfg.get("samples_per_prompt", DEFAULT_BATCH[1])
    lr += f" batch {batch[0]}x{batch[1]}" if batch != DEFAULT_BATCH else ""
    return lr + (f" weights {cfg['reward_weights']}" if cfg.get("reward_weights") else "")


DEFAULT_KL_COEF = 0.01  # every study before the KL weight was varied used this
DEFAULT_BATCH = (8, 4)  # prompts per step x samples per prompt of every study before the batch was varied


def _short(x: float) -> str:
    mantissa, _, exponent = f"{x:.2e}".partition("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _row_key(r: dict) -> tuple:
    return r["reward_model"], r["method"], r.get("steps", r.get("n")), r.get("seed", 0), r.get("lr")


# RL settings that may differ between the runs of one report (each RL row names its own, see lr_label): the algorithm
# (PPO or reward-grad, with its K and torch weights), the seed, the learning rate's value and schedule, which weights
# train, the KL weight, the reward's component weights and the batch's shape (prompts x samples per prompt, named
# by lr_label when it is not 8 x 4). val_prompts and eval_every only add evaluations (the
# training trajectory is the same: evaluations draw their own noise). Anything else (clip, sampler, eval prompts)
# makes studies not comparable.
PER_ROW_SETTINGS = (
    "algorithm",
    "grad_steps",
    "reward_run",
    "reward_ensemble_penalty",
    "seed",
    "lr",
    "lr_schedule",
    "lora",
    "lora_targets",
    "conv_lr_scale",
    "kl_coef",
    "reward_weights",
    "val_prompts",
    "eval_every",
    "prompts_per_step",
    "samples_per_prompt",
)


def keep_earlier(payload: dict, path: Path) -> None:
    """Rows of an earlier result file (same generator, same settings but for ``PER_ROW_SETTINGS``) that this report
    does not remake, marked ``earlier`` with that file's command and load, so a study can grow by one reward model or
    one learning-rate schedule without rerunning the others (whose run folders may be gone). RL rows from before rows
    named their learning rate get the earlier study's. Its best-of-N and network blocks are kept when this run has
    none."""
    earlier = json.loads(Path(path).read_text())
    settings = [
        {k: v for k, v in (c or {}).items() if k not in PER_ROW_SETTINGS}
        for c in (earlier.get("rl_config"), payload["rl_config"])
    ]
    if earlier.get("generator") != payload["generator"] or settings[0] != settings[1]:
        raise SystemExit(f"--keep {path}: another generator or RL settings than this report's; not comparable")
    for r in earlier["rows"]:
        if r["method"] == "rlhf" and "lr" not in r:
            r["lr"] = lr_label(earlier.get("rl_config") or {})
    made = {_row_key(r) for r in payload["rows"]}
    kept = [r | {"earlier": True} for r in earlier["rows"] if _row_key(r) not in made]
    payload["rows"] += kept
    for key in ("bon_prompts", "bon_n", "network"):
        if payload.get(key) is None:
            payload[key] = earlier.get(key)
    payload["earlier"] = {"file": str(path), "rows": len(kept), "command": earlier["command"], "load": earlier["load"]}
    if earlier.get("earlier"):  # rows that file had carried over from another: where they came from stays on record
        payload["earlier"]["earlier"] = earlier["earlier"]


def subset_gold(args, rows: list[dict], k: int) -> None:
    """RL rows' gold on the best-of-N prompts alone (the first ``k`` held-out prompts), for a like-for-like check."""
    gold = GoldScorer()
    prompts = split_prompts(args.data, "test")[:k]
    cache: dict[Path, float] = {}

    def mean_gold(path: Path) -> float:
        if path not in cache:
            cache[path] = float(gold(np.load(path)[:k], prompts)["utility"].mean())
        return cache[path]

    for r in rows:
        if r["method"] == "rlhf":
            run = run_dir(args, *parse_model(r["spec"])[:2], r.get("seed", 0))
            r[f"gold_base_first{k}"] = mean_gold(run / "eval" / "step_00000.npy")
            r[f"gold_tuned_first{k}"] = mean_gold(run / "eval" / f"step_{r['steps']:05d}.npy")


def before_after_sheet(args, rows: list[dict], path: Path, n_prompts: int = 8) -> None:
    """Held-out prompts, the same seeds: the base's sample, then each RL run's final sample."""
    from rewarddance_trainer.generator.sheet import contact_sheet

    runs = [r for r in rows if "curve" in r and not r.get("earlier")]  # each RL run's last evaluation made here
    if not runs:
        return
    prompts = split_prompts(args.data, "test")[:n_prompts]
    runs = [r for r in runs if r.get("seed", 0) == 0] or runs  # one column per reward model
    first = run_dir(args, *parse_model(runs[0]["spec"])[:2], runs[0].get("seed", 0))
    columns = [np.load(first / "eval" / "step_00000.npy")]
    for r in runs:
        run = run_dir(args, *parse_model(r["spec"])[:2], r.get("seed", 0))
        columns.append(np.load(run / "eval" / f"step_{r['steps']:05d}.npy"))
    names = " | ".join(["base"] + [f"{r['reward_model']} @ {r['steps']}" for r in runs])
    sheet = [(f"{p}   [{names}]", [c[i] for c in columns]) for i, p in enumerate(prompts)]
    contact_sheet(sheet, path, cell=96)


def _f(v, digits=3) -> str:
    return "" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(p: dict) -> str:
    head = [
        "reward model",
        "test R",
        "method",
        "steps / N",
        "KL",
        "proxy base",
        "proxy tuned",
        "gold base",
        "gold tuned",
        "gold gain",
        "hacking gap",
    ]
    table = [
        [
            r["reward_model"] + (" *" if r.get("earlier") else ""),
            _f(r.get("test_spearman_R")),
            r["method"] + _run_tag(r),
            r.get("steps", r.get("n")),
            "" if r["kl"] is None else f"{r['kl']:.3g}",
            _f(r["proxy_base"]),
            _f(r["proxy_tuned"]),
            _f(r["gold_base"]),
            _f(r["gold_tuned"]),
            f"{100 * r['gold_gain_rel']:+.1f}%",
            f"{100 * r['hacking_gap']:+.1f} pts",
        ]
        for r in p["rows"]
    ]
    lines = [
        "# RLHF study",
        "",
        f"Generator `{p['generator']}`; {p['eval_prompts']} held-out (test split) prompts, one fixed-seed sample each"
        f" (RL rows) or the best of the first N of {p['bon_n']} fixed-seed samples of the first {p['bon_prompts']}"
        " prompts (best-of-N rows; base = the first sample); gold = oracle utility"
        " (0.4/0.25/0.25/0.1), never seen by training. KL: per-pixel Gaussian KL to the base summed over the chain's"
        " stochastic steps, on the held-out samples. Hacking gap = relative proxy gain - relative gold gain.",
        "",
        markdown_table(head, table),
        "",
    ]
    lines += seed_summary(p["rows"])
    k = p.get("bon_prompts")
    subset = [r for r in p["rows"] if r["method"] == "rlhf" and f"gold_base_first{k}" in r]
    if subset:
        lines += [
            f"Like for like with best-of-N: RL rows' gold on the same first {k} prompts (base sample = the RL"
            " sampler at the evaluation seed, not best-of-N's first sample):",
            "",
            markdown_table(
                ["reward model", "steps", f"gold base ({k})", f"gold tuned ({k})", "gain"],
                [
                    [
                        r["reward_model"] + _run_tag(r),
                        r["steps"],
                        _f(r[f"gold_base_first{k}"]),
                        _f(r[f"gold_tuned_first{k}"]),
                        f"{100 * (r[f'gold_tuned_first{k}'] / r[f'gold_base_first{k}'] - 1):+.1f}%",
                    ]
                    for r in subset
                ],
            ),
            "",
        ]
    if p.get("network"):
        n = p["network"]
        lines += [
            f"Scoring one RL step's batch ({n['batch_images']} images, {n['requests_per_step']} requests), median of"
            f" {n['repeats']}: in-process {n['in-process']['seconds_per_step_median']:.3f} s,"
            f" HTTP {n['http']['seconds_per_step_median']:.3f} s, gRPC {n['grpc']['seconds_per_step_median']:.3f} s"
            f" (max |R diff| vs in-process: HTTP {n['max_abs_diff_http_vs_inprocess']:.1e},"
            f" gRPC {n['max_abs_diff_grpc_vs_inprocess']:.1e}); load {[round(x, 2) for x in n['load']]}.",
            "",
        ]
    lines += [f"Machine: {p['machine']}; load {p['load']}; command `{p['command']}`."]
    if p.get("earlier"):
        e = p["earlier"]
        lines += [
            "",
            f"\\* {e['rows']} rows carried over from the earlier study `{e['file']}` (same base generator and RL"
            f" settings but those each RL row names: learning rate and schedule, adapters, KL weight, reward weights,"
            f" batch shape; load {e['load']}; command `{e['command']}`).",
        ]
    return "\n".join(lines)


def _run_tag(r: dict) -> str:
    """ " (seed 1, lr 6e-3 cosine)": what tells an RL row from another of the same reward model and budget."""
    parts = ([f"seed {r['seed']}"] if r.get("seed") else []) + ([f"lr {r['lr']}"] if r.get("lr") else [])
    return f" ({', '.join(parts)})" if parts else ""


def seed_summary(rows: list[dict]) -> list[str]:
    """Markdown lines: RL rows of the same reward model and budget over their seeds (mean and spread of the gold
    gain), where a reward model has more than one seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] == "rlhf":
            groups.setdefault((r["reward_model"], r.get("test_spearman_R"), r["steps"], r.get("lr")), []).append(r)
    table = []
    for (model, test_r, steps, lr), group in groups.items():
        if len(group) < 2:
            continue
        group = sorted(group, key=lambda r: r.get("seed", 0))
        gains = np.array([100 * r["gold_gain_rel"] for r in group])
        chosen = ""
        if all("gold_gain_selected_rel" in r for r in group):
            sel = np.array([100 * r["gold_gain_selected_rel"] for r in group])
            steps_at = "/".join(str(r["selected_step"]) for r in group)
            chosen = f"{sel.mean():+.1f}% ± {sel.std(ddof=1):.1f} (steps {steps_at})"
        table.append(
            [
                model,
                _f(test_r),
                lr or "",
                steps,
                len(group),
                f"{gains.mean():+.1f}% ± {gains.std(ddof=1):.1f}",
                ", ".join(f"{g:+.1f}% (seed {r.get('seed', 0)})" for g, r in zip(gains, group, strict=True)),
                _f(float(np.mean([r["gold_tuned"] for r in group]))),
                f"{np.mean([r['kl'] for r in group]):.3g}",
                chosen,
            ]
        )
    if not table:
        return []
    head = ["reward model", "test R", "lr", "steps", "seeds", "gold gain, mean ± sd", "per seed", "gold tuned", "KL"]
    head.append("gold gain of the policy kept by val proxy (its steps)")
    return [
        "RL over seeds (each seed its own prompts, noise, LoRA init and evaluation noise):",
        "",
        markdown_table(head, table),
        "",
    ]


def plot(rows: list[dict], bon: dict | None, path: Path) -> None:
    """Held-out curves, one colour per reward model and learning rate: each seed thin, their mean thick (over the
    steps every seed reached). Gold is shown as the gain over each run's own step 0 (seeds differ in base gold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "curve" in r:
            groups.setdefault((r["reward_model"], r.get("lr"), r.get("test_spearman_R")), []).append(r)
    # one legend for the three panels, below them (it covered the curves when drawn in each)
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 5 + 0.12 * len(groups)))
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, ((model, lr, test_r), group) in enumerate(groups.items()):
        colour = colours[i % len(colours)]
        series = {"proxy": [], "gain": [], "kl": []}
        for r in group:
            c = r["curve"]
            steps = [x["step"] for x in c]
            series["proxy"].append(dict(zip(steps, [x["proxy"] for x in c], strict=True)))
            series["gain"].append(dict(zip(steps, [100 * (x["gold"] / c[0]["gold"] - 1) for x in c], strict=True)))
            series["kl"].append(dict(zip(steps, [x["kl"] for x in c], strict=True)))
        label = f"{model}{f' lr {lr}' if lr else ''} (R {test_r or 0:.2f}, {len(group)} seed{'s' * (len(group) > 1)})"
        for ax, key in ((a1, "proxy"), (a2, "gain"), (a3, "kl")):
            for run in series[key]:
                ax.plot(list(run), list(run.values()), "-", color=colour, lw=0.7, alpha=0.35)
            shared = sorted(set.intersection(*(set(run) for run in series[key])))
            ax.plot(
                shared,
                [np.mean([run[k] for run in series[key]]) for k in shared],
                "o-",
                color=colour,
                lw=2,
                label=label,
            )
    for r in rows:
        if r["method"] == "best_of_n" and r["n"] == 16:
            a2.axhline(100 * r["gold_gain_rel"], ls=":", lw=0.8, color="gray")
            a2.annotate(f"BoN-16 {r['reward_model']}", (0, 100 * r["gold_gain_rel"]), fontsize=6, color="gray")
    a2.axhline(50, color="black", lw=0.8, ls="--")
    a2.annotate("target +50 %", (0, 50), fontsize=7, va="bottom")
    a1.set_title("proxy reward (held-out, own reward model)")
    a2.set_title("oracle gold utility, % over step 0 (held-out; dotted: best-of-16)")
    a3.set_title("KL to base (log scale)")
    a3.set_yscale("symlog", linthresh=1e-3)
    for a in (a1, a2, a3):
        a.set_xlabel("RL step")
        a.grid(alpha=0.3)
    handles, labels = a1.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    legend_rows = np.ceil(len(handles) / 3)
    fig.tight_layout(rect=(0, min(0.45, 0.06 + 0.032 * legend_rows), 1, 1))  # room below for the legend
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generator", type=Path, default=ROOT / "runs/generator-base")
    ap.add_argument("--data", type=Path, default=ROOT / "data/shapes20k")
    ap.add_argument("--repo", type=Path, required=True, help="model repository with the reward models")
    ap.add_argument("--models", nargs="+", required=True, help="name@version:steps (steps 0: baselines only)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/rlhf-study")
    ap.add_argument("--phases", nargs="+", default=["rl", "bon", "net", "report"])
    ap.add_argument("--eval-prompts", type=int, default=200)
    ap.add_argument("--bon-n", type=int, default=16)
    ap.add_argument("--bon-ks", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--bon-prompts", type=int, default=200, help="the first this many held-out prompts")
    ap.add_argument("--net-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="RL runs per reward model, one per seed")
    ap.add_argument("--set", nargs="*", default=[], help="RLHFConfig overrides, e.g. lr=1e-3 eval_every=10")
    ap.add_argument(
        "--keep", type=Path, help="an earlier result JSON whose rows this report keeps where it does not remake them"
    )
    ap.add_argument(
        "--name", default="rlhf", help="result files' stem: benchmarks/results/NAME.{md,json,png}, NAME_sheet.png"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set:
        k, _, v = item.partition("=")
        default = getattr(RLHFConfig, k)
        overrides[k] = type(default)(v) if not isinstance(default, bool) else v.lower() in ("1", "true", "yes")
    cfg = RLHFConfig(**(RLHFConfig().to_dict() | overrides | {"eval_prompts": args.eval_prompts}))
    train_prompts = split_prompts(args.data, cfg.split)
    eval_prompts = split_prompts(args.data, "test")[: args.eval_prompts]
    gold = GoldScorer() if {"rl", "bon"} & set(args.phases) else None
    if "rl" in args.phases:
        phase_rl(args, cfg, train_prompts, eval_prompts, gold)
    if "bon" in args.phases:
        phase_bon(args, cfg, eval_prompts, gold)
    if "net" in args.phases:
        phase_net(args, cfg, train_prompts)
    if "report" in args.phases:
        phase_report(args, cfg)


if __name__ == "__main__":
    main()
