"""When to try a failed request again and how long to wait first (the same policy for HTTP and gRPC).

Retried: connection failures, timeouts, 429 / RESOURCE_EXHAUSTED, 500/502/503/504 / UNAVAILABLE, INTERNAL.
The wait is the server's ``Retry-After`` when it sent one (capped at ``MAX_RETRY_AFTER``), else exponential
backoff with jitter so that many clients rejected together do not come back together.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from ._exceptions import RETRYABLE, APIError

T = TypeVar("T")

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 60.0

logger = logging.getLogger("rewarddance_client")

# Looked up at call time so that tests (and callers with their own clock) can replace them.
sleep: Callable[[float], None] = time.sleep
async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP date); ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds)


def retry_delay(attempt: int, error: APIError) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
    if error.retry_after is not None:
        return min(error.retry_after, MAX_RETRY_AFTER)
    backoff = min(INITIAL_DELAY * 2**attempt, MAX_DELAY)
    return backoff * (1.0 - 0.25 * random.random())


def _should_retry(error: APIError, attempt: int, max_retries: int) -> bool:
    return isinstance(error, RETRYABLE) and attempt < max_retries


def _log(error: APIError, attempt: int, max_retries: int, delay: float) -> None:
    logger.info("retry %d/%d in %.2f s after: %s", attempt + 1, max_retries, delay, error)


def call_with_retries(send: Callable[[], T], max_retries: int) -> T:
    """Runs ``send`` until it succeeds, raises a non-retryable error, or ``max_retries`` retries are spent."""
    attempt = 0
    while True:
        try:
            return send()
        except APIError as error:
            if not _should_retry(error, attempt, max_retries):
                raise
            delay = retry_delay(attempt, error)
            _log(error, attempt, max_retries, delay)
            sleep(delay)
            attempt += 1


async def async_call_with_retries(send: Callable[[], Awaitable[T]], max_retries: int) -> T:
    """The asyncio twin of :func:`call_with_retries`."""
    attempt = 0
    while True:
        try:
            return await send()
        except APIError as error:
            if not _should_retry(error, attempt, max_retries):
                raise
            delay = retry_delay(attempt, error)
            _log(error, attempt, max_retries, delay)
            await async_sleep(delay)
            attempt += 1
