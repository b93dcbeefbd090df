"""rewarddance_server: the HTTP (FastAPI) and gRPC gateway over the model repository (DESIGN.md 3.3, 3.4).

One shared service layer (``service``) validates requests, micro-batches inference (``batcher``) on an embedded
onnxruntime backend or Triton, and swaps model versions atomically on reload; ``http_app`` and ``grpc_server``
are thin protocol adapters over it; ``app`` runs both in one process. It never imports torch.
"""
