"""Prometheus metrics of one gateway (its own registry, so several gateways can live in one test process).

With several worker processes (``--processes N``) the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus_client: every worker then writes its values to files there and ``/metrics``, whichever worker
answers it, reports the sum over the live workers (gauges: queue depth and cache counts summed, readiness the
minimum, served versions the maximum)."""

from __future__ import annotations

import contextlib
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .config import MULTIPROC_ENV

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "rewarddance_requests",
            "Requests by protocol, route and status",
            ["protocol", "route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "rewarddance_errors",
            "Error responses by protocol, route and error code",
            ["protocol", "route", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "rewarddance_request_latency_seconds",
            "End-to-end request latency",
            ["protocol", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "rewarddance_queue_time_seconds",
            "Time a request waited for its inference batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_time = Histogram(
            "rewarddance_inference_time_seconds", "Inference time of one batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "rewarddance_batch_size", "Images per inference batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "rewarddance_batch_requests", "Requests per inference batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "rewarddance_queue_depth", "Requests waiting for inference", registry=r, multiprocess_mode="livesum"
        )
        self.model_info = Gauge(
            "rewarddance_model_info",
            "Served model versions (1 = serving)",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "rewarddance_ready", "1 when models are loaded and warmed", registry=r, multiprocess_mode="livemin"
        )
        self.reloads = Counter("rewarddance_reloads", "Model reloads by result", ["result"], registry=r)
        self.load_failures = Counter(
            "rewarddance_version_load_failures",
            "Model versions that failed to load and were skipped (at start, on reload or --watch)",
            ["model", "version"],
            registry=r,
        )
        self.inflight = Gauge(
            "rewarddance_inflight",
            "Work admitted and not yet answered, by resource (request body bytes, images)",
            ["resource"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "rewarddance_http_connections", "Open HTTP connections", registry=r, multiprocess_mode="livesum"
        )
        self.connections_closed = Counter(
            "rewarddance_http_connections_closed",
            "HTTP connections the gateway closed, by reason (header_timeout, body_timeout, idle, over_capacity)",
            ["reason"],
            registry=r,
        )
        self.prompt_cache = Gauge(
            "rewarddance_prompt_cache",
            "Prompt-embedding cache hits and misses",
            ["model", "result"],
            registry=r,
            multiprocess_mode="livesum",
        )

    def observe_request(self, protocol: str, route: str, status: int, code: str | None, seconds: float) -> None:
        self.requests.labels(protocol, route, str(status)).inc()
        if code is not None:
            self.errors.labels(protocol, route, code).inc()
        self.latency.labels(protocol, route).observe(seconds)

    def set_model(self, name: str, version: int, serving: bool) -> None:
        if serving:
            self.model_info.labels(name, str(version)).set(1)
        else:
            self.model_info.labels(name, str(version)).set(0)  # in multiprocess mode the file keeps the last value
            with contextlib.suppress(KeyError):
                self.model_info.remove(name, str(version))

    def render(self) -> bytes:
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
