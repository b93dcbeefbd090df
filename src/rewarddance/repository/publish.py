"""Publishing a new version: stage it, verify it, number it, rename it into place.

    with staged(repo.root, "reward_small") as staging:
        ... write model.onnx, tokenizer.json, ... into staging
        manifest = publish(repo, staging, manifest, options, verify=check)

A version is built in a hidden staging directory inside its model's folder (same filesystem, so the last step is one
rename); Triton, the gateway's reload and ``ModelRepository.versions`` never list a directory whose name is not a
number, so nobody sees half a version. ``publish`` writes the manifest, runs ``verify`` on the staged version (the
exporter scores it through the real serving pipeline and returns the largest difference from the training path,
which must stay within the manifest's export tolerance), then takes the next free number (versions are never
overwritten), writes the final manifest and the model's config.pbtxt, and renames the directory into place.
``staged`` removes the directory if anything fails before that.

``rewarddance deploy`` exports into a ``mirror`` of the repository (a hidden folder inside the model's folder) and,
once its gate passes, ``promote`` moves the new versions in and pins the candidate as the default.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from . import manifest as manifests
from . import triton
from .layout import CONFIG, MANIFEST, ModelRepository, ModelVersion, fsync_dir
from .manifest import Manifest


class PublishError(RuntimeError):
    """A version that must not be published: it failed verification, or its number is taken."""


@contextmanager
def staged(root: str | Path, name: str) -> Iterator[Path]:
    """A fresh hidden staging directory for a version of ``name``; removed unless ``publish`` renamed it away."""
    path = Path(root) / name / f".staging-{time.time_ns()}-{os.getpid()}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish(
    repo: ModelRepository,
    staging: Path,
    manifest: Manifest,
    options: triton.TritonOptions,
    version: int | str = "auto",
    verify: Callable[[ModelVersion], float] | None = None,
) -> Manifest:
    """Verify the staged version, then make it ``<model>/<version>``; returns the manifest as published."""
    manifests.write(manifest, staging / MANIFEST)
    if verify is not None:
        diff = float(verify(ModelVersion(manifest.name, 0, staging)))
        manifest = replace(manifest, export=replace(manifest.export, end_to_end_max_abs_diff=diff))
        if not diff <= manifest.export.tolerance:
            raise PublishError(
                f"{manifest.name}: the serving pipeline scores the staged version {diff:.3g} away from the training "
                f"path (tolerance {manifest.export.tolerance:g}); not published"
            )
    number = repo.next_version(manifest.name) if version == "auto" else int(version)
    target = repo.root / manifest.name / str(number)
    if target.exists():
        raise PublishError(f"{target} exists; versions are never overwritten (use --version auto)")
    manifest = manifest.with_version(number)
    manifests.write(manifest, staging / MANIFEST)
    triton.write(repo.root / manifest.name, manifest, staging, options)
    staging.rename(target)
    fsync_dir(target.parent)
    return manifest


# -- a staged repository into the live one (rewarddance deploy) -----------------------------------------------------
def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def mirror(repo: ModelRepository, staging: Path, skip: str) -> None:
    """The repository's models but ``skip`` in ``staging``, so an export there reuses (and numbers) encoders as it
    would in place. Version folders are hard links (never rewritten); model-level files (config.pbtxt) are copies,
    because a publication rewrites them in place."""
    for model in sorted(p for p in repo.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if model.name == skip:
            continue
        (staging / model.name).mkdir(parents=True)
        for entry in model.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.is_dir() and entry.name.isdigit():
                shutil.copytree(entry, staging / model.name / entry.name, copy_function=_link_or_copy)
            elif entry.is_file():
                shutil.copy2(entry, staging / model.name / entry.name)


def _replace_file(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` in one rename (a reader sees the old file or the new one)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _move_in(staged_repo: ModelRepository, repo: ModelRepository, name: str, versions: list[int]) -> None:
    """Finished version folders of ``name`` renamed into the repository, after its config.pbtxt."""
    (repo.root / name).mkdir(exist_ok=True)
    if (staged_repo.root / name / CONFIG).exists():
        _replace_file(staged_repo.root / name / CONFIG, repo.root / name / CONFIG)
    for v in versions:
        target = repo.root / name / str(v)
        if target.exists():
            raise PublishError(f"{target} appeared meanwhile (another export?); nothing of {name} published")
        os.rename(staged_repo.root / name / str(v), target)


def promote(staged_repo: ModelRepository, repo: ModelRepository, name: str, version: int, serving: int | None) -> None:
    """Make ``version`` of ``name``, published in ``staged_repo`` (a ``mirror``), the default version of ``repo``.

    Each step leaves a repository whose default is the old version or the new one, never half a version: pin the
    serving version if nothing pins it (so a newer folder cannot become the default), rename in the new encoder
    versions and then the candidate's folder, and pin the candidate (that write is the publication)."""
    if serving is not None and repo.pinned(name) != serving:
        repo.pin(name, serving)
    for other in sorted(p.name for p in staged_repo.root.iterdir() if p.is_dir() and p.name != name):
        new = sorted(set(staged_repo.versions(other)) - set(repo.versions(other)))
        if new:
            _move_in(staged_repo, repo, other, new)
    _move_in(staged_repo, repo, name, [version])
    repo.pin(name, version)
