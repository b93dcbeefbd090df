"""The repository's layout (DESIGN.md 3.2): ``<root>/<model>/config.pbtxt`` and ``<root>/<model>/<N>/``.

Every version directory holds ``model.onnx`` and ``manifest.json``; reward versions also hold the fitted component
scorers (``components/``) and the tokenizer (``tokenizer.json``). The manifest names the encoder versions a reward
version was trained with, so a repository can hold several encoders side by side.

The default (served) version of a model is its newest complete version, unless ``<root>/<model>/default_version``
pins another one (``rewarddance deploy`` and ``rollback`` write it). The pin file is replaced atomically, so a
reader sees the old pin or the new one; a pin naming a version that is not complete is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import manifest as manifests
from .manifest import EncoderManifest, Manifest

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
CONFIG = "config.pbtxt"
PIN_FILE = "default_version"


class RepositoryError(LookupError):
    """A model or version that is not in the repository (the gateway answers 404)."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path

    @cached_property
    def manifest(self) -> Manifest:
        """The version's manifest, read and checked once (``ManifestError`` names the file and the field): a published
        version is never rewritten, and backends read it on every inference call (Triton's output names)."""
        return manifests.load(self.path / MANIFEST)

    @property
    def onnx(self) -> Path:
        return self.path / MODEL_FILE


class ModelRepository:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def models(self, kind: str | None = None) -> list[str]:
        """Model names with at least one complete version, optionally of one manifest ``kind``."""
        if not self.root.is_dir():
            return []
        names = []
        for model in sorted(p for p in self.root.iterdir() if p.is_dir() and (p / CONFIG).exists()):
            versions = self.versions(model.name)
            if versions and (kind is None or self.get(model.name, versions[-1]).manifest.kind == kind):
                names.append(model.name)
        return names

    def versions(self, name: str) -> list[int]:
        """Complete versions (a directory named by an integer with a manifest), ascending."""
        model = self.root / name
        if not model.is_dir():
            return []
        return sorted(
            int(p.name) for p in model.iterdir() if p.is_dir() and p.name.isdigit() and (p / MANIFEST).exists()
        )

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A version of ``name``; None or 0 -> the default one (pinned, else the newest complete one)."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.models()) or "none"
            raise RepositoryError(f"unknown model {name!r} in {self.root} (models: {known})")
        if not version:
            pinned = self.pinned(name)
            version = pinned if pinned in versions else versions[-1]
        if version not in versions:
            raise RepositoryError(f"model {name!r} has no version {version} (versions: {versions})")
        return ModelVersion(name, version, self.root / name / str(version))

    def find(self, name: str, encoder_sha256: str) -> int | None:
        """The version of encoder ``name`` exported from weights with this sha256 (an export reuses it), or None."""
        for version in self.versions(name):
            manifest = self.get(name, version).manifest
            if isinstance(manifest, EncoderManifest) and manifest.encoder_sha256 == encoder_sha256:
                return version
        return None

    def next_version(self, name: str) -> int:
        """One past the highest version directory present, complete or not, so nothing is ever overwritten."""
        model = self.root / name
        taken = [int(p.name) for p in model.iterdir() if p.name.isdigit()] if model.is_dir() else []
        return max(taken, default=0) + 1

    # -- the default version ----------------------------------------------------------------------------------------
    def pinned(self, name: str) -> int | None:
        """The version ``default_version`` pins (complete or not), or None when there is no readable pin."""
        try:
            text = (self.root / name / PIN_FILE).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(text) if text.isdigit() and int(text) > 0 else None

    def default_version(self, name: str) -> int:
        """The version served when none is asked for (see ``get``)."""
        return self.get(name).version

    def pin(self, name: str, version: int) -> None:
        """Make ``version`` (complete) the default, atomically: write a temporary file, fsync, rename over the pin."""
        if version not in self.versions(name):
            raise RepositoryError(f"model {name!r} has no complete version {version} (versions: {self.versions(name)})")
        path = self.root / name / PIN_FILE
        tmp = path.with_name(f".{PIN_FILE}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(f"{version}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a crash after it cannot bring the old entry back)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
