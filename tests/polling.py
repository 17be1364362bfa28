"""Waiting for something to happen, instead of sleeping for a fixed time and hoping it did."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.02


def poll(condition: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """Call ``condition`` until it returns something true, and return that; fail after
    ``timeout`` seconds naming ``what`` was awaited. A fast machine waits a few milliseconds, a
    loaded one as long as it needs (up to the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(INTERVAL)
