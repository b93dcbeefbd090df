"""Structured JSON logs: one object per line with the message, level, logger and any ``extra=`` fields.

Request logs carry ``request_id``; credentials are never put in a log record (the auth layer does not log).
Client errors (4xx request lines, uvicorn's warnings about broken requests) are rate-limited per kind, so a flood
of bad requests or broken connections writes a few lines a second instead of filling the disk.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import uuid

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ClientErrorLimiter(logging.Filter):
    """Per kind of client error (logger, message, route, status, error code): a burst of ``burst`` lines, then one
    per ``interval_s``; the next line let through carries ``suppressed``, the count dropped since the last one."""

    def __init__(self, burst: int = 20, interval_s: float = 1.0, max_kinds: int = 4096) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self.max_kinds = max_kinds
        self._kinds: dict[tuple, list[float]] = {}  # kind -> [tokens, last refill, suppressed]
        self._lock = threading.Lock()

    @staticmethod
    def is_client_error(record: logging.LogRecord) -> bool:
        status = getattr(record, "status", None)
        if isinstance(status, int) and 400 <= status < 500:
            return True
        return record.name.startswith("uvicorn") and record.levelno == logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_client_error(record):
            return True
        kind = (
            record.name,
            str(record.msg),
            getattr(record, "route", None),
            getattr(record, "status", None),
            getattr(record, "error_code", None),
        )
        now = time.monotonic()
        with self._lock:
            state = self._kinds.get(kind)
            if state is None:
                if len(self._kinds) >= self.max_kinds:
                    self._kinds.clear()
                state = self._kinds[kind] = [float(self.burst), now, 0.0]
            state[0] = min(float(self.burst), state[0] + (now - state[1]) / self.interval_s)
            state[1] = now
            if state[0] < 1.0:
                state[2] += 1
                return False
            state[0] -= 1.0
            suppressed, state[2] = int(state[2]), 0.0
        if suppressed:
            record.suppressed = suppressed
        return True


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ClientErrorLimiter())
    for name in ("rewarddance_server", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the gateway logs each request itself, with its id


def request_id(incoming: str | None) -> str:
    """The caller's ``x-request-id`` when it is a sane token, else a fresh one."""
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex
