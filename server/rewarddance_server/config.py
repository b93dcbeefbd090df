"""Gateway settings: CLI flags with environment fallbacks (``REWARDDANCE_*``), one frozen object passed around."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _read_keys(text: str | None) -> tuple[str, ...]:
    """Keys separated by commas or newlines; blank entries and ``#`` comments ignored."""
    if not text:
        return ()
    keys = []
    for line in text.replace(",", "\n").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return tuple(keys)


def load_keys(env_name: str, file_path: str | Path | None) -> tuple[str, ...]:
    """API keys from a file (one per line) and/or an environment variable (comma-separated)."""
    keys = list(_read_keys(_env(env_name)))
    file_path = file_path or _env(env_name + "_FILE")
    if file_path:
        keys.extend(_read_keys(Path(file_path).read_text()))
    return tuple(dict.fromkeys(keys))


# Set by the supervisor of several workers before any of them imports prometheus_client (metrics.py reads it).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Settings:
    repo: Path
    models: tuple[str, ...] = ()  # served reward models; empty -> every reward model in the repository
    backend: str = "embedded"  # embedded | triton
    triton_url: str = ""
    triton_protocol: str | None = None  # None -> from the URL scheme (grpc:// or http://), else grpc
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001  # 0 -> pick a free port; -1 -> no gRPC
    intra_op_threads: int = 1  # per inference run: concurrent batches use the other cores (scoring/backend.py)
    inter_op_threads: int = 1
    # batching and load
    max_batch: int = 16  # images per inference batch (a single larger request still runs as one batch)
    max_wait_ms: float = 2.0  # how long the batcher waits to fill a batch
    inference_workers: int = 2  # batches in flight at once (one in onnxruntime while the next is prepared)
    max_queue: int = 128  # requests waiting for inference; beyond -> 429 / RESOURCE_EXHAUSTED
    request_timeout_s: float = 30.0  # per-request deadline -> 504 / DEADLINE_EXCEEDED
    decode_workers: int = 2
    # input limits
    max_body_bytes: int = 32 * 1024 * 1024
    max_images: int = 64
    max_pixels: int = 4096 * 4096  # per image, checked from the header before decoding
    # per image after the resize that precedes the centre crop (a 1 x 100,000 image resized to 224 on its shorter
    # side is 224 x 22,400,000): checked from the header before decoding, so thin images cannot amplify the work
    max_resized_pixels: int = 4 * 1024 * 1024
    max_prompt_chars: int = 1000
    # work in flight per process (admission): beyond either -> 429 / RESOURCE_EXHAUSTED with Retry-After
    max_inflight_bytes: int = 128 * 1024 * 1024  # request bodies being read or held
    max_inflight_images: int = 512  # images between admission and their result (decode, queue, inference)
    # connections (HTTP): slow or idle clients are closed, and a process holds at most this many at once
    max_connections: int = 512  # beyond -> 429 too_many_connections, connection closed
    header_timeout_s: float = 10.0  # first byte of a request -> end of its headers
    body_timeout_s: float = 30.0  # end of the headers -> last byte of the body (the request deadline also applies)
    idle_timeout_s: float = 5.0  # keep-alive: a connection with no request in flight for this long is closed
    # credentials (never logged)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    # lifecycle
    shutdown_timeout_s: float = 20.0
    watch_interval_s: float = 0.0  # > 0 -> poll the repository and reload newer versions
    warmup: bool = True
    log_level: str = "info"
    simulate_latency_ms: float = 0.0  # testing hook: extra latency per inference batch
    # several processes (--processes N, supervisor.py): set by the supervisor for each worker
    processes: int = 1
    worker: int | None = None  # this worker's index
    reuse_port: bool = False  # bind the HTTP port with SO_REUSEPORT: the kernel spreads connections over workers
    control_fd: int | None = None  # supervisor -> worker: reload commands, one JSON object per line
    report_fd: int | None = None  # worker -> supervisor: reloads asked of this worker, to repeat on the others
    versions: tuple[tuple[str, int], ...] = ()  # (model, version) the supervisor serves: a new worker loads these

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys)
