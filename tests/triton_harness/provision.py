"""Provision a real Triton Inference Server from the ``nvidia-pytriton`` wheel, in its own venv.

The wheel carries a real ``tritonserver`` binary (2.51) with only the python backend. It needs ``numpy<2``, so it
lives in a separate virtual environment (default ``<repo root>/.venv-triton``, or ``$REWARDDANCE_TRITON_VENV``)
that is used only to run the server and the python-backend stub (which imports numpy and onnxruntime from it).

``provision()`` is idempotent: a stamp file in the venv records the requirements and the installed versions; when it
matches and the files are in place, a second call reads it and returns at once (no subprocess). Stdlib only, so the
server side can use it without numpy/onnxruntime.

Layout written here (inside the venv)::

    <venv>/triton/backends/python/libtriton_python.so
    <venv>/triton/backends/python/triton_python_backend_utils.py
    <venv>/triton/backends/python/triton_python_backend_stub   (copied from python_backend_stubs/<X.Y>/)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_VENV = "REWARDDANCE_TRITON_VENV"
ENV_PYTHON = "REWARDDANCE_TRITON_PYTHON"
DEFAULT_VENV_NAME = ".venv-triton"
STAMP_NAME = "rewarddance-triton-stamp.json"
STAMP_FORMAT = 1
# numpy<2: the wheel's python backend utils need it. onnxruntime >= 1.18 wheels declare numpy>=1.21 and run on 1.26.
DEFAULT_REQUIREMENTS: tuple[str, ...] = ("nvidia-pytriton>=0.7,<0.8", "numpy<2", "onnxruntime>=1.18")
REPORTED_PACKAGES: tuple[str, ...] = ("nvidia-pytriton", "numpy", "onnxruntime", "protobuf")
PIP_TIMEOUT_S = 1200.0
_PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class ProvisionError(RuntimeError):
    """Provisioning the Triton venv failed (no network for pip, missing file in the wheel, ...)."""


@dataclass(frozen=True)
class TritonInstall:
    """Where a provisioned Triton lives and how to run it."""

    venv: Path
    python: Path  # the venv's interpreter (runs the python backend stub's imports)
    python_version: str  # "3.11"
    site_packages: Path
    tritonserver: Path  # the binary inside the wheel
    backend_dir: Path  # holds python/ (pass as --backend-directory)
    cache_dir: Path  # the wheel's caches/ (pass as --cache-directory)
    libdir: Path  # the venv interpreter's sysconfig LIBDIR (libpython for the stub)
    env: Mapping[str, str] = field(default_factory=dict)  # overrides: LD_LIBRARY_PATH, PATH
    versions: Mapping[str, str] = field(default_factory=dict)  # installed package versions
    stamp: Path | None = None

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A full environment for the server process: ``base`` (default ``os.environ``) with ``env`` applied.

        PYTHONHOME / PYTHONPATH / VIRTUAL_ENV of the caller are dropped: the stub must import numpy<2 and
        onnxruntime from the triton venv, never from the caller's (numpy 2) environment.
        """
        out = dict(os.environ if base is None else base)
        for key in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP"):
            out.pop(key, None)
        out.update(self.env)
        out["VIRTUAL_ENV"] = str(self.venv)
        return out


