"""The shapes-world generator: diffusers pipeline save/reload, classifier-free guidance, resumable training with EMA,
the generate CLI, and LoRA fine-tuning of a user's own (tiny, built-from-configs) Stable Diffusion pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rewarddance_trainer.generator.config import GeneratorTrainConfig
from rewarddance_trainer.generator.load import generate_images, load_generator
from rewarddance_trainer.generator.pipeline import ShapesDiffusionPipeline, default_scheduler, make_unet
from rewarddance_trainer.generator.text import load_minilm
from rewarddance_trainer.generator.train import train
from safetensors.torch import load_file

from rewarddance.cli import main

PROMPTS = ["a large red circle in the center", "a small blue square near the top left, pixel art"]


@pytest.fixture(scope="module")
def text():
    torch.set_num_threads(1)
    return load_minilm()


@pytest.fixture(scope="module")
def tiny_pipe(text):
    torch.manual_seed(0)
    pipe = ShapesDiffusionPipeline(make_unet(16, 8), default_scheduler(), text[0], text[1])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sample(pipe, guidance=3.0, seed=0, prompts=PROMPTS):
    return generate_images(pipe, prompts, n=2, steps=4, guidance=guidance, seed=seed)


def test_pipeline_saves_and_reloads_with_identical_samples(tiny_pipe, tmp_path):
    before = _sample(tiny_pipe)
    assert before.shape == (4, 16, 16, 3) and before.dtype == np.uint8
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "ShapesDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    reloaded = ShapesDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    reloaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_sample(reloaded), before)
    np.testing.assert_array_equal(_sample(load_generator(tmp_path / "pipe")), before)  # generic loader too
    assert not np.array_equal(_sample(reloaded, seed=1), before)  # the seed matters


def test_classifier_free_guidance_changes_outputs(tiny_pipe):
    plain = _sample(tiny_pipe, guidance=1.0).astype(int)
    guided = _sample(tiny_pipe, guidance=3.0).astype(int)
    strong = _sample(tiny_pipe, guidance=7.0).astype(int)
    d1, d2 = np.abs(guided - plain).mean(), np.abs(strong - plain).mean()
    assert d1 > 0.5 and d2 > d1  # guidance moves samples, and further with a larger scale
    # at scale <= 1 only the conditional branch runs: the scale itself then has no effect
    np.testing.assert_array_equal(_sample(tiny_pipe, guidance=0.5), plain)


def _cfg(**kw) -> GeneratorTrainConfig:
    base = dict(
        steps=6,
        batch_size=4,
        image_size=16,
        width=8,
        warmup=2,
        ckpt_every=3,
        sample_every=6,
        sample_steps=2,
        synthetic=12,
    )
    return GeneratorTrainConfig(**{**base, **kw})


def test_training_is_deterministic_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    straight = train(None, tmp_path / "a", _cfg(), progress=False, log_every=1)
    assert straight["steps_completed"] == 6
    again = train(None, tmp_path / "c", _cfg(), progress=False, log_every=1)
    assert again["final_loss"] == straight["final_loss"]
    # interrupted after step 3 (checkpoint written), then the same command resumes to step 6
    part = train(None, tmp_path / "b", _cfg(), progress=False, log_every=1, stop_at=3)
    assert part["steps_completed"] == 3
    assert torch.load(tmp_path / "b" / "checkpoint" / "state.pt", weights_only=False)["step"] == 3
    resumed = train(None, tmp_path / "b", _cfg(), progress=False, log_every=1)
    assert resumed["steps_completed"] == 6
    for name in ("unet", "ema"):
        a = load_file(tmp_path / "a" / "checkpoint" / f"{name}.safetensors")
        b = load_file(tmp_path / "b" / "checkpoint" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ema = load_file(tmp_path / "a" / "checkpoint" / "ema.safetensors")
    unet = load_file(tmp_path / "a" / "checkpoint" / "unet.safetensors")
    assert not all(torch.equal(ema[k], unet[k]) for k in ema)  # EMA is a separate average
    for run in ("a", "b"):
        assert (tmp_path / run / "samples" / "step_000006.png").exists()
        assert (tmp_path / run / "loss.png").exists()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(np.isfinite(losses))
    # the saved diffusers pipeline holds the EMA weights
    pipe = load_generator(tmp_path / "a")
    sd = pipe.unet.state_dict()
    assert all(torch.equal(sd[k], ema[k]) for k in ema)


def test_train_and_generate_cli(tmp_path):
    from rewarddance_trainer.shapes.synth import SynthConfig, synthesize

    data = tmp_path / "ds"
    synthesize(
        data, SynthConfig(n_prompts=10, images_per_prompt=2, image_size=32, seed=3, chunk_prompts=10), progress=False
    )
    run = tmp_path / "run"
    args = ["train", "generator", "--data", str(data), "--out", str(run), "--steps", "2", "--batch-size", "4"]
    args += ["--image-size", "16", "--width", "8", "--ckpt-every", "2", "--sample-steps", "2", "--no-progress"]
    assert main([*args, "--stop-at", "1"]) == 0  # an interruption on purpose: checkpoint at step 1, then resume
    assert json.loads((run / "run.json").read_text())["steps_completed"] == 1
    assert main(args) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["steps_completed"] == 2 and meta["data"]["images"] > 0
    out = tmp_path / "gen"
    gen = ["generate", "--generator", str(run), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--n", "3"]
    assert main([*gen, "--steps", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[3]["prompt"] == PROMPTS[1]
    assert (out / "contact_sheet.png").exists() and (out / "001_002.png").exists()
    assert main([*gen, "--steps", "2", "--out", str(tmp_path / "gen2")]) == 0
    assert (out / "000_001.png").read_bytes() == (tmp_path / "gen2" / "000_001.png").read_bytes()


def tiny_stable_diffusion(directory: Path) -> Path:
    """A real StableDiffusionPipeline (UNet + VAE + text model), tiny and random, built from configs only."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from rewarddance_trainer.encoders.registry import minilm_dir
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), model_max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            pad_token_id=0,
            bos_token_id=101,
            eos_token_id=102,
        )
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)
    return directory


