"""RLHF on tiny models: the policy learns a reward it can learn, KL starts at 0, resuming repeats the next step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rewarddance_trainer.generator.pipeline import ShapesDiffusionPipeline, default_scheduler, make_unet
from rewarddance_trainer.generator.text import load_minilm
from rewarddance_trainer.rlhf.config import RLHFConfig
from rewarddance_trainer.rlhf.ddim import log_prob, step_mean, step_params
from rewarddance_trainer.rlhf.train import group_advantages, read_metrics, train

TRAIN = ["a red circle", "a blue square", "a green star", "a yellow triangle"]
EVAL = ["a red circle in the center", "a small blue square", "a purple hexagon", "a cyan diamond"]


@pytest.fixture(scope="module")
def text():
    torch.set_num_threads(1)
    return load_minilm()


def tiny_pipe(text) -> ShapesDiffusionPipeline:
    torch.manual_seed(0)
    pipe = ShapesDiffusionPipeline(make_unet(16, 8), default_scheduler(), text[0], text[1])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def redness(images: np.ndarray, prompts: list[str]) -> np.ndarray:
    x = images.astype(np.float64) / 255
    return x[..., 0].mean((1, 2)) - 0.5 * (x[..., 1] + x[..., 2]).mean((1, 2))


def _cfg(**kw) -> RLHFConfig:
    base = dict(
        steps=8,
        prompts_per_step=2,
        samples_per_prompt=8,
        sample_steps=6,
        eval_every=8,
        eval_prompts=4,
        minibatch=16,
        lr=3e-3,
        clip_range=0.2,
        kl_coef=0.0,
        lora=False,
        ckpt_every=1,
    )
    return RLHFConfig(**(base | kw))


def test_ddim_step_matches_the_scheduler(text):
    """Our Gaussian step is diffusers' DDIM step (same noise -> same x_{t-1}), and its log-prob is the density."""
    sched = default_scheduler()
    sched.set_timesteps(4)
    t = sched.timesteps[1]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    p = step_params(sched, int(t), 4, eta=1.0)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ours = step_mean(sched, eps, x, p) + p.sigma * noise
    theirs = sched.step(eps, t, x, eta=1.0, variance_noise=noise).prev_sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    dist = torch.distributions.Normal(step_mean(sched, eps, x, p), p.sigma)
    torch.testing.assert_close(
        log_prob(ours, step_mean(sched, eps, x, p), p.sigma), dist.log_prob(ours).mean((1, 2, 3))
    )
    last = step_params(sched, int(sched.timesteps[-1]), 4, eta=1.0)
    assert not last.stochastic  # alpha_prev = 1 at the end: deterministic, no action


def test_group_advantages_are_normalised_per_prompt():
    adv = group_advantages(np.array([1.0, 2.0, 3.0, 10.0, 10.0, 10.0]), 3, clip=5.0).numpy()
    np.testing.assert_allclose(adv[:3], [-1.2247, 0.0, 1.2247], atol=1e-3)
    np.testing.assert_allclose(adv[3:], 0.0)  # one value: no signal, not an explosion


def test_rl_learns_redness_with_kl_zero_at_start(text, tmp_path):
    train(tiny_pipe(text), redness, tmp_path / "run", _cfg(), TRAIN, EVAL, progress=False)
    rows = read_metrics(tmp_path / "run")
    evals = [r for r in rows if r["kind"] == "eval"]
    steps = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in evals] == [0, 8]
    assert evals[0]["kl"] == 0.0 and steps[0]["kl"] == 0.0  # the policy is the base before any update
    assert evals[1]["kl"] > 0 and steps[-1]["kl"] > 0
    # held-out prompts, the same seeds: the tuned policy's images are redder than the base's
    assert evals[1]["proxy"] > evals[0]["proxy"] + 0.02, evals
    assert np.mean([r["proxy"] for r in steps[-2:]]) > np.mean([r["proxy"] for r in steps[:2]])
    assert (tmp_path / "run" / "pipeline" / "model_index.json").exists()
    assert (tmp_path / "run" / "curves.png").exists()


@pytest.mark.parametrize("targets", ["attention", "all"])
def test_lora_policy_starts_at_the_base_and_saves_a_merged_pipeline(text, tmp_path, targets):
    from rewarddance_trainer.generator.load import generate_images, load_generator

    cfg = _cfg(steps=2, samples_per_prompt=2, lora=True, lr=3e-2, kl_coef=0.01, eval_every=100, lora_targets=targets)
    train(tiny_pipe(text), redness, tmp_path / "run", cfg, TRAIN, EVAL, progress=False)
    steps = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert steps[0]["kl"] == 0.0 and steps[1]["kl"] > 0
    trained = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["trainable"]
    # the full-resolution level has no attention: only "all" puts adapters on its convolutions
    full_res = [k for k in trained if k.startswith("down_blocks.0.resnets.0.conv1.lora_")]
    assert bool(full_res) == (targets == "all"), sorted(trained)[:4]
    assert all("lora_" in k for k in trained)
    tuned = load_generator(tmp_path / "run")  # what `rewarddance generate --generator RUN` loads
    base = tiny_pipe(text)
    a = generate_images(tuned, EVAL[:2], n=2, steps=4, guidance=1.0, seed=0)
    b = generate_images(base, EVAL[:2], n=2, steps=4, guidance=1.0, seed=0)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.1


