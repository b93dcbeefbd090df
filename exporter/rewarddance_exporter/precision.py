"""Reduced-precision variants of an exported reward graph: fp16 and dynamic int8 (onnxruntime quantization).

A variant is written beside the fp32 ``model.onnx`` (``model.fp16.onnx``, ``model.int8.onnx``) and never replaces
it; the manifest records, for each, the change in held-out Spearman of R against the mean human rating and the
latency at batch 1 and 32, both measured against the fp32 graph in the same process.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rewarddance.components.base import COMPONENTS
from rewarddance.repository import Variant

PRECISIONS = ("fp16", "int8")
LATENCY_REPEATS = 20
# onnxruntime 1.32's extended CPU graph optimizations crash (segfault) building a session for the fp16 graph;
# basic optimizations load and run it. The manifest records the level so the gateway opens it the same way.
GRAPH_OPTIMIZATION = {"fp16": "basic", "int8": "all"}


def check(name: str) -> None:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")


def convert(name: str, source: Path, target: Path) -> None:
    if name == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(model, str(target))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def session(path: Path, graph_optimization: str = "all"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _predict(session, inputs: dict[str, np.ndarray], batch: int = 256) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    out = [session.run(["reward"], {k: v[i : i + batch] for k, v in inputs.items()})[0] for i in range(0, n, batch)]
    return np.concatenate(out).reshape(-1)


def latency_ms(session, inputs: dict[str, np.ndarray], batch: int) -> float:
    """Median wall time of one call at ``batch`` (inputs tiled as needed)."""
    n = len(next(iter(inputs.values())))
    feed = {k: np.resize(v, (batch, *v.shape[1:])) if n < batch else v[:batch] for k, v in inputs.items()}
    session.run(None, feed)
    times = []
    for _ in range(LATENCY_REPEATS):
        t = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def held_out(run, scorers, limit: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """Reward-graph inputs and the human R target for up to ``limit`` test-split images of the run's dataset."""
    from rewarddance_trainer.components.fit import Table, component_signals

    features = Path(run.record.get("features", ""))
    if run.data is None or not (features / "meta.json").exists():
        return None
    table = Table.load(run.data, features)
    rows = np.flatnonzero(table.images.split.to_numpy() == "test")
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    prompt_rows = table.images.prompt_row.to_numpy()[rows]
    inputs = {
        "prompt_tokens": np.asarray(table.cache.array("prompt_tokens"))[prompt_rows].astype(np.float32),
        "prompt_mask": np.asarray(table.cache.array("prompt_mask"))[prompt_rows],
        "image_tokens": np.asarray(table.cache.array("image_tokens")[rows]).astype(np.float32),
        "signals": component_signals(scorers, table, rows),
    }
    weights = np.asarray([run.record["weights"][c] for c in COMPONENTS])
    target = np.stack([table.target(rows, c) for c in COMPONENTS], 1) @ weights
    return inputs, target


def make_variant(name: str, staging: Path, run, scorers, opts) -> Variant:
    from rewarddance_trainer.reward.evaluate import spearman

    file = f"model.{name}.onnx"
    convert(name, staging / "model.onnx", staging / file)
    base, variant = session(staging / "model.onnx"), session(staging / file, GRAPH_OPTIMIZATION[name])
    record: dict = {"bytes": (staging / file).stat().st_size}
    data = held_out(run, scorers, opts.eval_images, opts.seed)
    if data is not None:
        inputs, target = data
        r32, rv = _predict(base, inputs), _predict(variant, inputs)
        rho32, rhov = spearman(r32, target), spearman(rv, target)
        record |= {
            "eval_images": len(target),
            "spearman_reward_fp32": rho32,
            "spearman_reward": rhov,
            "spearman_reward_change": rhov - rho32,
            "max_abs_reward_diff": float(np.abs(r32 - rv).max()),
        }
    else:  # no dataset here: latency on random inputs of the graph's shapes, no Spearman
        inputs = _random_feed(base)
        record["eval_images"] = 0
    for batch in (1, 32):
        fp32_ms, variant_ms = latency_ms(base, inputs, batch), latency_ms(variant, inputs, batch)
        record[f"latency_ms_b{batch}"] = variant_ms
        record[f"latency_ms_b{batch}_fp32"] = fp32_ms
        record[f"latency_ratio_b{batch}"] = variant_ms / fp32_ms
    return Variant(file, GRAPH_OPTIMIZATION[name], record)


def _random_feed(session, n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for i in session.get_inputs():
        shape = (n, *i.shape[1:])
        feed[i.name] = rng.random(shape) > 0.5 if i.type == "tensor(bool)" else rng.random(shape, dtype=np.float32)
    return feed