def test_lora_finetunes_a_local_stable_diffusion_pipeline(tmp_path):
    torch.set_num_threads(1)
    base = tiny_stable_diffusion(tmp_path / "tiny-sd")
    base_pipe = load_generator(base)
    assert type(base_pipe).__name__ == "StableDiffusionPipeline"
    before = generate_images(base_pipe, PROMPTS, n=2, steps=3, guidance=3.0)
    assert before.shape == (4, 16, 16, 3)
    run = tmp_path / "lora-run"
    args = ["train", "generator", "--base", str(base), "--synthetic", "6", "--out", str(run), "--steps", "3"]
    args += ["--batch-size", "4", "--lr", "0.01", "--lora-rank", "4", "--ckpt-every", "3", "--no-progress"]
    assert main([*args, "--stop-at", "1"]) == 2 and not run.exists()  # refused, not silently ignored
    assert main(args) == 0
    meta = json.loads((run / "lora.json").read_text())
    assert meta["steps_completed"] == 3 and meta["resolution"] == 16 and Path(meta["base"]) == base.resolve()
    weights = load_file(run / "lora" / "pytorch_lora_weights.safetensors")
    assert weights and all("lora" in k for k in weights)
    assert any(k.startswith("unet.") for k in weights)
    tuned = load_generator(run)
    assert "rewarddance" in tuned.unet.peft_config
    after = generate_images(tuned, PROMPTS, n=2, steps=3, guidance=3.0)
    assert np.abs(after.astype(int) - before).mean() > 0.1  # the adapters change the samples
    tuned.disable_lora()
    np.testing.assert_array_equal(generate_images(tuned, PROMPTS, n=2, steps=3, guidance=3.0), before)
    # the base weights are untouched on disk, and the run resumes to a longer schedule
    np.testing.assert_array_equal(generate_images(load_generator(base), PROMPTS, n=2, steps=3, guidance=3.0), before)
    assert main([a if a != "3" else "5" for a in args]) == 0  # same command, --steps 5 (and --ckpt-every 5)
    assert json.loads((run / "lora.json").read_text())["steps_completed"] == 5


def test_quality_measures_with_a_custom_feature_extractor():
    from rewarddance_trainer.encoders.model import Encoder
    from rewarddance_trainer.generator.quality import EncoderFeatures, diversity, fid_kid, oracle_fidelity_vs_baseline
    from rewarddance_trainer.oracle.oracle import Oracle
    from rewarddance_trainer.oracle.parse import parse_prompt
    from rewarddance_trainer.shapes.candidates import realize
    from rewarddance_trainer.shapes.prompts import describe, sample_spec
    from rewarddance_trainer.shapes.render import render

    torch.manual_seed(0)
    feature = EncoderFeatures(Encoder.create("shapes-clip-tiny"))  # random init: any nn.Module works for torchmetrics
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng) for _ in range(12)]
    prompts = [describe(s, rng) for s in specs]
    real = np.stack([render(realize(s, rng), 32, rng) for s in specs for _ in range(2)])
    other = np.stack([render(realize(s, rng), 32, rng) for s in specs for _ in range(2)])
    noise = rng.integers(0, 256, size=real.shape, dtype=np.uint8)
    close, far = fid_kid(real, other, feature, subset_size=10), fid_kid(real, noise, feature, subset_size=10)
    assert far["fid"] > 3 * close["fid"] and far["kid_mean"] > close["kid_mean"]
    same = diversity(np.repeat(real[:1], 4, axis=0), 4, feature)
    assert same["pixel_rms_distance"] == 0 and abs(same["embedding_distance"]) < 1e-5
    assert diversity(real, 2, feature)["pixel_rms_distance"] > 0.02
    # rendered faithful images: fidelity to their own prompt beats the random-prompt baseline
    result = oracle_fidelity_vs_baseline(Oracle.load(), real, [parse_prompt(p) for p in prompts], 2)
    assert result["own_prompt_fidelity"] > 0.85 and result["gap"] > 0.3