def test_conv_adapters_train_at_their_own_rate(text, tmp_path):
    from rewarddance_trainer.rlhf.policy import Policy

    policy = Policy(tiny_pipe(text), lora=True, targets="all")
    attn, conv = policy.param_groups(0.25)
    assert conv["lr_scale"] == 0.25 and attn["lr_scale"] == 1.0
    assert len(attn["params"]) + len(conv["params"]) == len(policy.parameters())
    n_attn = sum(p.numel() for p in attn["params"])
    assert n_attn == sum(p.numel() for p in Policy(tiny_pipe(text), lora=True).parameters())
    assert len(Policy(tiny_pipe(text), lora=True).param_groups(0.25)) == 1  # no convolution adapters, one group

    def conv_moved(scale: float) -> float:
        cfg = _cfg(steps=1, samples_per_prompt=2, lr=3e-2, eval_every=100, lora_targets="all", conv_lr_scale=scale)
        run = tmp_path / f"run-{scale}"
        train(tiny_pipe(text), redness, run, cfg, TRAIN, EVAL, progress=False)
        trained = torch.load(run / "checkpoint.pt", weights_only=False)["trainable"]
        # lora_B starts at 0: its size after the step is how far that adapter moved
        return sum(v.abs().sum().item() for k, v in trained.items() if ".conv1.lora_B" in k)

    # Adam moves each weight by ~lr on its first step whatever the gradient's size: a tenth of the rate, a tenth as far
    assert conv_moved(0.1) == pytest.approx(0.1 * conv_moved(1.0), rel=0.05)
    with pytest.raises(ValueError, match="--lora-targets all"):
        RLHFConfig(conv_lr_scale=0.5)


def test_unknown_lora_targets_are_refused():
    with pytest.raises(ValueError, match="--lora-targets"):
        RLHFConfig(lora_targets="convs")


