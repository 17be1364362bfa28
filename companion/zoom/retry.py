"""When to retry a Zoom call and how long to wait: small pure functions, tested on their own.

Only failures that may pass on their own are retried (no answer, 429 per-second limits, 5xx), and
only for calls that are safe to send twice. Backoff is capped exponential with full jitter; the
randomness comes from an injected ``random.Random`` so tests can pin the exact schedule.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import re

# error_kind values for should_retry().
CONNECTION = "connection"
DAILY_LIMIT = "daily_limit"

DEFAULT_BASE = 0.5
DEFAULT_CAP = 8.0

_SECONDS = re.compile(r"^\d+(\.\d+)?$")


def should_retry(
    method_is_idempotent: bool,
    status: int | None,
    error_kind: str | None,
    attempt: int,
    max_attempts: int,
) -> bool:
    """Decide whether a failed attempt should be sent again.

    :param method_is_idempotent: sending the call twice has the same effect as once.
    :param status: the HTTP status of the failed attempt, ``None`` when no response arrived.
    :param error_kind: :data:`CONNECTION` (no answer), :data:`DAILY_LIMIT` (a 429 for a daily
        cap) or ``None``.
    :param attempt: how many attempts have been made so far, counting from 1.
    :param max_attempts: the most attempts allowed in total.
    """
    if attempt >= max_attempts or not method_is_idempotent:
        return False
    if error_kind == CONNECTION:
        return True
    if status == 429:
        # A daily cap resets at midnight UTC; retrying within seconds only burns more of it.
        return error_kind != DAILY_LIMIT
    return status is not None and status >= 500


def full_jitter(ceiling: float, rng: random.Random) -> float:
    """Pick a wait uniformly between 0 and ``ceiling`` (kept apart so tests can stub it)."""
    return rng.uniform(0.0, ceiling)


def backoff_seconds(
    attempt: int,
    base: float = DEFAULT_BASE,
    cap: float = DEFAULT_CAP,
    rng: random.Random | None = None,
) -> float:
    """Wait before the retry that follows ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped,
    with full jitter so that many workers failing together do not retry in lockstep."""
    exponent = min(max(attempt, 1) - 1, 62)
    ceiling = min(cap, base * (2**exponent))
    return full_jitter(ceiling, rng if rng is not None else random.Random())


def parse_retry_after(header_value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None`` if absent or unreadable.

    Accepts delta-seconds (``"120"``), an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``) and the
    ISO 8601 time Zoom documents for its daily limit (``"2020-05-31T00:00:00Z"``). A time already
    past means "now" (0.0).

    :param now: the current time as epoch seconds.
    """
    if header_value is None:
        return None
    text = header_value.strip()
    if not text:
        return None
    if _SECONDS.match(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    when = _parse_http_date(text) or _parse_iso_time(text)
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def _parse_http_date(text: str) -> dt.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    # HTTP-dates are always GMT; "-0000" comes back naive.
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _parse_iso_time(text: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def is_daily_limit(rate_limit_type: str | None, message: str | None) -> bool:
    """Tell a daily-cap 429 from a per-second one.

    Zoom sends ``X-RateLimit-Type: Daily-limit`` on some daily 429s, but the per-user meeting
    create/update cap has been seen without it; its message always says "daily".
    """
    return "daily" in (rate_limit_type or "").lower() or "daily" in (message or "").lower()


def seconds_until_daily_reset(now: float) -> float:
    """Seconds from ``now`` (epoch) to the next 00:00 UTC, when Zoom's daily limits reset."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    reset = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
    return reset.timestamp() - now