def repo_root() -> Path:
    """The repository root (the directory holding pyproject.toml above this file), else the current directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src").is_dir():
            return parent
    return Path.cwd()


def default_venv() -> Path:
    env = os.environ.get(ENV_VENV)
    return Path(env).expanduser().resolve() if env else repo_root() / DEFAULT_VENV_NAME


def _base_python() -> str:
    """The interpreter to build the venv from: $REWARDDANCE_TRITON_PYTHON, else the base of the running one."""
    env = os.environ.get(ENV_PYTHON)
    if env:
        return env
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(cmd: Sequence[str], *, timeout: float, what: str, env: Mapping[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(f"{what}: timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    except OSError as exc:
        raise ProvisionError(f"{what}: cannot run {cmd[0]!r}: {exc}") from exc
    if proc.returncode != 0:
        lines = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
        # pip's "WARNING: Location 'file:///...' is ignored" lines for the local mirrors bury the real error
        tail = "\n".join([ln for ln in lines if not ln.startswith("WARNING: Location ")][-40:])
        hint = ""
        low = tail.lower()
        if any(s in low for s in ("network", "connection", "resolve", "no matching distribution", "timed out")):
            hint = "\nHINT: pip needs to reach the package registry the first time Triton is provisioned."
        raise ProvisionError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}{hint}")
    return proc.stdout


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(key, None)
    return env


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive file lock so that concurrent provision() calls (other workers, xdist) do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_PROBE = r"""
import importlib.metadata as md, json, site, sys, sysconfig
out = {
    "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
    "purelib": sysconfig.get_paths()["purelib"],
    "versions": {},
}
for name in NAMES:
    try:
        out["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def _probe(python: Path) -> dict:
    code = _PROBE.replace("NAMES", repr(list(REPORTED_PACKAGES)))
    out = _run([str(python), "-c", code], timeout=120, what="probing the triton venv interpreter", env=_clean_env())
    return json.loads(out.strip().splitlines()[-1])


def _smoke(python: Path) -> None:
    code = (
        "import numpy, onnxruntime\n"
        "assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__\n"
        "import onnxruntime.capi.onnxruntime_pybind11_state\n"
    )
    _run(
        [str(python), "-c", code],
        timeout=300,
        what="importing numpy and onnxruntime in the triton venv",
        env=_clean_env(),
    )


def _layout(probe: dict) -> dict[str, Path]:
    site_packages = Path(probe["purelib"])
    dist = site_packages / "pytriton" / "tritonserver"
    return {
        "site_packages": site_packages,
        "dist": dist,
        "tritonserver": dist / "bin" / "tritonserver",
        "python_backend_src": dist / "backends" / "python",
        "stub": dist / "python_backend_stubs" / probe["python_version"] / "triton_python_backend_stub",
        "cache_dir": dist / "caches",
        "libs": site_packages / "nvidia_pytriton.libs",
        "libdir": Path(probe["libdir"]),
    }


def _check_layout(paths: Mapping[str, Path], probe: Mapping) -> None:
    dist = paths["dist"]
    if not dist.is_dir():
        raise ProvisionError(f"nvidia-pytriton is installed but {dist} is missing (not the wheel with tritonserver?)")
    if not paths["tritonserver"].is_file():
        raise ProvisionError(f"tritonserver binary not found at {paths['tritonserver']}")
    for name in _PYTHON_BACKEND_FILES:
        if not (paths["python_backend_src"] / name).is_file():
            raise ProvisionError(f"python backend file {name} not found in {paths['python_backend_src']}")
    if not paths["stub"].is_file():
        have = sorted(p.name for p in (dist / "python_backend_stubs").glob("*")) if dist.is_dir() else []
        raise ProvisionError(
            f"no python backend stub for Python {probe['python_version']} in the wheel ({paths['stub']}); "
            f"stubs exist for {have}. Set {ENV_PYTHON} to a matching interpreter."
        )
    if not paths["libs"].is_dir():
        raise ProvisionError(f"the wheel's bundled libraries are missing: {paths['libs']}")
    libpython = paths["libdir"] / str(probe.get("ldlibrary") or "")
    if not probe.get("shared") or not libpython.is_file():
        raise ProvisionError(
            f"the triton venv interpreter has no shared libpython ({libpython}); the python backend stub links "
            f"libpython{probe['python_version']}.so. Use a Python built with --enable-shared (set {ENV_PYTHON})."
        )


def _install_backend(paths: Mapping[str, Path], backend_dir: Path) -> None:
    py_dir = backend_dir / "python"
    py_dir.mkdir(parents=True, exist_ok=True)
    for name in _PYTHON_BACKEND_FILES:
        shutil.copy2(paths["python_backend_src"] / name, py_dir / name)
    stub = py_dir / "triton_python_backend_stub"
    shutil.copy2(paths["stub"], stub)
    stub.chmod(0o755)


def _make_install(venv: Path, stamp_path: Path, stamp: Mapping) -> TritonInstall:
    probe = stamp["probe"]
    paths = _layout(probe)
    bin_dir = venv / "bin"
    ld = [str(paths["libdir"]), str(paths["libs"])]
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(ld + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]),
        "PATH": os.pathsep.join([str(bin_dir)] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]),
    }
    return TritonInstall(
        venv=venv,
        python=bin_dir / "python",
        python_version=probe["python_version"],
        site_packages=paths["site_packages"],
        tritonserver=paths["tritonserver"],
        backend_dir=Path(stamp["backend_dir"]),
        cache_dir=paths["cache_dir"],
        libdir=paths["libdir"],
        env=env,
        versions=dict(probe["versions"]),
        stamp=stamp_path,
    )