def test_resume_repeats_the_next_step(text, tmp_path):
    cfg = _cfg(steps=2, samples_per_prompt=4, minibatch=4, eval_every=100)  # two updates per step: Adam state
    train(tiny_pipe(text), redness, tmp_path / "straight", cfg, TRAIN, EVAL, progress=False)
    first = _cfg(steps=1, samples_per_prompt=4, minibatch=4, eval_every=100)
    train(tiny_pipe(text), redness, tmp_path / "resumed", first, TRAIN, EVAL, progress=False)
    train(tiny_pipe(text), redness, tmp_path / "resumed", cfg, TRAIN, EVAL, progress=False)
    keys = ("proxy", "kl", "loss", "clip_fraction")
    straight = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "straight") if r["kind"] == "train"]
    resumed = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "resumed") if r["kind"] == "train"]
    assert len(resumed) == 2
    assert straight == resumed
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["trainable"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["trainable"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_schedule_decays_to_zero_and_is_logged(text, tmp_path):
    cfg = _cfg(steps=4, lr=1e-2, lr_schedule="cosine")
    assert [round(cfg.lr_at(s), 6) for s in range(5)] == [0.01, 0.008536, 0.005, 0.001464, 0.0]
    assert _cfg(lr=1e-2).lr_at(3) == 1e-2  # constant stays the default
    with pytest.raises(ValueError, match="lr-schedule"):
        _cfg(lr_schedule="linear")
    run = tmp_path / "run"
    train(
        tiny_pipe(text),
        redness,
        run,
        _cfg(steps=2, samples_per_prompt=2, eval_every=100, lr_schedule="cosine"),
        TRAIN,
        EVAL,
        progress=False,
    )
    assert [r["lr"] for r in read_metrics(run) if r["kind"] == "train"] == [3e-3, 1.5e-3]


def test_val_prompts_keep_the_policy_with_the_best_proxy(text, tmp_path):
    """Early stopping on the val split: best/ holds the policy of the evaluation with the highest val proxy."""
    from rewarddance_trainer.generator.load import generate_images, load_generator

    cfg = _cfg(steps=4, eval_every=2, val_prompts=2)
    info = train(tiny_pipe(text), redness, tmp_path / "run", cfg, TRAIN, EVAL, progress=False, val_prompts=TRAIN[:2])
    val = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "val"]
    assert [r["step"] for r in val] == [0, 2, 4]
    best = max(val, key=lambda r: r["proxy"])
    assert info["best"]["step"] == best["step"] and info["best"]["val_proxy"] == best["proxy"]
    assert val[-1]["proxy"] > val[0]["proxy"]  # redness is learnable: the base is not the best
    kept = generate_images(load_generator(tmp_path / "run" / "best"), EVAL[:2], n=2, steps=4, guidance=1.0, seed=0)
    base = generate_images(tiny_pipe(text), EVAL[:2], n=2, steps=4, guidance=1.0, seed=0)
    assert np.abs(kept.astype(int) - base.astype(int)).mean() > 0.1
    if best["step"] == 4:  # the last evaluation won: best/ is the final pipeline
        final = generate_images(load_generator(tmp_path / "run"), EVAL[:2], n=2, steps=4, guidance=1.0, seed=0)
        assert np.array_equal(kept, final)


def redness_t(x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """``redness`` on the chain's float output (n, 3, h, w) in [-1, 1], differentiable."""
    p = (x + 1) / 2
    return p[:, 0].mean((1, 2)) - 0.5 * (p[:, 1] + p[:, 2]).mean((1, 2))


def _grad_cfg(**kw) -> RLHFConfig:
    return _cfg(**({"algorithm": "reward-grad", "grad_steps": 2, "lr": 1e-3, "steps": 4, "eval_every": 4} | kw))


def test_reward_gradient_learns_redness_and_kl_anchors_it(text, tmp_path):
    def run(name: str, **kw) -> list[dict]:
        cfg = _grad_cfg(**kw)
        train(tiny_pipe(text), redness, tmp_path / name, cfg, TRAIN, EVAL, progress=False, grad_reward=redness_t)
        return read_metrics(tmp_path / name)

    free = run("free")
    evals = [r for r in free if r["kind"] == "eval"]
    steps = [r for r in free if r["kind"] == "train"]
    assert evals[0]["kl"] == 0.0 and steps[0]["kl"] == 0.0  # the first minibatch is sampled by the base
    assert evals[1]["kl"] > 0
    # the logged reward_grad (torch) and proxy (numpy on the uint8 images) are the same function up to rounding
    assert abs(steps[0]["reward_grad"] - steps[0]["proxy"]) < 0.01
    assert evals[1]["proxy"] > evals[0]["proxy"] + 0.05, evals  # held-out prompts, the same seeds: redder
    # the same run with a heavy KL weight moves the policy less (the early steps' KL gradient reaches the UNet too)
    anchored = [r for r in run("anchored", kl_coef=50.0) if r["kind"] == "eval"]
    assert anchored[1]["kl"] < 0.5 * evals[1]["kl"], (anchored, evals)


def test_reward_gradient_resume_repeats_the_next_step(text, tmp_path):
    def go(name: str, steps: int) -> None:
        cfg = _grad_cfg(steps=steps, samples_per_prompt=4, minibatch=4, eval_every=100, kl_coef=0.1)
        train(tiny_pipe(text), redness, tmp_path / name, cfg, TRAIN, EVAL, progress=False, grad_reward=redness_t)

    go("straight", 2)
    go("resumed", 1)
    go("resumed", 2)
    keys = ("proxy", "kl", "loss", "reward_grad")
    straight = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "straight") if r["kind"] == "train"]
    resumed = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "resumed") if r["kind"] == "train"]
    assert len(resumed) == 2 and straight == resumed


def test_reward_gradient_needs_a_differentiable_reward(text, tmp_path):
    with pytest.raises(ValueError, match="differentiable reward"):
        train(tiny_pipe(text), redness, tmp_path / "run", _grad_cfg(), TRAIN, EVAL, progress=False)
    with pytest.raises(ValueError, match="--algorithm"):
        RLHFConfig(algorithm="dpo")
    with pytest.raises(ValueError, match="--grad-steps"):
        RLHFConfig(algorithm="reward-grad", grad_steps=0)


@pytest.mark.parametrize("grad_steps", [2, 6])
def test_reward_gradient_reaches_exactly_the_last_k_steps(text, grad_steps):
    """--grad-steps K: the reward's gradient flows into the UNet outputs of the chain's last K steps and no earlier
    (K = --sample-steps backpropagates through the whole chain); with no KL weight nothing else sends a gradient."""
    from rewarddance_trainer.rlhf.direct import _chain_with_grad
    from rewarddance_trainer.rlhf.policy import Policy

    cfg = _grad_cfg(grad_steps=grad_steps, kl_coef=0.0)  # sample_steps 6
    pipe = tiny_pipe(text)
    policy = Policy(pipe, lora=True)
    reached = []
    eps = policy.eps

    def tracked_eps(x, t, cond):
        out = eps(x, t, cond)
        if out.requires_grad:
            k = len(reached)
            reached.append(False)
            out.register_hook(lambda g, k=k: reached.__setitem__(k, bool(g.abs().sum() > 0)) or g)
        return out

    policy.eps = tracked_eps
    states, mask = pipe.encode(TRAIN[:2])
    loss, *_ = _chain_with_grad(policy, (states, mask), TRAIN[:2], redness_t, cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert reached == [True] * grad_steps  # one graph per step in the window, every one reached by the reward
