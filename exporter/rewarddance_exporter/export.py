"""Export a trained reward run (and the encoders it was trained on) into a Triton model repository.

One call writes, each as a new numbered version that is never overwritten:
- ``image_encoder/<v>`` and ``text_encoder/<v>``, unless a version with the same encoder weights (sha256) exists;
- ``reward_<scale>/<v>``: model.onnx, manifest.json, tokenizer.json, the fitted component scorers, and for the
  python flavour the generic ``model.py``; optional fp16 / int8 variants beside the fp32 graph.
Every graph is checked against its torch module on random and real inputs before its version is written; a diff
above the tolerance (1e-4 for fp32) stops the export. The finished reward version is then run end to end through
the serving pipeline (``rewarddance.scoring``) against the training path on real images, and that diff is
recorded too. Versions are written to a hidden staging directory and renamed into place, so a reader (Triton,
the gateway's reload) never sees half a version.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rewarddance_trainer.data import schema
from rewarddance_trainer.encoders import registry
from rewarddance_trainer.encoders.model import WEIGHTS_FILE as ENCODER_WEIGHTS
from rewarddance_trainer.encoders.model import Encoder
from rewarddance_trainer.reward.model import MANIFEST_FILE as RUN_MANIFEST
from rewarddance_trainer.reward.model import load_model, parameter_count

from rewarddance.components.base import COMPONENTS, FeatureBatch
from rewarddance.components.bundle import ComponentSet
from rewarddance.components.composition import composition_features
from rewarddance.preprocess import load_pixels
from rewarddance.repository import (
    DEFAULT_RESIZE,
    FEATURE_ARCHITECTURE,
    FLAVOURS,
    MODEL_FILE,
    EncoderManifest,
    EncoderRef,
    ExportRecord,
    ImagePreprocessing,
    ModelRepository,
    ModelVersion,
    RewardManifest,
    TextPreprocessing,
    TritonOptions,
    publish,
    staged,
)
from rewarddance.scoring.pipeline import RewardPipeline

from . import onnx_io, precision
from .graphs import GraphSpec, image_graph, reward_graph, text_graph

TOLERANCE = 1e-4
REAL_SAMPLES = 8
COMPONENTS_DIR = "components"
TOKENIZER_FILE = "tokenizer.json"


class ExportError(RuntimeError):
    pass


@dataclass
class ExportOptions(TritonOptions):
    """What to export and how it is checked; the Triton serving options (flavour, batching, ...) are inherited."""

    version: int | str = "auto"
    resize: str = DEFAULT_RESIZE  # how the gateway makes a non-square upload square: "crop" or "pad"
    precisions: tuple[str, ...] = ()
    exporter: str = "torchscript"
    tolerance: float = TOLERANCE
    eval_images: int = 1000
    seed: int = 0


def check_flavour(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise ExportError(f"--flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    if flavour == "tensorrt":
        try:
            import tensorrt
        except ImportError:
            tensorrt = None
        if not torch.cuda.is_available() or tensorrt is None:
            raise ExportError(
                "the tensorrt flavour needs a CUDA GPU and TensorRT (pip install tensorrt onnxruntime-gpu); "
                f"this machine has cuda={torch.cuda.is_available()}, tensorrt={'yes' if tensorrt else 'no'}. "
                "Use --flavour onnxruntime (production Triton) or python (the pytriton server) here."
            )


def check_version_free(repo: ModelRepository, name: str, version: int | str) -> None:
    """Fail before any work when an explicit version number is taken (``publish`` checks again at the end)."""
    if version != "auto" and (repo.root / name / str(version)).exists():
        raise ExportError(
            f"{repo.root / name / str(version)} exists; versions are never overwritten (use --version auto)"
        )


# -- the run --------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    path: Path
    record: dict  # the trainer's run.json
    encoder_run: Path
    components: Path

    @classmethod
    def open(cls, path: Path) -> Run:
        path = Path(path)
        if not (path / RUN_MANIFEST).exists():
            raise ExportError(
                f"{path} is not a finished reward run (no {RUN_MANIFEST}): run `rewarddance train reward`"
            )
        record = json.loads((path / RUN_MANIFEST).read_text())
        encoder = record.get("encoder")
        if encoder is None:  # runs from before run.json recorded it: the feature cache knows
            meta = Path(record["features"]) / "meta.json"
            encoder = json.loads(meta.read_text())["identity"]["encoder"] if meta.exists() else None
        if encoder is None or not (Path(encoder) / ENCODER_WEIGHTS).exists():
            raise ExportError(f"the encoder run of {path} ({encoder}) is missing; it is needed to export the encoders")
        components = path / record.get("components_dir", COMPONENTS_DIR)
        if not (components / "components.json").exists():
            raise ExportError(
                f"{path} has no fitted component scorers in {components}; retrain it with this version of the trainer"
            )
        return cls(path, record, Path(encoder), components)

    @property
    def scale(self) -> str:
        return self.record["scale"]

    @property
    def data(self) -> Path | None:
        path = self.record.get("data", {}).get("path")
        return Path(path) if path and (Path(path) / "images.parquet").exists() else None


def real_samples(run: Run, size: int, n: int = REAL_SAMPLES) -> tuple[np.ndarray, list[str]] | None:
    """A few of the run's own held-out images and prompts (None when its dataset is not on this machine)."""
    if run.data is None:
        return None
    layout = schema.Layout(run.data)
    images = pd.read_parquet(layout.table("images"), columns=["image_id", "prompt_id", "path"])
    prompts = pd.read_parquet(layout.table("prompts"), columns=["prompt_id", "text", "split"])
    rows = images.merge(prompts, on="prompt_id")
    rows = rows[rows.split == "test"] if (rows.split == "test").any() else rows
    rows = rows.sample(n=min(n, len(rows)), random_state=0)
    return load_pixels([run.data / p for p in rows.path], size), rows.text.tolist()


