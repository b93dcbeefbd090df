"""Serving-side scoring: a model repository version in, component scores and R out (numpy, no torch).

The model repository and its manifests are read through :mod:`rewarddance.repository`; ``tokenizer`` tokenizes
prompts exactly as the trainer's open_clip tokenizer did, ``backend`` runs the ONNX graphs (embedded onnxruntime;
the gateway adds a Triton backend with the same interface) and ``pipeline`` chains decode -> encoders -> component
scorers -> reward model. The exporter runs this same pipeline to prove the exported version scores like the trained run.
"""
