"""Write Triton ``config.pbtxt`` text from a small description (stdlib only).

    cfg = ModelConfig(
        name="reward_small", backend="python", max_batch_size=64,
        inputs=[TensorSpec("image_emb", "TYPE_FP32", [-1, 512])],
        outputs=[TensorSpec("score", "TYPE_FP32", [1])],
        dynamic_batching=DynamicBatching(preferred_batch_size=[8, 32], max_queue_delay_microseconds=500,
                                         max_queue_size=256),
        instance_groups=[InstanceGroup(count=1)],
        version_policy=VersionPolicy.latest(1),
        warmup=[Warmup("zeros_b8", batch_size=8)],
        parameters={"intra_op_thread_count": "1"},
    )
    write_config(cfg, repo / "reward_small")     # -> repo/reward_small/config.pbtxt

``ModelConfig.from_dict`` takes the same description as plain JSON-like data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_TYPES = (
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
)
BACKENDS = ("python", "onnxruntime", "tensorrt")
KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO", "KIND_MODEL")


def data_type(value: str) -> str:
    """Normalise ``FP32`` / ``fp32`` / ``TYPE_FP32`` to ``TYPE_FP32`` (and ``BYTES`` to ``TYPE_STRING``)."""
    v = value.strip().upper()
    if v in ("BYTES", "TYPE_BYTES"):
        v = "TYPE_STRING"
    if not v.startswith("TYPE_"):
        v = "TYPE_" + v
    if v not in DATA_TYPES:
        raise ValueError(f"unknown Triton data type {value!r}; one of {', '.join(DATA_TYPES)}")
    return v


def quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _ints(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


@dataclass(frozen=True)
class TensorSpec:
    """An input or output. ``dims`` exclude the batch dimension when ``max_batch_size > 0``; -1 = variable."""

    name: str
    data_type: str
    dims: Sequence[int]
    optional: bool = False  # inputs only

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_type", data_type(self.data_type))
        dims = tuple(int(d) for d in self.dims)
        if any(d < -1 or d == 0 for d in dims):
            raise ValueError(f"{self.name}: dims must be positive or -1, got {dims}")
        object.__setattr__(self, "dims", dims)

    def render(self, indent: str, is_input: bool) -> str:
        parts = [f"name: {quote(self.name)}", f"data_type: {self.data_type}", f"dims: {_ints(self.dims)}"]
        if self.optional and is_input:
            parts.append("optional: true")
        return indent + "{\n" + "".join(f"{indent}  {p}\n" for p in parts) + indent + "}"


@dataclass(frozen=True)
class DynamicBatching:
    preferred_batch_size: Sequence[int] = ()
    max_queue_delay_microseconds: int = 0
    max_queue_size: int | None = None  # default_queue_policy.max_queue_size (0/None = unbounded)
    default_timeout_microseconds: int | None = None  # default_queue_policy.default_timeout_microseconds
    preserve_ordering: bool = False

    def render(self) -> str:
        lines = ["dynamic_batching {"]
        if self.preferred_batch_size:
            lines.append(f"  preferred_batch_size: {_ints(self.preferred_batch_size)}")
        lines.append(f"  max_queue_delay_microseconds: {int(self.max_queue_delay_microseconds)}")
        if self.preserve_ordering:
            lines.append("  preserve_ordering: true")
        policy = []
        if self.max_queue_size:
            policy.append(f"    max_queue_size: {int(self.max_queue_size)}")
        if self.default_timeout_microseconds:
            policy.append("    timeout_action: REJECT")
            policy.append(f"    default_timeout_microseconds: {int(self.default_timeout_microseconds)}")
        if policy:
            lines += ["  default_queue_policy {", *policy, "  }"]
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class InstanceGroup:
    count: int = 1
    kind: str = "KIND_CPU"
    gpus: Sequence[int] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"instance kind {self.kind!r} not in {KINDS}")
        if self.count < 1:
            raise ValueError("instance count must be >= 1")

    def render(self) -> str:
        body = f"count: {int(self.count)} kind: {self.kind}"
        if self.gpus:
            body += f" gpus: {_ints(self.gpus)}"
        return "  { " + body + " }"


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions Triton serves: ``latest(n)``, ``all()`` or ``specific([1, 3])``."""

    kind: str  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: Sequence[int] = ()

    @classmethod
    def latest(cls, n: int = 1) -> VersionPolicy:
        if n < 1:
            raise ValueError("latest: num_versions must be >= 1")
        return cls("latest", num_versions=n)

    @classmethod
    def all(cls) -> VersionPolicy:
        return cls("all")

    @classmethod
    def specific(cls, versions: Sequence[int]) -> VersionPolicy:
        if not versions:
            raise ValueError("specific: give at least one version")
        return cls("specific", versions=tuple(int(v) for v in versions))

    def render(self) -> str:
        if self.kind == "latest":
            return f"version_policy: {{ latest: {{ num_versions: {int(self.num_versions)} }} }}"
        if self.kind == "all":
            return "version_policy: { all: {} }"
        if self.kind == "specific":
            return f"version_policy: {{ specific: {{ versions: {_ints(self.versions)} }} }}"
        raise ValueError(f"version policy kind {self.kind!r} not in latest/all/specific")


