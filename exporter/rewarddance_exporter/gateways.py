"""Switch running gateways to a model version and confirm it: the last step of ``deploy`` and ``rollback``.

For each gateway URL: ``POST /v1/admin/reload {model, version}`` (the admin key as a bearer token), then poll
``GET /v1/models`` until the model's ``default_version`` and every worker's entry name that version (with
``--processes N`` the supervisor fans the reload out to the other workers asynchronously). Standard library only,
so it runs wherever the exporter does; the wire format is docs/api.md's.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

ADMIN_KEY_ENV = "REWARDDANCE_ADMIN_KEY"
POLL_S = 0.25


class GatewayError(RuntimeError):
    pass


def admin_key(path: Path | None) -> str | None:
    """The first key of ``path`` (one per line), else of $REWARDDANCE_ADMIN_KEY (comma-separated); keys are never
    taken from the command line."""
    if path is not None:
        keys = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        if not keys:
            raise GatewayError(f"{path} holds no admin key")
        return keys[0]
    keys = [k.strip() for k in os.environ.get(ADMIN_KEY_ENV, "").split(",") if k.strip()]
    return keys[0] if keys else None


def _call(url: str, key: str | None, body: dict | None, timeout: float) -> dict:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise GatewayError(f"{request.get_method()} {url}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise GatewayError(f"{request.get_method()} {url}: {exc}") from None


def served_versions(url: str, model: str, key: str | None, timeout: float = 10.0) -> list[int]:
    """The version of ``model`` each worker of the gateway serves (its ``default_version`` first)."""
    listing = _call(f"{url.rstrip('/')}/v1/models", key, None, timeout)
    entry = next((m for m in listing.get("models", []) if m.get("name") == model), None)
    if entry is None:
        return []
    workers = [w.get("models", {}).get(model) for w in listing.get("workers", [])]
    return [entry.get("default_version"), *workers]


def switch_one(url: str, model: str, version: int, key: str | None, timeout_s: float) -> dict:
    """Reload ``model`` ``version`` on one gateway and wait until all its workers report it."""
    started = time.monotonic()
    reply = _call(f"{url.rstrip('/')}/v1/admin/reload", key, {"model": model, "version": version}, timeout_s)
    seen: list[int] = []
    while time.monotonic() - started < timeout_s:
        seen = served_versions(url, model, key)
        if seen and all(v == version for v in seen):
            return {
                "url": url,
                "version": version,
                "previous": (reply.get("previous") or {}).get("version"),
                "seconds": round(time.monotonic() - started, 2),
            }
        time.sleep(POLL_S)
    raise GatewayError(f"{url} still reports {model} versions {seen} after {timeout_s:g} s (wanted {version})")


def switch(urls, model: str, version: int, key: str | None, timeout_s: float, log=print) -> list[dict]:
    """Every gateway in turn; raises on the first that does not switch (the others already did: say which)."""
    done: list[dict] = []
    for url in urls:
        try:
            done.append(switch_one(url, model, version, key, timeout_s))
        except GatewayError as exc:
            switched = ", ".join(d["url"] for d in done) or "none"
            raise GatewayError(f"{exc} (gateways already on v{version}: {switched})") from None
        log(f"{url}: serving {model} v{version} (was v{done[-1]['previous']}, {done[-1]['seconds']} s)")
    return done
