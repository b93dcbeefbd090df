"""The model repository: the one contract between the offline half (exporter) and the online half (gateway).

- :mod:`.layout`: ``<root>/<model>/<N>/`` and ``config.pbtxt``, version listing, the default version and its pin;
- :mod:`.manifest`: the typed, format-checked ``manifest.json`` of each version (encoders and reward models);
- :mod:`.publish`: stage a version, verify it, rename it into place; promote a deploy's staged versions;
- :mod:`.triton` and :mod:`.pbtxt`: the model's ``config.pbtxt`` for Triton, and the python-backend ``model.py``.

Nothing here imports torch, onnxruntime or the serving pipeline: the exporter, the gateway, the Triton backend and
the benchmarks all read and write the repository through this package.
"""

from .layout import CONFIG, MANIFEST, MODEL_FILE, PIN_FILE, ModelRepository, ModelVersion, RepositoryError
from .manifest import (
    DEFAULT_RESIZE,
    FEATURE_ARCHITECTURE,
    FORMAT,
    PIXEL_ARCHITECTURE,
    RESIZE_MODES,
    REWARD_KIND,
    EncoderManifest,
    EncoderRef,
    ExportRecord,
    ImagePreprocessing,
    Manifest,
    ManifestError,
    RewardManifest,
    Tensor,
    TextPreprocessing,
    Variant,
)
from .publish import PublishError, mirror, promote, publish, staged
from .triton import FLAVOURS, TritonOptions

__all__ = [
    "CONFIG",
    "DEFAULT_RESIZE",
    "FEATURE_ARCHITECTURE",
    "FLAVOURS",
    "FORMAT",
    "MANIFEST",
    "MODEL_FILE",
    "PIN_FILE",
    "PIXEL_ARCHITECTURE",
    "RESIZE_MODES",
    "REWARD_KIND",
    "EncoderManifest",
    "EncoderRef",
    "ExportRecord",
    "ImagePreprocessing",
    "Manifest",
    "ManifestError",
    "ModelRepository",
    "ModelVersion",
    "PublishError",
    "RepositoryError",
    "RewardManifest",
    "Tensor",
    "TextPreprocessing",
    "TritonOptions",
    "Variant",
    "mirror",
    "promote",
    "publish",
    "staged",
]
