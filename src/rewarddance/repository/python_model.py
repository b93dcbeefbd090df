"""Generic Triton python-backend model: runs ``model.onnx`` (next to this file) with onnxruntime on CPU.

The exporter copies this file into each version directory as ``model.py``, for Triton builds without the
onnxruntime backend (e.g. the ``nvidia-pytriton`` wheel). It runs inside the Triton venv (numpy<2), so it imports
nothing from rewarddance.

Contract with config.pbtxt:
- every config input is fed to the ONNX input of the same name, cast to the ONNX input's element type;
- every config output is taken from the ONNX output of the same name, cast to the config output's data type;
- batched requests (dynamic batching) are concatenated along axis 0 and run once when their non-batch shapes agree,
  otherwise each request runs on its own; a failing request gets a ``TritonError`` response, the others still run;
- parameters (string values, all optional): ``onnx_file`` (default ``model.onnx``), ``intra_op_thread_count`` and
  ``inter_op_thread_count`` (the onnxruntime-backend names; 0 = onnxruntime's default), ``graph_optimization_level``
  (``disable`` | ``basic`` | ``extended`` | ``all``).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

# Triton data types -> numpy
_TRITON_TO_NP = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}
# onnxruntime type strings -> numpy
_ORT_TO_NP = {
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(string)": np.object_,
}
_OPT_LEVELS = ("disable", "basic", "extended", "all")


def _param(config, key, default=None):
    value = (config.get("parameters") or {}).get(key)
    if isinstance(value, dict):
        value = value.get("string_value")
    return default if value in (None, "") else value


class TritonPythonModel:
    """Triton python backend entry point."""

    def initialize(self, args):
        import onnxruntime as ort

        self.model_config = config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", config.get("name", "?"))
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        if not os.path.isdir(version_dir):  # fall back to where this file lives
            version_dir = os.path.dirname(os.path.abspath(__file__))
        onnx_path = os.path.join(version_dir, _param(config, "onnx_file", "model.onnx"))
        if not os.path.isfile(onnx_path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {onnx_path} not found")

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(_param(config, "intra_op_thread_count", 0))
        opts.inter_op_num_threads = int(_param(config, "inter_op_thread_count", 0))
        level = str(_param(config, "graph_optimization_level", "all")).lower()
        if level not in _OPT_LEVELS:
            raise pb_utils.TritonModelException(f"{self.model_name}: graph_optimization_level {level!r} unknown")
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        try:
            self.session = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a broken file must fail the load with a clear message
            raise pb_utils.TritonModelException(
                f"{self.model_name}: onnxruntime cannot load {onnx_path}: {exc}"
            ) from exc

        onnx_inputs = {i.name: i for i in self.session.get_inputs()}
        onnx_outputs = {o.name for o in self.session.get_outputs()}
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = []  # (name, numpy dtype the ONNX graph wants)
        for spec in config.get("input", []):
            name = spec["name"]
            if name not in onnx_inputs:
                raise pb_utils.TritonModelException(
                    f"{self.model_name}: config input {name!r} is not an input of {onnx_path} "
                    f"(graph inputs: {sorted(onnx_inputs)})"
                )
            self.inputs.append((name, _ORT_TO_NP.get(onnx_inputs[name].type)))
        missing = sorted(set(onnx_inputs) - {n for n, _ in self.inputs})
        if missing:
            raise pb_utils.TritonModelException(f"{self.model_name}: graph inputs {missing} are not in config.pbtxt")
        self.outputs = []  # (name, numpy dtype the config declares)
        for spec in config.get("output", []):
            name = spec["name"]
            if name not in onnx_outputs:
                raise pb_utils.TritonModelException(
                    f"{self.model_name}: config output {name!r} is not an output of {onnx_path} "
                    f"(graph outputs: {sorted(onnx_outputs)})"
                )
            self.outputs.append((name, _TRITON_TO_NP.get(spec.get("data_type", ""))))
        self.output_names = [name for name, _ in self.outputs]

    # ---------------------------------------------------------------- inference
    def _feeds(self, request):
        feeds = {}
        for name, want in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} missing from the request")
            arr = tensor.as_numpy()
            if want is not None and want is not np.object_ and arr.dtype != want:
                arr = arr.astype(want)
            feeds[name] = arr
        return feeds

    def _respond(self, results):
        tensors = []
        for (name, want), arr in zip(self.outputs, results, strict=True):
            arr = np.asarray(arr)
            if want is not None and want is not np.object_ and arr.dtype != want:
                arr = arr.astype(want)
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(arr)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    @staticmethod
    def _error(exc):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    def _run_one(self, feeds):
        return self.session.run(self.output_names, feeds)

    def execute(self, requests):
        feeds, errors = [], {}
        for i, request in enumerate(requests):
            try:
                feeds.append(self._feeds(request))
            except Exception as exc:
                feeds.append(None)
                errors[i] = exc
        good = [i for i, f in enumerate(feeds) if f is not None]

        results = {}
        if self.batched and len(good) > 1 and self._stackable([feeds[i] for i in good]):
            try:
                sizes = [next(iter(feeds[i].values())).shape[0] for i in good]
                merged = {name: np.concatenate([feeds[i][name] for i in good], axis=0) for name, _ in self.inputs}
                outs = self._run_one(merged)
                if any(np.ndim(o) == 0 or np.shape(o)[0] != sum(sizes) for o in outs):
                    raise ValueError("an output has no batch dimension")
                offsets = np.cumsum([0, *sizes])
                for k, i in enumerate(good):
                    results[i] = [o[offsets[k] : offsets[k + 1]] for o in outs]
            except Exception:
                results = {}  # run them one by one so that each request gets its own result or error
        for i in good:
            if i in results:
                continue
            try:
                results[i] = self._run_one(feeds[i])
            except Exception as exc:
                errors[i] = exc

        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(self._error(errors[i]))
                continue
            try:
                responses.append(self._respond(results[i]))
            except Exception as exc:
                responses.append(self._error(exc))
        return responses

    def _stackable(self, feed_list):
        """Same non-batch shapes everywhere, and each request's inputs agree on its batch size."""
        if not self.inputs:
            return False
        first = feed_list[0]
        for feed in feed_list:
            batch = {arr.shape[0] if arr.ndim else None for arr in feed.values()}
            if len(batch) != 1 or None in batch:
                return False
            for name, _ in self.inputs:
                if feed[name].shape[1:] != first[name].shape[1:] or feed[name].dtype != first[name].dtype:
                    return False
        return True

    def finalize(self):
        self.session = None