# -- one graph into one version -------------------------------------------------------------------------------------
def _random_inputs(spec: GraphSpec, rng: np.random.Generator, n: int = 3, vocab: int = 30522) -> dict[str, np.ndarray]:
    out = {}
    for t in spec.inputs:
        shape = (n, *t.shape[1:])
        if t.dtype == "uint8":
            out[t.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif t.dtype == "int64":
            ids = rng.integers(1000, vocab, shape, dtype=np.int64)
            ids[:, 0], ids[:, 6:] = 101, 0  # [CLS] ... then padding, as a real short prompt
            ids[:, 5] = 102
            out[t.name] = ids
        elif t.dtype == "bool":
            mask = np.zeros(shape, dtype=bool)
            mask[:, : max(1, shape[1] // 3)] = True
            out[t.name] = mask
        elif t.name == "signals":
            out[t.name] = rng.random(shape, dtype=np.float32)
        else:
            out[t.name] = rng.standard_normal(shape, dtype=np.float32)
    return out


def export_graph(spec: GraphSpec, staging: Path, cases: dict[str, dict[str, np.ndarray]], opts: ExportOptions) -> dict:
    """model.onnx into ``staging``; raises ParityError (writing nothing lasting) when a case is off."""
    path = staging / MODEL_FILE
    onnx_io.export_onnx(spec, cases["random"], path, opts.exporter)
    diffs = onnx_io.parity(spec, path, cases)
    worst = max(diffs.values())
    if not worst <= opts.tolerance:
        raise onnx_io.ParityError(
            f"ONNX output differs from torch by {worst:.3g} > {opts.tolerance:g} ({diffs}); version not written"
        )
    return {"max_abs_diff": diffs, "tolerance": opts.tolerance, "exporter": opts.exporter, "opset": onnx_io.OPSET}


def graph_fields(name: str, spec: GraphSpec, parity: dict) -> dict:
    """The manifest fields every exported graph has: its name, I/O, size and how it was exported."""
    return {
        "name": name,
        "inputs": spec.inputs,
        "outputs": spec.outputs,
        "parameters": parameter_count(spec.module),
        "export": ExportRecord(
            **parity, torch=torch.__version__, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        ),
    }


def training_record(run_dir: Path, run_json: dict) -> dict:
    """What the reward manifest keeps of the trainer's run.json (its ``training`` field)."""
    keep = ("data", "model", "train", "steps_done", "selected_step", "code_version")
    return {"run": str(run_dir), **{k: run_json.get(k) for k in keep}}


def weights_of(model) -> dict[str, float]:
    return {c: float(w) for c, w in zip(COMPONENTS, model.weights.tolist(), strict=True)}


def end_to_end_check(
    repo: ModelRepository, real: tuple[np.ndarray, list[str]], reference: np.ndarray, log
) -> Callable[[ModelVersion], float]:
    """``publish``'s verification: the staged version scored by the serving pipeline, max |diff| from the
    training path's (n, 5) components and R on the same real images."""

    def check(staged_version: ModelVersion) -> float:
        served = RewardPipeline(repo, staged_version.name, model=staged_version).score(*real)
        ours = np.concatenate([served.components, served.reward[:, None]], axis=1)
        diff = float(np.abs(ours - reference).max())
        log(f"{staged_version.name}: serving pipeline vs training path on real images, max |diff| {diff:.2e}")
        return diff

    return check


def export_encoders(
    encoder: Encoder, encoder_run: Path, repo: ModelRepository, real: tuple | None, opts: ExportOptions
) -> dict:
    """{"image": {...}, "text": {...}} with name and version; existing identical encoders are reused."""
    sha = schema.sha256_file(encoder_run / ENCODER_WEIGHTS)
    rng = np.random.default_rng(opts.seed)
    out = {}
    for kind, name, build in (("image", "image_encoder", image_graph), ("text", "text_encoder", text_graph)):
        existing = repo.find(name, sha)
        if existing is not None:
            out[kind] = {"name": name, "version": existing, "reused": True}
            continue
        spec = build(encoder)
        cases = {"random": _random_inputs(spec, rng)}
        if real is not None:
            pixels, texts = real
            cases["real"] = {"pixels": pixels} if kind == "image" else {"input_ids": encoder.tokenize(texts).numpy()}
        with staged(repo.root, name) as staging:
            parity = export_graph(spec, staging, cases, opts)
            if kind == "image":
                prep = image_preprocessing(encoder)
            else:
                shutil.copy(_tokenizer_file(), staging / TOKENIZER_FILE)
                prep = text_preprocessing(encoder)
            manifest = EncoderManifest(
                **graph_fields(name, spec, parity),
                kind=f"{kind}_encoder",
                encoder=encoder.name,
                encoder_run=str(encoder_run),
                encoder_sha256=sha,
                preprocessing=prep,
            )
            version = publish(repo, staging, manifest, opts).version
        out[kind] = {"name": name, "version": version, "reused": False, "parity": parity["max_abs_diff"]}
    return out


def _tokenizer_file() -> Path:
    return registry.minilm_dir() / TOKENIZER_FILE


def text_preprocessing(encoder: Encoder) -> TextPreprocessing:
    return TextPreprocessing(
        TOKENIZER_FILE, int(encoder.tokenize.context_length), int(encoder.model.text.config.pad_token_id)
    )


def image_preprocessing(encoder: Encoder, resize: str = "crop") -> ImagePreprocessing:
    """The encoder's image size, mean and std; ``resize`` for a reward version (an encoder records "crop": its
    training images were square renders, centre-cropped by ``rewarddance.preprocess``)."""
    s = encoder.image_spec
    return ImagePreprocessing(s.size, resize, tuple(s.mean), tuple(s.std))


# -- the reward model -----------------------------------------------------------------------------------------------
def reward_inputs(encoder: Encoder, scorers, pixels: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]:
    """The reward graph's inputs the way the trainer builds them: torch encoders, then the numpy scorers."""
    image_pooled, image_tokens = encoder.encode_images(pixels)
    text = encoder.encode_texts(texts)
    batch = FeatureBatch(image_embeddings=image_pooled, prompt_embeddings=text.pooled, prompts=list(texts))
    return {
        "prompt_tokens": text.tokens.astype(np.float32),
        "prompt_mask": text.mask,
        "image_tokens": image_tokens.astype(np.float32),
        "signals": scorers.signals(batch, composition_features(pixels)),
    }


def training_path_scores(encoder: Encoder, model, scorers, pixels: np.ndarray, texts: list[str]) -> np.ndarray:
    """(n, 5): the four components and R from the training path (torch encoders, numpy scorers, torch model)."""
    inputs = reward_inputs(encoder, scorers, pixels, texts)
    with torch.no_grad():
        c, r = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return np.concatenate([c.numpy(), r.numpy()[:, None]], axis=1)


def export_run(run_dir: Path, repo_dir: Path, opts: ExportOptions | None = None, log=print) -> RewardManifest:
    """Export a reward run and its encoders; returns the reward version's manifest as published."""
    opts = opts or ExportOptions()
    check_flavour(opts.flavour)
    for p in opts.precisions:
        precision.check(p)
    run = Run.open(run_dir)
    repo = ModelRepository(repo_dir)
    repo.root.mkdir(parents=True, exist_ok=True)
    check_version_free(repo, f"reward_{run.scale}", opts.version)
    encoder = Encoder.load(run.encoder_run)
    model = load_model(run.path)
    scorers = ComponentSet.load(run.components)
    real = real_samples(run, encoder.image_spec.size)
    if real is None:
        where = run.record.get("data", {}).get("path")
        log(f"note: the run's dataset ({where}) is not on this machine; parity on random inputs only")

    t0 = time.perf_counter()
    encoders = export_encoders(encoder, run.encoder_run, repo, real, opts)
    for info in encoders.values():
        how = "reused" if info["reused"] else f"exported, max |diff| {max(info['parity'].values()):.2e}"
        log(f"{info['name']} v{info['version']}: {how}")

    name = f"reward_{run.scale}"
    spec = reward_graph(model)
    rng = np.random.default_rng(opts.seed + 1)
    cases = {"random": _random_inputs(spec, rng)}
    if real is not None:
        cases["real"] = reward_inputs(encoder, scorers, *real)
    with staged(repo.root, name) as staging:
        parity = export_graph(spec, staging, cases, opts)
        log(f"{name}: ONNX parity max |diff| {parity['max_abs_diff']}")
        shutil.copytree(run.components, staging / COMPONENTS_DIR)
        shutil.copy(_tokenizer_file(), staging / TOKENIZER_FILE)
        manifest = RewardManifest(
            **graph_fields(name, spec, parity),
            architecture=FEATURE_ARCHITECTURE,
            scale=run.scale,
            components=COMPONENTS,
            default_weights=weights_of(model),
            bt_scale=float(model.bt_scale.item()),
            encoders={k: EncoderRef(v["name"], v["version"]) for k, v in encoders.items()},
            image=image_preprocessing(encoder, opts.resize),
            text=text_preprocessing(encoder),
            component_scorers=COMPONENTS_DIR,
            training=training_record(run.path, run.record),
            metrics=_metrics(run.record),
        )
        variants = {p: precision.make_variant(p, staging, run, scorers, opts) for p in opts.precisions}
        manifest = replace(manifest, variants=variants, export=replace(manifest.export, seconds=_since(t0)))
        check = None
        if real is not None:
            check = end_to_end_check(repo, real, training_path_scores(encoder, model, scorers, *real), log)
        manifest = publish(repo, staging, manifest, opts, opts.version, verify=check)
    log(f"wrote {repo.root / name / str(manifest.version)}")
    return manifest


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def _metrics(run_json: dict) -> dict:
    """Flat name -> number: the run's held-out (test) metrics, plus its val metrics prefixed ``val_``."""
    out = {k: float(v) for k, v in run_json.get("metrics", {}).items() if isinstance(v, (int, float))}
    val = run_json.get("val_metrics") or {}
    out |= {f"val_{k}": float(v) for k, v in val.items() if isinstance(v, (int, float))}
    return out
