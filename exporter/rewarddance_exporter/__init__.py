"""torch -> ONNX (TensorRT where a GPU exists) in a Triton model repository; see docs/exporter.md."""
