"""Occurrences of a recurring fixed-time meeting (type 8), computed the way Zoom shows them.

A class keeps its local wall-clock time across daylight-saving changes: a 17:00 Europe/London
class is 16:00 UTC in October and 17:00 UTC in November. Every date is combined with the
local start time in the meeting's zone and only then converted to UTC. A local time that does
not exist (the hour skipped in spring) resolves with the offset in force before the change,
which is what ``zoneinfo`` does for ``fold=0``.

Occurrence ids are the occurrence's start in epoch milliseconds, as Zoom's are, fixed when the
series is computed: moving one occurrence later does not change its id.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
MAX_OCCURRENCES = 60
# Zoom's limits on repeat_interval: "daily ... 99 days, weekly ... 50 weeks, monthly ... 10 months".
MAX_INTERVAL = {1: 99, 2: 50, 3: 10}
# Guards a search that could otherwise run far into the future (e.g. an end date in 2999).
_MAX_SEARCH_YEARS = 12


class ScheduleError(ValueError):
    """The start time, time zone or recurrence cannot be scheduled; ``field`` names the input."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Occurrence:
    occurrence_id: str
    start: dt.datetime  # aware, UTC
    duration: int


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("timezone", f"Invalid timezone: {name}") from None


def parse_start(value: str, tz: ZoneInfo) -> dt.datetime:
    """Zoom's ``start_time``: ``yyyy-MM-ddTHH:mm:ssZ`` (UTC) or local ``yyyy-MM-ddTHH:mm:ss``.

    Returns the start as an aware datetime in ``tz`` (the meeting's zone).
    """
    text = value.strip()
    try:
        if text.endswith(("Z", "z")):
            parsed = dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
        else:
            parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError("start_time", f"Invalid start_time: {value}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=tz, microsecond=0)
    return parsed.astimezone(tz).replace(microsecond=0)


def parse_utc(value: str, field: str) -> dt.datetime:
    text = value.strip()
    try:
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(field, f"Invalid {field}: {value}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def zoom_time(value: dt.datetime) -> str:
    """Zoom's UTC format: ``2026-01-07T16:00:00Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def occurrence_id(start: dt.datetime) -> str:
    return str(int(start.astimezone(UTC).timestamp()) * 1000)


def _at_local(day: dt.date, wall: dt.time, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def _zoom_weekday(day: dt.date) -> int:
    """Zoom numbers weekdays 1 (Sunday) to 7 (Saturday)."""
    return (day.weekday() + 1) % 7 + 1


def _dates(first: dt.date, recurrence: dict[str, Any]) -> list[dt.date]:
    """Candidate dates in order from the first date on (bounded, so a search always ends)."""
    kind = recurrence["type"]
    interval = recurrence.get("repeat_interval") or 1
    horizon = first + dt.timedelta(days=366 * _MAX_SEARCH_YEARS)
    out: list[dt.date] = []
    if kind == 1:
        day = first
        while day <= horizon and len(out) < 400:
            out.append(day)
            day += dt.timedelta(days=interval)
    elif kind == 2:
        days = sorted({int(d) for d in str(recurrence["weekly_days"]).split(",")})
        # Zoom's weeks start on Sunday; "every N weeks" counts from the first date's week.
        week_start = first - dt.timedelta(days=_zoom_weekday(first) - 1)
        while week_start <= horizon and len(out) < 400:
            for zoom_day in days:
                day = week_start + dt.timedelta(days=zoom_day - 1)
                if day >= first:
                    out.append(day)
            week_start += dt.timedelta(weeks=interval)
    elif kind == 3:
        year, month = first.year, first.month
        while dt.date(year, month, 1) <= horizon and len(out) < 400:
            monthly = _monthly_day(year, month, recurrence)
            if monthly is not None and monthly >= first:
                out.append(monthly)
            month += interval
            year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return out


def _monthly_day(year: int, month: int, recurrence: dict[str, Any]) -> dt.date | None:
    last = calendar.monthrange(year, month)[1]
    if recurrence.get("monthly_week") is not None:
        week = int(recurrence["monthly_week"])
        weekday = int(recurrence["monthly_week_day"])
        matches = [
            dt.date(year, month, d)
            for d in range(1, last + 1)
            if _zoom_weekday(dt.date(year, month, d)) == weekday
        ]
        return matches[-1] if week == -1 else matches[week - 1]
    day = int(recurrence.get("monthly_day") or 1)
    # A month without that day (31 in April) has no occurrence, as with RFC 5545 BYMONTHDAY.
    return dt.date(year, month, day) if day <= last else None


def occurrences(
    start: dt.datetime, duration: int, recurrence: dict[str, Any], tz: ZoneInfo
) -> list[Occurrence]:
    """The occurrences of a type-8 meeting starting at ``start`` (aware, in ``tz``)."""
    local = start.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    dates = _dates(local.date(), recurrence)
    end_date: dt.date | None = None
    if recurrence.get("end_date_time"):
        end_date = (
            parse_utc(recurrence["end_date_time"], "recurrence.end_date_time").astimezone(tz).date()
        )
    limit = recurrence.get("end_times") or (MAX_OCCURRENCES if end_date else 1)
    limit = min(int(limit), MAX_OCCURRENCES)
    result: list[Occurrence] = []
    for day in dates:
        if end_date is not None and day > end_date:
            break
        begins = _at_local(day, wall, tz)
        result.append(Occurrence(occurrence_id(begins), begins, duration))
        if len(result) >= limit:
            break
    if not result:
        raise ScheduleError("recurrence", "The recurrence settings do not produce any occurrence.")
    return result
