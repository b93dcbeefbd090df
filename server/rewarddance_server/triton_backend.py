"""The pipeline's inference on a Triton server instead of in-process onnxruntime (``serve --backend triton``).

Same interface as ``rewarddance.scoring.backend.OnnxRuntimeBackend``: the scoring pipeline (tokenizer, component
scorers, composite) stays in the gateway and only the three ONNX graphs run in Triton, so a request scores the
same on both backends. Calls come from the gateway's inference worker thread, so the client is the blocking
tritonclient gRPC (or HTTP) client, one per thread. When the server runs with explicit model control, ``load``
asks it to load the model and waits until the exact version is ready.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from rewarddance.repository import ModelVersion


class TritonUnavailable(ConnectionError):
    """The Triton server cannot be reached or the model version is not ready (the gateway answers 503)."""


def split_url(url: str) -> tuple[str, str]:
    """("grpc" | "http", "host:port") from ``grpc://host:port``, ``http://host:port`` or a bare ``host:port``."""
    for scheme in ("grpc", "http"):
        if url.startswith(f"{scheme}://"):
            return scheme, url[len(scheme) + 3 :].rstrip("/")
    return "grpc", url


class TritonBackend:
    def __init__(self, url: str, protocol: str | None = None, timeout_s: float = 10.0, ready_timeout_s: float = 120.0):
        scheme, self.address = split_url(url)
        self.protocol = protocol or scheme
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be grpc or http, got {self.protocol!r}")
        self.timeout_s = timeout_s
        self.ready_timeout_s = ready_timeout_s
        self._local = threading.local()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc
            client = tc.InferenceServerClient(url=self.address)
            self._local.client, self._local.module = client, tc
        return client

    def is_ready(self) -> bool:
        try:
            if self.protocol == "grpc":
                return bool(self._client().is_server_ready(client_timeout=1.0))
            return bool(self._client().is_server_ready())
        except Exception:
            return False

    def load(self, version: ModelVersion) -> None:
        """Make sure ``version`` is served: ask Triton to load it (explicit model control; a server that loaded
        its whole repository at start refuses, which is fine) and wait until that exact version is ready."""
        if not self.is_ready():
            raise TritonUnavailable(f"Triton at {self.address} is not ready")
        client = self._client()
        load_error = None
        if not client.is_model_ready(version.name, str(version.version)):
            try:
                client.load_model(version.name)
            except Exception as exc:
                load_error = exc
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            try:
                if client.is_model_ready(version.name, str(version.version)):
                    return
            except Exception:
                pass
            if load_error is not None and time.monotonic() > deadline - self.ready_timeout_s + 2:
                break  # the load was refused and the version is still not there: no point waiting longer
            time.sleep(0.1)
        why = f" (load_model: {load_error})" if load_error else ""
        raise TritonUnavailable(f"{version.name} v{version.version} is not ready on Triton at {self.address}{why}")

    def infer(self, version: ModelVersion, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        client = self._client()
        tc = self._local.module
        request = []
        for name, value in inputs.items():
            value = np.ascontiguousarray(value)
            tensor = tc.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
            tensor.set_data_from_numpy(value)
            request.append(tensor)
        names = [o.name for o in version.manifest.outputs]
        outputs = [tc.InferRequestedOutput(n) for n in names]
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            result = client.infer(version.name, request, model_version=str(version.version), outputs=outputs, **kwargs)
        except Exception as exc:
            if not self.is_ready():
                raise TritonUnavailable(f"Triton at {self.address} is not reachable: {exc}") from exc
            raise
        return {n: result.as_numpy(n) for n in names}

    def unload(self, version: ModelVersion) -> None:
        """Nothing: Triton's version policy retires old versions (rewards keep the newest two)."""
