"""The retry policy as pure functions: which failures are retried and how long to wait."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from companion.zoom import retry

from .zoom_helpers import MaxJitter

NOW = dt.datetime(2026, 3, 10, 12, 0, 0, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("idempotent", "status", "kind", "attempt", "expected"),
    [
        (True, None, retry.CONNECTION, 1, True),
        (True, 500, None, 1, True),
        (True, 502, None, 2, True),
        (True, 503, None, 3, True),
        (True, 429, None, 1, True),
        (True, 429, retry.DAILY_LIMIT, 1, False),
        (True, 400, None, 1, False),
        (True, 401, None, 1, False),
        (True, 404, None, 1, False),
        (True, 409, None, 1, False),
        # the last allowed attempt has been made
        (True, 503, None, 4, False),
        (True, None, retry.CONNECTION, 4, False),
        # a POST is never sent twice, whatever happened
        (False, None, retry.CONNECTION, 1, False),
        (False, 503, None, 1, False),
        (False, 429, None, 1, False),
    ],
)
def test_should_retry(idempotent, status, kind, attempt, expected):
    assert retry.should_retry(idempotent, status, kind, attempt, 4) is expected


def test_backoff_schedule_is_exponential_and_capped_with_jitter_stubbed():
    schedule = [retry.backoff_seconds(n, 0.5, 8.0, MaxJitter()) for n in range(1, 8)]
    assert schedule == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_jitter_is_full_between_zero_and_the_ceiling():
    rng = random.Random(7)
    for attempt in range(1, 10):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        waits = [retry.backoff_seconds(attempt, 0.5, 8.0, rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        # full jitter spreads over the whole range, not just near the ceiling
        assert min(waits) < ceiling * 0.2 and max(waits) > ceiling * 0.8


def test_backoff_survives_absurd_attempt_numbers():
    assert retry.backoff_seconds(10_000, 0.5, 8.0, MaxJitter()) == 8.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        # HTTP-date, 30 seconds ahead
        ("Tue, 10 Mar 2026 12:00:30 GMT", 30.0),
        # Zoom's documented daily-limit form
        ("2026-03-11T00:00:00Z", 12 * 3600.0),
        # a date already gone means "now"
        ("Tue, 10 Mar 2026 11:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("Tue, 99 Foo 2026", None),
    ],
)
def test_parse_retry_after(header, expected):
    assert retry.parse_retry_after(header, NOW) == expected


@pytest.mark.parametrize(
    ("limit_type", "message", "daily"),
    [
        ("Daily-limit", "", True),
        (
            None,
            "You have exceeded the daily rate limit (100) of Meeting Create/Update API requests "
            "permitted for this particular user. You may resume these requests at GMT 00:00:00.",
            True,
        ),
        ("QPS", "You have reached the maximum per-second rate limit for this API.", False),
        (None, None, False),
    ],
)
def test_is_daily_limit(limit_type, message, daily):
    assert retry.is_daily_limit(limit_type, message) is daily


def test_seconds_until_daily_reset_is_next_utc_midnight():
    assert retry.seconds_until_daily_reset(NOW) == 12 * 3600.0
    midnight = dt.datetime(2026, 3, 11, tzinfo=dt.UTC).timestamp()
    assert retry.seconds_until_daily_reset(midnight) == 24 * 3600.0
