"""The service layer both protocols share: model registry (atomic swap on reload), validation, score/compare/rank.

HTTP and gRPC turn their requests into a :class:`ScoringInput` and call :meth:`Service.score`,
:meth:`Service.compare` or :meth:`Service.rank`; every failure is a :class:`GatewayError` that each protocol
renders its own way. Served models live in one dict replaced whole on reload, so a request sees either the old
version or the new one; it holds a lease on the version it started with until it finishes, and a retired
version is unloaded only once its leases are gone.

Fail safe: at start, on reload to "the newest" and under ``--watch``, a version that fails to load (corrupt
manifest, missing or broken graph) is skipped with an error log and ``rewarddance_version_load_failures_total``,
and the newest version that loads serves; ``/readyz`` lists what was skipped. Admission: every scoring request
holds its images against the process's in-flight budget (admission.py) from validation to its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewarddance.components.base import COMPONENTS
from rewarddance.components.composite import WeightsError, as_decimal, composite, resolve_weights
from rewarddance.repository import CONFIG, REWARD_KIND, ModelRepository, RepositoryError
from rewarddance.scoring.pipeline import RewardPipeline

from .admission import Budget, Lease
from .batcher import MicroBatcher, is_backend_down
from .config import Settings
from .errors import GatewayError, backend_unavailable, bad_request, deadline_exceeded, invalid_type, not_ready
from .images import ImageLimits, decode_images
from .metrics import Metrics

log = logging.getLogger("rewarddance_server.service")


@dataclass
class ScoringInput:
    """A validated-shape request: images as encoded bytes, ``fields`` naming each for error messages."""

    prompt: Any
    images: list[bytes]
    fields: list[str]
    style: Any = None
    weights: Any = None
    model: Any = None
    version: Any = None


@dataclass
class Timing:
    queue_time: float = 0.0
    inference_time: float = 0.0
    decode_time: float = 0.0
    arrived: float | None = None  # loop time the request arrived: its deadline counts from here (None -> now)


@dataclass(frozen=True)
class SkippedVersion:
    """A version that failed to load. ``error`` (type and message) goes to logs and admins; callers without a key
    see only the type, never a path."""

    model: str
    version: int
    error: str

    def public(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "error": self.error.split(":", 1)[0]}


@dataclass
class Served:
    pipeline: RewardPipeline
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def acquire(self) -> None:
        self.inflight += 1
        self.idle.clear()

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight <= 0:
            self.inflight = 0
            self.idle.set()


def _results(components: np.ndarray, reward: np.ndarray) -> list[dict[str, Any]]:
    """Response rows: the arrays become Python floats in two calls, not one call per value."""
    return [
        {"reward": r, "components": dict(zip(COMPONENTS, c, strict=True))}
        for c, r in zip(components.tolist(), np.asarray(reward, dtype=np.float64).tolist(), strict=True)
    ]


def parse_common(body: Mapping[str, Any]) -> dict[str, Any]:
    """``prompt, style, weights, model, version`` of a JSON body, type-checked (wrong types -> 422)."""
    out: dict[str, Any] = {}
    if "prompt" not in body or body["prompt"] is None:
        raise bad_request("missing_field", "prompt is required", "prompt")
    out["prompt"] = body["prompt"]
    out["style"] = body.get("style")
    out["weights"] = body.get("weights")
    out["model"] = body.get("model")
    out["version"] = body.get("version")
    return out


class Service:
    def __init__(self, settings: Settings, backend: Any = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings.repo)
        self.backend = backend if backend is not None else make_backend(settings)
        self.metrics = metrics or Metrics()
        self.batcher = MicroBatcher(
            settings.max_batch,
            settings.max_wait_ms,
            settings.max_queue,
            self.metrics,
            settings.simulate_latency_ms,
            workers=settings.inference_workers,
        )
        self._decoder = ThreadPoolExecutor(max_workers=max(1, settings.decode_workers), thread_name_prefix="decode")
        self._served: dict[str, Served] = {}
        self.default_model: str | None = None
        self.loaded = False
        self.draining = False
        self.backend_ok = True
        self.load_error: str | None = None
        self.skipped: dict[tuple[str, int], SkippedVersion] = {}  # failed versions, until one loads after all
        self.pinned: dict[str, int] = dict(settings.versions)  # the supervisor's versions for a worker it starts
        self.workers: dict[str, dict[str, Any]] = {}  # the supervisor's table: worker -> {pid, models}
        self.inflight_bytes = Budget("bytes", settings.max_inflight_bytes, self.metrics.inflight.labels("bytes"))
        self.inflight_images = Budget("images", settings.max_inflight_images, self.metrics.inflight.labels("images"))
        self._reload_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task] = []
        self.started_at = time.time()
        self.on_reload: Callable[[str, int], None] | None = None  # set by a worker process (supervisor.py)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.loaded and self.backend_ok and not self.draining

    async def start(self, load: bool = True) -> None:
        """Start the batcher, then load and warm the models (in a thread: the servers answer /healthz meanwhile)."""
        self._reload_lock = asyncio.Lock()
        self.batcher.start()
        if hasattr(self.backend, "is_ready"):
            self._tasks.append(asyncio.create_task(self._watch_backend(), name="backend-health"))
        if load:
            self._tasks.append(asyncio.create_task(self._initial_load(), name="initial-load"))
        if self.settings.watch_interval_s > 0 and self.settings.worker in (None, 0):
            # with several workers one watches and the supervisor fans its reloads out: they never disagree
            self._tasks.append(asyncio.create_task(self._watch_repository(), name="repository-watch"))

    async def _initial_load(self) -> None:
        """Load the models; on failure (e.g. Triton not up yet) retry with backoff until it works or we stop."""
        delay = 1.0
        while True:
            try:
                await self.load_models()
                self.load_error = None
                return
            except Exception as exc:
                self.load_error = type(exc).__name__  # the message may hold paths: it stays in the log
                log.exception("loading the models failed; retrying in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 10.0)

    def _model_names(self) -> list[str]:
        names = list(self.settings.models) or self.reward_models()
        if not names:
            raise RepositoryError(f"no reward models in {self.repository.root}")
        return names

    def reward_models(self) -> list[str]:
        """Reward models in the repository, each judged by its newest version whose manifest reads: a corrupt
        newest manifest neither hides the model nor fails the listing (``ModelRepository.models`` would raise)."""
        root = self.repository.root
        if not root.is_dir():
            return []
        names = []
        for name in sorted(p.name for p in root.iterdir() if p.is_dir() and (p / CONFIG).exists()):
            for version in reversed(self.repository.versions(name)):
                try:
                    kind = self.repository.get(name, version).manifest.kind
                except Exception:  # unreadable, not JSON, not a manifest of this format
                    continue
                if kind == REWARD_KIND:
                    names.append(name)
                break
        return names

    async def load_models(self) -> None:
        """Each model's default version (the supervisor's, else the repository's pin), or the newest version that
        loads when that one does not; a model none of whose versions loads is left out while another model serves,
        and fails the load (retried) when none does."""
        names = self._model_names()
        started = time.perf_counter()
        failed = []
        for name in names:
            if name in self._served:  # loaded by an earlier attempt
                continue
            try:
                prefer = self.pinned.get(name) or self.repository.pinned(name)
                pipeline = await asyncio.to_thread(self._build_good, name, prefer)
            except RepositoryError as exc:
                log.error("no version of the model loads: not served", extra={"model": name, "error": str(exc)})
                failed.append(name)
                continue
            self._served = {**self._served, name: Served(pipeline)}
            self.metrics.set_model(pipeline.name, pipeline.version, True)
        if not self._served:
            raise RepositoryError(f"no version of {', '.join(failed)} loads")
        names = [n for n in names if n in self._served]
        if self.default_model is None:
            self.default_model = "reward_small" if "reward_small" in names and not self.settings.models else names[0]
        self.loaded = True
        self.metrics.ready.set(1 if self.ready else 0)
        log.info(
            "models ready",
            extra={
                "models": {n: s.pipeline.version for n, s in self._served.items()},
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def _build(self, name: str, version: int | None) -> RewardPipeline:
        pipeline = RewardPipeline(self.repository, name, version, backend=self.backend).load()
        if self.settings.warmup:
            pipeline.warmup((1, min(8, self.settings.max_batch)))
        return pipeline

    def _try_build(self, name: str, version: int) -> RewardPipeline | None:
        """The version loaded and warmed, or None after recording it as skipped (an unreachable backend raises:
        that is no fault of the version). Runs in a thread."""
        try:
            pipeline = self._build(name, version)
        except Exception as exc:
            if is_backend_down(exc):
                raise
            self.skipped[(name, version)] = SkippedVersion(name, version, f"{type(exc).__name__}: {exc}")
            self.metrics.load_failures.labels(name, str(version)).inc()
            log.exception("model version failed to load: skipped", extra={"model": name, "version": version})
            return None
        self.skipped.pop((name, version), None)
        return pipeline

    def _build_good(self, name: str, prefer: int | None = None) -> RewardPipeline:
        """``prefer`` if it loads, else the newest version that loads; RepositoryError when none does (thread)."""
        versions = sorted(self.repository.versions(name), reverse=True)
        if prefer in versions:
            versions = [prefer] + [v for v in versions if v != prefer]
        for version in versions:
            pipeline = self._try_build(name, version)
            if pipeline is not None:
                if prefer is not None and version != prefer:
                    log.error("the pinned version failed to load: serving another", extra={"model": name})
                return pipeline
        raise RepositoryError(f"no version of {name} loads (tried {versions})")

    def readiness(self) -> dict[str, Any]:
        """What /readyz shows to anyone: served versions and skipped ones, no paths or error messages."""
        return {
            "models": {n: s.pipeline.version for n, s in self._served.items()},
            "skipped": [v.public() for v in sorted(self.skipped.values(), key=lambda v: (v.model, -v.version))],
        }

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.batcher.stop()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    async def _watch_backend(self) -> None:
        """Poll the backend's readiness (Triton): while it is down, requests get 503 at once, not after a timeout."""
        while True:
            try:
                ok = bool(await asyncio.wait_for(asyncio.to_thread(self.backend.is_ready), timeout=1.0))
            except Exception:
                ok = False
            if ok != self.backend_ok:
                log.warning("inference backend %s", "is back" if ok else "is unavailable")
            self.backend_ok = ok
            self.metrics.ready.set(1 if self.ready else 0)
            await asyncio.sleep(0.5)

    async def _watch_repository(self) -> None:
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            if not self.loaded or self.draining:
                continue
            for name, served in list(self._served.items()):
                try:
                    pinned = self.repository.pinned(name)
                    versions = self.repository.versions(name)
                    if pinned in versions:
                        wanted, changed = pinned, pinned != served.pipeline.version
                    else:
                        wanted = versions[-1] if versions else 0
                        changed = wanted > served.pipeline.version
                    if changed and (name, wanted) not in self.skipped:
                        log.info("new default version found by --watch", extra={"model": name, "version": wanted})
                        await self.reload(name, None, announce=True, retry_failed=False)
                except Exception:
                    log.exception("watch reload failed")

    # -- the registry -------------------------------------------------------------------------------------------
    def served(self) -> dict[str, Served]:
        return self._served

    def _check_ready(self) -> None:
        if self.draining:
            raise not_ready("the gateway is shutting down")
        if not self.loaded:
            failed = self.load_error and f"models failed to load ({self.load_error}); see the server log"
            raise not_ready(failed or "models are loading")
        if not self.backend_ok:
            raise backend_unavailable("the inference backend is unavailable")

    def resolve(self, model: Any, version: Any) -> Served:
        if model is not None and not isinstance(model, str):
            raise invalid_type("model", "a string", model)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise GatewayError(
                422, "invalid_type", f"version must be a non-negative integer, got {version!r}", "version"
            )
        name = model or self.default_model
        served = self._served.get(name or "")
        if served is None:
            known = ", ".join(sorted(self._served)) or "none"
            raise GatewayError(404, "model_not_found", f"unknown model {name!r} (served: {known})", "model")
        if version and version != served.pipeline.version:
            in_repo = self.repository.versions(name)
            where = "is not loaded (reload it to serve it)" if version in in_repo else "does not exist"
            raise GatewayError(
                404,
                "version_not_found",
                f"version {version} of {name} {where}; serving version {served.pipeline.version}",
                "version",
            )
        return served

    # -- validation ---------------------------------------------------------------------------------------------
    def _validate(self, inp: ScoringInput, pipeline: RewardPipeline) -> tuple[str, str | None, Any, bool]:
        s = self.settings
        if not isinstance(inp.prompt, str):
            raise invalid_type("prompt", "a string", inp.prompt)
        if not inp.prompt.strip():
            raise bad_request("empty_prompt", "prompt must not be empty", "prompt")
        try:
            inp.prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request("invalid_prompt", "prompt is not valid Unicode (lone surrogate)", "prompt") from None
        if len(inp.prompt) > s.max_prompt_chars:
            raise bad_request(
                "prompt_too_long",
                f"prompt has {len(inp.prompt)} characters; the limit is {s.max_prompt_chars}",
                "prompt",
            )
        style = inp.style
        if style is not None and not isinstance(style, str):
            raise invalid_type("style", "a string", style)
        style = style or None
        if style is not None:
            try:
                pipeline.check_style(style)
            except ValueError as exc:
                raise bad_request("unknown_style", str(exc), "style") from None
        weights = inp.weights
        if weights is not None and not isinstance(weights, Mapping):
            raise GatewayError(422, "invalid_weights", "weights must be an object of component -> number", "weights")
        try:
            resolved = resolve_weights(weights or None, default=pipeline.default_weights)
        except WeightsError as exc:
            raise GatewayError(422, "invalid_weights", str(exc), exc.field) from None
        if not inp.images:
            raise bad_request("no_images", "at least one image is required", inp.fields[0] if inp.fields else "images")
        if len(inp.images) > s.max_images:
            raise bad_request(
                "too_many_images", f"{len(inp.images)} images; the limit is {s.max_images} per request", "images"
            )
        total = sum(len(b) for b in inp.images)
        if total > s.max_body_bytes:
            raise GatewayError(413, "request_too_large", f"images total {total} bytes; limit {s.max_body_bytes}")
        return inp.prompt, style, resolved, bool(weights)

    # -- scoring ------------------------------------------------------------------------------------------------
    async def _run(
        self, inp: ScoringInput, timeout: float | None, timing: Timing
    ) -> tuple[Served, Any, np.ndarray, np.ndarray]:
        self._check_ready()
        loop = asyncio.get_running_loop()
        timeout = self.timeout(timeout)
        deadline = (timing.arrived if timing.arrived is not None else loop.time()) + timeout
        served = self.resolve(inp.model, inp.version)
        served.acquire()
        lease = Lease()
        try:
            pipeline = served.pipeline
            prompt, style, resolved, overridden = self._validate(inp, pipeline)
            lease.take(self.inflight_images, len(inp.images))
            started = time.perf_counter()
            limits = ImageLimits(
                pipeline.image_size, self.settings.max_pixels, self.settings.max_resized_pixels, pipeline.resize
            )
            cancelled = threading.Event()
            decode = loop.run_in_executor(self._decoder, decode_images, inp.images, inp.fields, limits, cancelled)
            try:
                pixels = await asyncio.wait_for(decode, timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                cancelled.set()  # the decode thread stops before its next image (DecodeCancelled, unheard)
                raise deadline_exceeded(timeout) from None
            timing.decode_time = time.perf_counter() - started
            result = await self.batcher.submit(pipeline, pixels, prompt, style, max(0.0, deadline - loop.time()))
            timing.queue_time, timing.inference_time = result.queue_time, result.inference_time
            reward = composite(result.components, resolved) if overridden else result.reward
            return served, resolved, result.components, np.asarray(reward, dtype=np.float64)
        finally:
            lease.release()
            served.release()

    def timeout(self, requested: float | None) -> float:
        """The request's deadline in seconds: the caller's, capped by the server's."""
        limit = self.settings.request_timeout_s
        return limit if requested is None else min(requested, limit)

    def _header(self, served: Served, resolved: Any) -> dict[str, Any]:
        return {
            "model": {"name": served.pipeline.name, "version": served.pipeline.version},
            "weights": {name: float(resolved.weights[name]) for name in COMPONENTS},
        }

    async def score(self, inp: ScoringInput, timeout: float | None = None, timing: Timing | None = None) -> dict:
        timing = timing or Timing()
        served, resolved, components, reward = await self._run(inp, timeout, timing)
        return {
            **self._header(served, resolved),
            "results": _results(components, reward),
        }

    async def rank(self, inp: ScoringInput, timeout: float | None = None, timing: Timing | None = None) -> dict:
        timing = timing or Timing()
        served, resolved, components, reward = await self._run(inp, timeout, timing)
        order = np.argsort(-reward, kind="stable")
        return {
            **self._header(served, resolved),
            "indices": [int(i) for i in order],
            "results": _results(components, reward),
        }

    async def compare(self, inp: ScoringInput, timeout: float | None = None, timing: Timing | None = None) -> dict:
        timing = timing or Timing()
        served, resolved, components, reward = await self._run(inp, timeout, timing)
        ra, rb = float(reward[0]), float(reward[1])
        preferred = "a" if ra >= rb else "b"
        probability = served.pipeline.preference_probability(max(ra, rb), min(ra, rb))
        if not math.isfinite(probability):
            probability = 0.5
        return {
            **self._header(served, resolved),
            "preferred": preferred,
            "probability": probability,
            "a": _results(components[:1], reward[:1])[0],
            "b": _results(components[1:2], reward[1:2])[0],
        }

    # -- models and reload --------------------------------------------------------------------------------------
    def list_models(self) -> dict:
        models = []
        for name, served in sorted(self._served.items()):
            pipeline = served.pipeline
            versions = []
            for v in self.repository.versions(name) or [pipeline.version]:
                try:
                    manifest = pipeline.manifest if v == pipeline.version else self.repository.get(name, v).manifest
                except Exception:
                    continue
                if manifest.kind != REWARD_KIND:
                    continue
                versions.append(
                    {
                        "version": v,
                        "ready": v == pipeline.version,
                        "parameters": manifest.parameters,
                        "metrics": dict(manifest.metrics),
                        "default_weights": {k: as_decimal(x) for k, x in manifest.default_weights.items()},
                        "components": list(manifest.components),
                    }
                )
            models.append(
                {
                    "name": name,
                    "scale": pipeline.manifest.scale,
                    "default_version": pipeline.version,
                    "versions": versions,
                }
            )
        return {"default_model": self.default_model or "", "models": models, "workers": self.worker_versions()}

    def worker_versions(self) -> list[dict[str, Any]]:
        """Which version of each model every worker serves: this process's own, live, and with several processes
        the others' as the supervisor last reported them."""
        table = {**self.workers}
        me = "0" if self.settings.worker is None else str(self.settings.worker)
        table[me] = {"pid": os.getpid(), "models": {n: s.pipeline.version for n, s in sorted(self._served.items())}}
        return [{"worker": int(w), **table[w]} for w in sorted(table, key=int)]

    async def admin_reload(self, model: Any = None, version: Any = None) -> dict:
        """``reload``, then pass the version now served to ``on_reload``, so the other worker processes follow."""
        return await self.reload(model, version, announce=True)

    async def reload(
        self, model: Any = None, version: Any = None, announce: bool = False, retry_failed: bool = True
    ) -> dict:
        """Load ``model``/``version``, warm it, swap it in. Without a version: the version the repository pins
        (``rewarddance deploy`` / ``rollback``), else the newest version that loads (newer ones that fail are skipped,
        listed under ``skipped``; ``retry_failed=False`` does not even try versions that failed before).
        ``announce``: tell ``on_reload`` the version now served, so the other workers follow."""
        if model is not None and not isinstance(model, str):
            raise invalid_type("model", "a string", model)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise GatewayError(
                422, "invalid_type", f"version must be a non-negative integer, got {version!r}", "version"
            )
        if not self.loaded:
            raise not_ready("models are still loading")
        name = model or self.default_model
        if name not in self.reward_models():
            raise GatewayError(404, "model_not_found", f"no reward model {name!r} in the repository", "model")
        versions = self.repository.versions(name)
        pinned = self.repository.pinned(name)
        if not version and pinned in versions:
            version = pinned
        if version and version not in versions:
            raise GatewayError(
                404, "version_not_found", f"model {name!r} has no version {version} (versions: {versions})", "version"
            )
        assert self._reload_lock is not None
        async with self._reload_lock:
            result = await self._reload_locked(name, version or None, versions, retry_failed)
        if announce and self.on_reload is not None:
            self.on_reload(name, result["model"]["version"])
        return result

    async def _reload_locked(self, name: str, version: int | None, versions: list[int], retry_failed: bool) -> dict:
        old = self._served.get(name)
        previous = {"name": name, "version": old.pipeline.version} if old else None
        started = time.perf_counter()
        skipped: list[int] = []
        pipeline = None
        for candidate in [version] if version else sorted(versions, reverse=True):
            if old is not None and old.pipeline.version == candidate:
                break  # already served: the newest that loads, or the one asked for
            if not retry_failed and (name, candidate) in self.skipped:
                skipped.append(candidate)
                continue
            pipeline = await asyncio.to_thread(self._try_build, name, candidate)
            if pipeline is not None:
                break
            self.metrics.reloads.labels("failed").inc()
            skipped.append(candidate)
        failures = [{"version": v, "error": self.skipped[name, v].error} for v in skipped if (name, v) in self.skipped]
        if pipeline is None:
            if version and skipped:
                raise GatewayError(
                    422,
                    "version_load_failed",
                    f"{name} v{version} failed to load ({failures[0]['error'] if failures else 'skipped'}); "
                    f"still serving {previous['version'] if previous else 'nothing'}",
                    "version",
                )
            if old is None:
                raise GatewayError(422, "version_load_failed", f"no version of {name} loads", "version")
            return {"model": previous, "previous": previous, "changed": False, "skipped": failures}
        self._served = {**self._served, name: Served(pipeline)}  # the atomic swap
        self.metrics.set_model(name, pipeline.version, True)
        self.metrics.reloads.labels("ok").inc()
        log.info(
            "model swapped",
            extra={
                "model": name,
                "version": pipeline.version,
                "previous": previous,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        if old is not None:
            self.metrics.set_model(name, old.pipeline.version, False)
            self._tasks.append(asyncio.create_task(self._retire(old), name=f"retire-{name}"))
        model = {"name": name, "version": pipeline.version}
        return {"model": model, "previous": previous, "changed": True, "skipped": failures}

    async def _retire(self, old: Served) -> None:
        """Unload a swapped-out version once its in-flight requests are done (graphs still in use are kept)."""
        try:
            await asyncio.wait_for(old.idle.wait(), timeout=max(60.0, 2 * self.settings.request_timeout_s))
        except TimeoutError:
            log.warning("retiring a version with requests still in flight", extra={"inflight": old.inflight})
        in_use = {(v.name, v.version) for s in self._served.values() for v in s.pipeline.versions()}
        for version in old.pipeline.versions():
            if (version.name, version.version) not in in_use:
                await asyncio.to_thread(self.backend.unload, version)
        log.info("retired", extra={"model": old.pipeline.name, "version": old.pipeline.version})


def make_backend(settings: Settings) -> Any:
    if settings.backend == "embedded":
        from rewarddance.scoring.backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(settings.intra_op_threads, settings.inter_op_threads)
    if settings.backend == "triton":
        from .triton_backend import TritonBackend  # written alongside; imported only when asked for

        return TritonBackend(settings.triton_url, protocol=settings.triton_protocol)
    raise ValueError(f"unknown backend {settings.backend!r} (embedded or triton)")