def _stamp_valid(stamp: Mapping, requirements: Sequence[str]) -> bool:
    if stamp.get("format") != STAMP_FORMAT or list(stamp.get("requirements", [])) != list(requirements):
        return False
    probe = stamp.get("probe") or {}
    try:
        paths = _layout(probe)
        backend = Path(stamp["backend_dir"]) / "python"
    except (KeyError, TypeError):
        return False
    needed = [paths["tritonserver"], backend / "triton_python_backend_stub", paths["libs"]]
    needed += [backend / name for name in _PYTHON_BACKEND_FILES]
    return all(p.exists() for p in needed)


def read_stamp(venv: Path | None = None) -> dict | None:
    path = (Path(venv) if venv is not None else default_venv()) / STAMP_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def provision(
    venv: Path | None = None,
    *,
    requirements: Sequence[str] = DEFAULT_REQUIREMENTS,
    base_python: str | None = None,
    force: bool = False,
    log=None,
) -> TritonInstall:
    """Create (idempotently) the Triton venv and backend directory; return where everything is.

    ``venv``: default ``$REWARDDANCE_TRITON_VENV`` or ``<repo root>/.venv-triton``. ``base_python``: the interpreter
    the venv is created from (default ``$REWARDDANCE_TRITON_PYTHON`` or the running interpreter's base); it needs a
    shared libpython and a matching stub in the wheel (3.8 .. 3.13). ``log``: optional callable for progress lines.
    Raises ``ProvisionError`` with the pip/output tail when something is missing.
    """
    venv = (Path(venv) if venv is not None else default_venv()).expanduser().absolute()
    requirements = list(requirements)
    stamp_path = venv / STAMP_NAME
    say = log or (lambda _msg: None)

    if not force:
        stamp = read_stamp(venv)
        if stamp is not None and _stamp_valid(stamp, requirements):
            return _make_install(venv, stamp_path, stamp)

    venv.mkdir(parents=True, exist_ok=True)
    # keep the venv (and its lock file) out of git even when it sits inside the repository
    (venv / ".gitignore").write_text("# created by tests/triton_harness (provision)\n*\n")
    with _lock(venv / ".provision.lock"):
        if not force:  # another process may have finished while we waited for the lock
            stamp = read_stamp(venv)
            if stamp is not None and _stamp_valid(stamp, requirements):
                return _make_install(venv, stamp_path, stamp)
        t0 = time.monotonic()
        with contextlib.suppress(FileNotFoundError):
            stamp_path.unlink()
        python = venv / "bin" / "python"
        if not python.exists():
            base = base_python or _base_python()
            say(f"creating venv {venv} from {base}")
            _run([base, "-m", "venv", str(venv)], timeout=300, what="creating the triton venv", env=_clean_env())
        say(f"pip install {' '.join(requirements)}")
        _run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", *requirements],
            timeout=PIP_TIMEOUT_S,
            what="pip install into the triton venv",
            env=_clean_env(),
        )
        _smoke(python)
        probe = _probe(python)
        paths = _layout(probe)
        _check_layout(paths, probe)
        backend_dir = venv / "triton" / "backends"
        _install_backend(paths, backend_dir)
        stamp = {
            "format": STAMP_FORMAT,
            "requirements": requirements,
            "probe": probe,
            "backend_dir": str(backend_dir),
            "created_unix": time.time(),
            "provision_seconds": round(time.monotonic() - t0, 2),
        }
        tmp = stamp_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
        tmp.replace(stamp_path)
        say(f"triton venv ready in {stamp['provision_seconds']} s: {probe['versions']}")
        return _make_install(venv, stamp_path, stamp)


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/triton_harness [VENV]``: provision and print the install as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    t0 = time.monotonic()
    try:
        inst = provision(Path(args[0]) if args else None, log=lambda m: print(m, file=sys.stderr))
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = {k: str(v) for k, v in vars(inst).items() if isinstance(v, Path)}
    out["versions"] = dict(inst.versions)
    out["env"] = dict(inst.env)
    out["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
