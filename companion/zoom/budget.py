"""A per-category request budget that keeps bulk work under Zoom's per-second rate limits.

Zoom limits requests per account and per second by the operation's "Rate Limit Label" (light,
medium, heavy, resource-intensive), shared by every app and worker on the account. Each category
here is a token bucket; the client takes one token before each request and sleeps when the bucket
is empty. Taking a token is a reservation made under a lock, and the sleep happens outside it, so
threads queue fairly and the lock is never held while waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

LIGHT = "light"
MEDIUM = "medium"
HEAVY = "heavy"
RESOURCE_INTENSIVE = "resource_intensive"

# Requests per second by plan, from Zoom's rate-limit page (see zoom-api-notes.md section 7).
# Registration and cloud recording need Pro or higher, so no free-plan row.
PLAN_RATES: dict[str, dict[str, float]] = {
    "pro": {LIGHT: 30.0, MEDIUM: 20.0, HEAVY: 10.0, RESOURCE_INTENSIVE: 10 / 60},
    "business": {LIGHT: 80.0, MEDIUM: 60.0, HEAVY: 40.0, RESOURCE_INTENSIVE: 20 / 60},
}
DEFAULT_PLAN = "pro"


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float


class RequestBudget:
    """Token buckets per rate-limit category; thread-safe.

    :param rates: requests per second per category; defaults to Zoom's Pro plan.
    :param burst: how many requests a category may send back to back after being idle. The default
        of 1 paces requests evenly, so no calendar second ever sees more than ``rate + 1``; a larger
        burst is faster for short runs but can exceed Zoom's per-second count.
    :param clock: seconds, ideally monotonic; a clock that steps back counts as standing still.
    :param sleep: how to wait; tests pass a fake that advances their fake clock.
    """

    def __init__(
        self,
        rates: Mapping[str, float] | None = None,
        *,
        burst: Mapping[str, float] | float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        rates = dict(PLAN_RATES[DEFAULT_PLAN] if rates is None else rates)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._buckets: dict[str, _Bucket] = {}
        for category, rate in rates.items():
            if rate <= 0:
                raise ValueError(f"rate for {category!r} must be positive, got {rate}")
            capacity = float(burst[category] if isinstance(burst, Mapping) else burst)
            if capacity < 1:
                raise ValueError(f"burst for {category!r} must be at least 1, got {capacity}")
            self._buckets[category] = _Bucket(float(rate), capacity, capacity, now)

    @classmethod
    def for_plan(cls, plan: str = DEFAULT_PLAN, **kwargs: object) -> RequestBudget:
        """A budget with the documented rates of a Zoom plan (``"pro"`` or ``"business"``)."""
        try:
            rates = PLAN_RATES[plan]
        except KeyError:
            raise ValueError(
                f"unknown Zoom plan {plan!r}; one of {', '.join(PLAN_RATES)}"
            ) from None
        return cls(rates, **kwargs)  # type: ignore[arg-type]

    @property
    def rates(self) -> dict[str, float]:
        return {category: bucket.rate for category, bucket in self._buckets.items()}

    def reserve(self, category: str) -> float:
        """Take one token from ``category`` and return how long the caller must wait before
        sending (0.0 when a token was free). The token is the caller's even before the wait."""
        try:
            bucket = self._buckets[category]
        except KeyError:
            raise ValueError(f"unknown rate-limit category {category!r}") from None
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(bucket.capacity, bucket.tokens + elapsed * bucket.rate)
            bucket.updated = max(now, bucket.updated)
            # Going negative records a queue of reservations; each waits for its own refill.
            bucket.tokens -= 1.0
            return max(0.0, -bucket.tokens / bucket.rate)

    def acquire(self, category: str) -> float:
        """Wait until a request in ``category`` may be sent; return the seconds waited."""
        wait = self.reserve(category)
        if wait > 0:
            self._sleep(wait)
        return wait
