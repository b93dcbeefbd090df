"""Serve reward scores over HTTP and gRPC from a model repository (FastAPI + grpc.aio; embedded ONNX Runtime or Triton).

Examples:
  rewarddance serve --repo model_repository
  rewarddance serve --repo model_repository --model reward_small --http-port 8000 --grpc-port 8001
  rewarddance serve --repo model_repository --backend triton --triton-url 127.0.0.1:8101
  curl -F image=@a.png -F prompt="a red circle" http://127.0.0.1:8000/v1/score

Credentials (optional): REWARDDANCE_API_KEYS (comma-separated) or --api-keys-file for scoring routes,
REWARDDANCE_ADMIN_KEY or --admin-key-file for /v1/admin/reload. Never put keys on the command line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _default(name: str):
    """A Settings field's default: the one place the hardening limits' defaults are written."""
    from .config import Settings

    return Settings.__dataclass_fields__[name].default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    e = os.environ.get
    parser.add_argument("--repo", default=e("REWARDDANCE_REPO", "model_repository"), help="model repository root")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="reward model to serve (repeatable; the first is the default); absent -> every reward model",
    )
    parser.add_argument("--backend", choices=("embedded", "triton"), default=e("REWARDDANCE_BACKEND", "embedded"))
    parser.add_argument(
        "--triton-url",
        default=e("REWARDDANCE_TRITON_URL"),
        help="[grpc://|http://]host:port (needed with --backend triton)",
    )
    parser.add_argument(
        "--triton-protocol", choices=("grpc", "http"), default=None, help="default: the URL scheme, else grpc"
    )
    parser.add_argument("--host", default=e("REWARDDANCE_HOST", "127.0.0.1"))
    parser.add_argument("--http-port", type=int, default=_env_int("REWARDDANCE_HTTP_PORT", 8000))
    parser.add_argument(
        "--grpc-port", type=int, default=_env_int("REWARDDANCE_GRPC_PORT", 8001), help="0 = any free port, -1 = off"
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=_env_int("REWARDDANCE_INTRA_OP_THREADS", 1),
        help="onnxruntime threads per inference run (default 1: batches run side by side instead; 0: one per core)",
    )
    parser.add_argument("--inter-op-threads", type=int, default=_env_int("REWARDDANCE_INTER_OP_THREADS", 1))
    parser.add_argument("--max-batch", type=int, default=_env_int("REWARDDANCE_MAX_BATCH", 16))
    parser.add_argument("--max-wait-ms", type=float, default=_env_float("REWARDDANCE_MAX_WAIT_MS", 2.0))
    parser.add_argument(
        "--inference-workers",
        type=int,
        default=_env_int("REWARDDANCE_INFERENCE_WORKERS", 2),
        help="batches in flight at once (default 2)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=_env_int("REWARDDANCE_PROCESSES", 1),
        help="gateway processes sharing the ports, each with its own models (default 1)",
    )
    parser.add_argument("--max-queue", type=int, default=_env_int("REWARDDANCE_MAX_QUEUE", 128))
    parser.add_argument("--request-timeout", type=float, default=_env_float("REWARDDANCE_REQUEST_TIMEOUT", 30.0))
    parser.add_argument("--max-body-mb", type=float, default=_env_float("REWARDDANCE_MAX_BODY_MB", 32.0))
    parser.add_argument("--max-images", type=int, default=_env_int("REWARDDANCE_MAX_IMAGES", 64))
    parser.add_argument("--max-pixels", type=int, default=_env_int("REWARDDANCE_MAX_PIXELS", 4096 * 4096))
    parser.add_argument(
        "--max-resized-pixels",
        type=int,
        default=_env_int("REWARDDANCE_MAX_RESIZED_PIXELS", _default("max_resized_pixels")),
        help="per image after its shorter side is resized to the model's size (bounds thin images' cost)",
    )
    parser.add_argument(
        "--max-inflight-mb",
        type=float,
        default=_env_float("REWARDDANCE_MAX_INFLIGHT_MB", _default("max_inflight_bytes") / 2**20),
        help="request body MiB in flight per process; beyond -> 429",
    )
    parser.add_argument(
        "--max-inflight-images",
        type=int,
        default=_env_int("REWARDDANCE_MAX_INFLIGHT_IMAGES", _default("max_inflight_images")),
        help="images being decoded, queued or scored per process; beyond -> 429",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=_env_int("REWARDDANCE_MAX_CONNECTIONS", _default("max_connections")),
        help="open HTTP connections per process; beyond -> 429 and close",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=_env_float("REWARDDANCE_HEADER_TIMEOUT", _default("header_timeout_s")),
        help="seconds from a request's first byte to the end of its headers",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=_env_float("REWARDDANCE_BODY_TIMEOUT", _default("body_timeout_s")),
        help="seconds from the end of the headers to the end of the body",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=_env_float("REWARDDANCE_IDLE_TIMEOUT", _default("idle_timeout_s")),
        help="seconds an idle keep-alive connection stays open",
    )
    parser.add_argument("--api-keys-file", default=None, help="scoring keys, one per line")
    parser.add_argument("--admin-key-file", default=None, help="admin keys, one per line")
    parser.add_argument("--shutdown-timeout", type=float, default=_env_float("REWARDDANCE_SHUTDOWN_TIMEOUT", 20.0))
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        default=0.0,
        metavar="SECONDS",
        help="poll the repository and reload newer versions (every SECONDS, default 2)",
    )
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--log-level", default=e("REWARDDANCE_LOG_LEVEL", "info"))
    parser.add_argument("--simulate-latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # testing hook


def settings_from_args(args: argparse.Namespace):
    from .config import Settings, load_keys

    return Settings(
        repo=Path(args.repo),
        models=tuple(args.model or ()),
        backend=args.backend,
        triton_url=args.triton_url or "",
        triton_protocol=args.triton_protocol,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        inference_workers=args.inference_workers,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        max_resized_pixels=args.max_resized_pixels,
        max_inflight_bytes=int(args.max_inflight_mb * 1024 * 1024),
        max_inflight_images=args.max_inflight_images,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        idle_timeout_s=args.idle_timeout,
        api_keys=load_keys("REWARDDANCE_API_KEYS", args.api_keys_file),
        admin_keys=load_keys("REWARDDANCE_ADMIN_KEY", args.admin_key_file),
        shutdown_timeout_s=args.shutdown_timeout,
        watch_interval_s=args.watch or 0.0,
        warmup=not args.no_warmup,
        log_level=args.log_level,
        simulate_latency_ms=args.simulate_latency_ms,
        processes=args.processes,
    )


def run(args: argparse.Namespace) -> int:
    from .logs import setup_logging

    if args.backend == "triton" and not args.triton_url:
        print("--backend triton needs --triton-url HOST:PORT (or REWARDDANCE_TRITON_URL)", flush=True)
        return 2
    if args.processes < 1:
        print(f"--processes must be at least 1, got {args.processes}", flush=True)
        return 2
    settings = settings_from_args(args)
    setup_logging(settings.log_level)
    if not settings.repo.is_dir():
        print(f"no model repository at {settings.repo}", flush=True)
        return 2
    if settings.processes > 1:
        from .supervisor import run_supervised  # forks before gRPC / onnxruntime are imported

        return run_supervised(settings)
    from .app import run as run_gateway

    return run_gateway(settings)
