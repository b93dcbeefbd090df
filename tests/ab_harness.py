"""Harness for the A/B page, shared by its tests and the screenshot script: a tiny pair set, the server as a real
process (so it can be killed), and the system Chromium driven through selenium.

The browser is Debian's ``chromium`` + ``chromium-driver`` (``make test`` installs them where missing); selenium is
pointed at both binaries, so nothing is downloaded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from rewarddance.ab.pairs import Pair, PairSet

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_pair_set(root: Path, n: int = 6, size: int = 32) -> PairSet:
    """``n`` pairs of flat-coloured squares; the served reward gap grows with the pair index."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        for side in ("a", "b"):
            pixels = np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
            (root / side).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(root / side / f"{i:03d}.png")
        pairs.append(
            Pair(f"p{i:03d}", f"prompt number {i}", f"a/{i:03d}.png", f"b/{i:03d}.png", 0.5, 0.5 + 0.01 * (n - i))
        )
    pair_set = PairSet(root.resolve(), "tiny", "generator-a", "generator-b", tuple(pairs))
    pair_set.write()
    return pair_set


class AbServer:
    """``rewarddance ab serve`` in its own process on a free port; ``kill()`` is SIGKILL (no clean shutdown)."""

    def __init__(self, pairs: Path, db: Path, log: Path, order: str = "uncertain") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "rewarddance.cli", "ab", "serve", "--pairs", str(pairs), "--db", str(db)]
        cmd += ["--port", str(self.port), "--order", order]
        self._log = open(log, "a")  # noqa: SIM115 -- closed in kill()/stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ab serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url} not ready within {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def chromium(width: int = 900, height: int = 760):
    """A headless Chromium webdriver from the system packages (fresh profile; nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: `make test` installs chromium and chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ab-chromium-')}")
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def wait_for(driver, condition, timeout: float = 15.0, what: str = "condition"):
    """Poll ``condition(driver)`` until truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
