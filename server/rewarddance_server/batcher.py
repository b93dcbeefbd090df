"""asyncio micro-batcher: concurrent requests' images run as one inference batch, in a worker thread.

A request submits a job (its decoded pixels, its prompt and style, and the pipeline). The collector takes jobs from
a bounded queue until ``max_batch`` images or ``max_wait_ms`` have passed, groups them by pipeline (model version)
and runs each group with one ``pipeline.score_requests`` call in an inference thread, so the event loop never
blocks. The work per batch is per request, never per image: one concatenate, one prompt per request.

- full queue -> 429 / RESOURCE_EXHAUSTED with Retry-After, at once (the queue never grows past ``max_queue``);
- a job whose deadline passed before its batch started is dropped with 504, and the awaiting request gives
  504 at its deadline even while its batch is still running;
- an inference failure fails that batch's jobs (503 when the backend is down, else 500) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GatewayError, backend_unavailable, deadline_exceeded, internal
from .metrics import Metrics

log = logging.getLogger("rewarddance_server.batcher")


@dataclass
class BatchResult:
    components: np.ndarray  # (k, 4)
    reward: np.ndarray  # (k,) with the model's default weights
    queue_time: float
    inference_time: float
    batch_images: int


@dataclass
class Job:
    pipeline: Any
    pixels: np.ndarray
    prompt: str
    style: str | None
    deadline: float  # loop.time()
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> int:
        return len(self.pixels)


def is_backend_down(exc: BaseException) -> bool:
    """Connection-level failures (and tritonclient's errors) mean the backend is unavailable: 503, not 500."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    name = type(exc).__name__
    return name in {"InferenceServerException", "AioRpcError", "RpcError", "BackendUnavailable"}


class MicroBatcher:
    def __init__(
        self,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: Metrics,
        simulate_latency_ms: float = 0.0,
        backend_down: Callable[[BaseException], bool] = is_backend_down,
        workers: int = 2,
    ) -> None:
        """``workers`` batches may run at once: while one is in onnxruntime, the next one's numpy scorers (single
        threaded) use another core. With one worker the gateway serialised them: at 8 images per request it reached
        0.57 of in-process onnxruntime at concurrency 4 and 0.40 at 16; with two, 0.80 and 0.50 (serving.md)."""
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_queue = max(1, int(max_queue))
        self.metrics = metrics
        self.simulate_latency = simulate_latency_ms / 1000.0
        self.backend_down = backend_down
        self._queue: asyncio.Queue[Job] | None = None
        self._carry: Job | None = None
        self._task: asyncio.Task | None = None
        self.workers = max(1, int(workers))
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="inference")
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        self._busy = 0
        self._recent_batch_seconds = 0.05

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._slots = asyncio.Semaphore(self.workers)
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def depth(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + (1 if self._carry else 0)

    # -- submitting ---------------------------------------------------------------------------------------------
    async def submit(
        self, pipeline: Any, pixels: np.ndarray, prompt: str, style: str | None, timeout: float
    ) -> BatchResult:
        """Score ``pixels`` (one request's images) for ``prompt`` and ``style`` in the next batch."""
        if self._queue is None:
            raise internal("the batcher is not running")
        loop = asyncio.get_running_loop()
        job = Job(pipeline, pixels, prompt, style, loop.time() + timeout, loop.create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            retry = max(1.0, self._recent_batch_seconds * self.depth)
            raise GatewayError(
                429,
                "queue_full",
                f"the inference queue is full ({self.max_queue} requests); retry later",
                retry_after=retry,
            ) from None
        self.metrics.queue_depth.set(self.depth)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout=max(0.0, job.deadline - loop.time()))
        except TimeoutError:
            job.future.cancel()  # the batch drops it if it has not started; a running batch's result is ignored
            raise deadline_exceeded(timeout) from None

    # -- the collector ------------------------------------------------------------------------------------------
    async def _next_batch(self) -> list[Job]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, images = [first], first.size
        until = loop.time() + self.max_wait
        while images < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = until - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if images + job.size > self.max_batch:
                self._carry = job  # starts the next batch; a request is never split
                break
            batch.append(job)
            images += job.size
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            self.metrics.queue_depth.set(self.depth)
            now = loop.time()
            live = []
            for job in batch:
                if job.future.done():
                    continue  # its request already timed out
                if now >= job.deadline:
                    job.future.set_exception(deadline_exceeded(job.deadline - now))
                    continue
                live.append(job)
            groups: dict[int, list[Job]] = {}
            for job in live:
                groups.setdefault(id(job.pipeline), []).append(job)
            for jobs in groups.values():
                assert self._slots is not None
                await self._slots.acquire()  # at most ``workers`` batches in flight; the next one waits here
                task = asyncio.create_task(self._guarded(jobs))
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        assert self._slots is not None
        self._slots.release()

    async def _guarded(self, jobs: list[Job]) -> None:
        try:
            await self._infer(jobs)
        except asyncio.CancelledError:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(internal("the gateway is shutting down"))
            raise
        except Exception:  # never let a batch failure escape
            log.exception("batch failed unexpectedly")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(internal())

    def _score(self, jobs: list[Job]) -> Any:
        """In an inference thread: the batch's pixels joined and scored (the concatenate releases the GIL too)."""
        if self.simulate_latency:
            time.sleep(self.simulate_latency)
        pixels = jobs[0].pixels if len(jobs) == 1 else np.concatenate([j.pixels for j in jobs])
        return jobs[0].pipeline.score_requests(
            pixels, [j.prompt for j in jobs], [j.size for j in jobs], [j.style for j in jobs]
        )

    async def _infer(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        pipeline = jobs[0].pipeline
        images = sum(j.size for j in jobs)
        started = time.perf_counter()
        self.metrics.batch_size.observe(images)
        self.metrics.batch_requests.observe(len(jobs))
        try:
            scores = await loop.run_in_executor(self._executor, self._score, jobs)
        except Exception as exc:
            if self.backend_down(exc):
                log.warning("inference backend unavailable: %s: %s", type(exc).__name__, exc)
                error = backend_unavailable(f"the inference backend is unavailable ({type(exc).__name__})")
            else:
                log.exception("inference failed")
                error = internal(f"inference failed ({type(exc).__name__})")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        finished = time.perf_counter()
        inference = finished - started
        self._recent_batch_seconds = 0.8 * self._recent_batch_seconds + 0.2 * inference
        self.metrics.inference_time.observe(inference)
        if hasattr(pipeline, "cache_hits"):  # prompt-embedding LRU: one encode per distinct prompt
            self.metrics.prompt_cache.labels(pipeline.name, "hit").set(pipeline.cache_hits)
            self.metrics.prompt_cache.labels(pipeline.name, "miss").set(pipeline.cache_misses)
        offset = 0
        for job in jobs:
            k = job.size
            queue_time = started - job.enqueued
            self.metrics.queue_time.observe(queue_time)
            if not job.future.done():
                job.future.set_result(
                    BatchResult(
                        scores.components[offset : offset + k],
                        scores.reward[offset : offset + k],
                        queue_time,
                        inference,
                        images,
                    )
                )
            offset += k
