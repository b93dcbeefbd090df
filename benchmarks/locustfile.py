"""Locust users for the reward gateway: HTTP and gRPC, each scoring one image, ranking N images of a prompt and
comparing two. Run through benchmarks/loadtest.py (it starts the gateway on 127.0.0.1 and bounds users and
time), or by hand: ``locust -f benchmarks/locustfile.py --host http://127.0.0.1:8000``.

Environment: ``REWARDDANCE_GRPC`` (host:port of the gateway's gRPC port; gRPC users stay idle without it),
``REWARDDANCE_LOCUST_DATA`` (a dataset directory whose test images and prompts are sent; random PNGs without it),
``REWARDDANCE_RANK_N`` (images per rank request, default 8), ``REWARDDANCE_API_KEY``.
"""

from __future__ import annotations

import base64
import io
import os
import random
import time
from pathlib import Path

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import FastHttpUser, User, between, events, task
from rewarddance_client._proto import rewarddance_v1_pb2 as pb
from rewarddance_client._proto import rewarddance_v1_pb2_grpc as pb_grpc

# Locust runs users as gevent greenlets: without this, every blocking gRPC call would stall the HTTP users too.
grpc_gevent.init_gevent()

RANK_N = int(os.environ.get("REWARDDANCE_RANK_N", "8"))
API_KEY = os.environ.get("REWARDDANCE_API_KEY")


def _samples() -> list[tuple[bytes, str]]:
    data = os.environ.get("REWARDDANCE_LOCUST_DATA")
    if data:
        import pandas as pd

        root = Path(data)
        images = pd.read_parquet(root / "images.parquet").merge(
            pd.read_parquet(root / "prompts.parquet"), on="prompt_id"
        )
        rows = images[images.split == "test"].head(256)
        return [((root / p).read_bytes(), t) for p, t in zip(rows.path, rows.text, strict=True)]
    from PIL import Image

    rng = random.Random(0)
    out = []
    for i in range(32):
        image = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append((buffer.getvalue(), f"a red circle in the centre, sample {i}"))
    return out


SAMPLES = _samples()
HEADERS = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class HttpScorer(FastHttpUser):
    wait_time = between(0.0, 0.05)

    @task(6)
    def score(self) -> None:
        data, prompt = random.choice(SAMPLES)
        self.client.post("/v1/score", json={"prompt": prompt, "images": [_b64(data)]}, headers=HEADERS, name="score")

    @task(2)
    def rank(self) -> None:
        chosen = random.sample(SAMPLES, min(RANK_N, len(SAMPLES)))
        body = {"prompt": chosen[0][1], "images": [_b64(d) for d, _ in chosen]}
        self.client.post("/v1/rank", json=body, headers=HEADERS, name=f"rank[{len(chosen)}]")

    @task(2)
    def compare(self) -> None:
        (a, prompt), (b, _) = random.sample(SAMPLES, 2)
        body = {"prompt": prompt, "image_a": _b64(a), "image_b": _b64(b)}
        self.client.post("/v1/compare", json=body, headers=HEADERS, name="compare")


class GrpcScorer(User):
    """The same calls over gRPC; each call is reported to locust as request type ``grpc``."""

    wait_time = between(0.0, 0.05)
    address = os.environ.get("REWARDDANCE_GRPC")

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(self.address) if self.address else None
        self.stub = pb_grpc.RewardServiceStub(self.channel) if self.channel else None
        self.metadata = [("authorization", f"Bearer {API_KEY}")] if API_KEY else []

    def on_stop(self) -> None:
        if self.channel is not None:
            self.channel.close()

    def _call(self, name: str, method, request) -> None:
        started = time.perf_counter()
        exception = None
        try:
            method(request, metadata=self.metadata, timeout=60)
        except grpc.RpcError as exc:
            exception = exc
        events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1e3,
            response_length=0,
            exception=exception,
            context={},
        )

    @task(6)
    def score(self) -> None:
        if self.stub is None:
            return
        data, prompt = random.choice(SAMPLES)
        self._call("Score", self.stub.Score, pb.ScoreRequest(prompt=prompt, images=[data]))

    @task(2)
    def rank(self) -> None:
        if self.stub is None:
            return
        chosen = random.sample(SAMPLES, min(RANK_N, len(SAMPLES)))
        self._call(
            f"Rank[{len(chosen)}]", self.stub.Rank, pb.RankRequest(prompt=chosen[0][1], images=[d for d, _ in chosen])
        )

    @task(2)
    def compare(self) -> None:
        if self.stub is None:
            return
        (a, prompt), (b, _) = random.sample(SAMPLES, 2)
        self._call("Compare", self.stub.Compare, pb.CompareRequest(prompt=prompt, image_a=a, image_b=b))