@dataclass(frozen=True)
class Warmup:
    """A warmup sample sent at load time: every model input filled with zeros or random data.

    ``dims`` overrides an input's dims (needed where the config has -1; by default -1 becomes 1)."""

    name: str
    batch_size: int = 1
    data: str = "zero"  # "zero" | "random"
    count: int = 1
    dims: Mapping[str, Sequence[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data not in ("zero", "random"):
            raise ValueError("warmup data must be 'zero' or 'random'")

    def render(self, inputs: Sequence[TensorSpec], batched: bool) -> str:
        lines = ["  {", f"    name: {quote(self.name)}"]
        if batched:
            lines.append(f"    batch_size: {int(self.batch_size)}")
        for spec in inputs:
            dims = self.dims.get(spec.name) or [1 if d == -1 else d for d in spec.dims]
            fill = "zero_data: true" if self.data == "zero" else "random_data: true"
            lines.append(
                f"    inputs {{ key: {quote(spec.name)} value: {{ data_type: {spec.data_type} "
                f"dims: {_ints(dims)} {fill} }} }}"
            )
        if self.count != 1:
            lines.append(f"    count: {int(self.count)}")
        lines.append("  }")
        return "\n".join(lines)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backend: str
    max_batch_size: int
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    dynamic_batching: DynamicBatching | None = None
    instance_groups: Sequence[InstanceGroup] = ()
    version_policy: VersionPolicy | None = None
    warmup: Sequence[Warmup] = ()
    parameters: Mapping[str, str] = field(default_factory=dict)
    default_model_filename: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} not in {BACKENDS}")
        if self.max_batch_size < 0:
            raise ValueError("max_batch_size must be >= 0")
        if self.dynamic_batching is not None and self.max_batch_size == 0:
            raise ValueError("dynamic_batching needs max_batch_size > 0")
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names) or len({t.name for t in self.outputs}) != len(self.outputs):
            raise ValueError("tensor names must be unique")
        for w in self.warmup:
            if self.max_batch_size and w.batch_size > self.max_batch_size:
                raise ValueError(f"warmup {w.name}: batch_size {w.batch_size} > max_batch_size")
            unknown = set(w.dims) - set(names)
            if unknown:
                raise ValueError(f"warmup {w.name}: dims for unknown inputs {sorted(unknown)}")

    def render(self) -> str:
        out = [f"name: {quote(self.name)}", f"backend: {quote(self.backend)}"]
        if self.default_model_filename:
            out.append(f"default_model_filename: {quote(self.default_model_filename)}")
        out.append(f"max_batch_size: {int(self.max_batch_size)}")
        if self.version_policy is not None:
            out.append(self.version_policy.render())
        for key, specs in (("input", self.inputs), ("output", self.outputs)):
            body = ",\n".join(t.render("  ", key == "input") for t in specs)
            out.append(f"{key} [\n{body}\n]")
        if self.dynamic_batching is not None:
            out.append(self.dynamic_batching.render())
        if self.instance_groups:
            out.append("instance_group [\n" + ",\n".join(g.render() for g in self.instance_groups) + "\n]")
        if self.warmup:
            batched = self.max_batch_size > 0
            out.append("model_warmup [\n" + ",\n".join(w.render(self.inputs, batched) for w in self.warmup) + "\n]")
        for key, value in self.parameters.items():
            out.append(f"parameters {{ key: {quote(key)} value: {{ string_value: {quote(str(value))} }} }}")
        return "\n".join(out) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """The description as plain data, e.g. ``{"name": .., "backend": "python", "max_batch_size": 8,
        "inputs": [{"name": "x", "data_type": "FP32", "dims": [-1, 4]}], "outputs": [...],
        "dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": 100,
        "max_queue_size": 32}, "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "version_policy": {"latest": 1} | "all" | {"specific": [1, 2]},
        "model_warmup": [{"name": "w", "batch_size": 2, "data": "zero"}], "parameters": {"k": "v"}}``."""
        vp = d.get("version_policy")
        policy = None
        if vp == "all" or (isinstance(vp, Mapping) and "all" in vp):
            policy = VersionPolicy.all()
        elif isinstance(vp, Mapping) and "latest" in vp:
            policy = VersionPolicy.latest(int(vp["latest"]))
        elif isinstance(vp, Mapping) and "specific" in vp:
            policy = VersionPolicy.specific(vp["specific"])
        elif vp is not None:
            raise ValueError(f"version_policy {vp!r}: use 'all', {{'latest': n}} or {{'specific': [..]}}")
        db = d.get("dynamic_batching")
        return cls(
            name=d["name"],
            backend=d.get("backend", "python"),
            max_batch_size=int(d.get("max_batch_size", 0)),
            inputs=[TensorSpec(**t) for t in d.get("inputs", [])],
            outputs=[TensorSpec(**t) for t in d.get("outputs", [])],
            dynamic_batching=DynamicBatching(**db) if isinstance(db, Mapping) else (DynamicBatching() if db else None),
            instance_groups=[InstanceGroup(**g) for g in d.get("instance_group", [])],
            version_policy=policy,
            warmup=[Warmup(**w) for w in d.get("model_warmup", [])],
            parameters={str(k): str(v) for k, v in (d.get("parameters") or {}).items()},
            default_model_filename=d.get("default_model_filename"),
        )


def render_config(config: ModelConfig | Mapping[str, Any]) -> str:
    """config.pbtxt text for a ``ModelConfig`` (or its ``from_dict`` description)."""
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    return cfg.render()


def write_config(config: ModelConfig | Mapping[str, Any], model_dir: str | Path) -> Path:
    """Write ``<model_dir>/config.pbtxt`` (creating the directory) and return its path."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    tmp = path.with_suffix(".pbtxt.tmp")
    tmp.write_text(render_config(config))
    tmp.replace(path)
    return path
