"""A course's classes, computed from its series with ``zoneinfo``: pure functions, no I/O.

A course meets weekly on one or more weekdays at a fixed local time in its own time zone. Every
class is computed here in local time and converted to UTC, so a 17:00 class in London stays at
17:00 local across the clock change (and moves by an hour in UTC). The same series is sent to Zoom
as a type-8 ("recurring, fixed time") meeting; after Zoom answers, :func:`match_occurrences`
checks that Zoom's occurrences are exactly the classes computed here.

Everything a teacher can get wrong is caught here, with a message naming the field, before Zoom
is called.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from ..zoom.api import Meeting

# Zoom: "The maximum number of recurrences is 60" (end_times), but an occurrence "can have a
# maximum of 50 occurrences" in the same document. We take the lower so that Zoom never silently
# drops classes the families were told about.
MAX_CLASSES = 50
# Zoom accepts up to 1440 minutes; an online class for children longer than this is a typo.
MAX_DURATION_MINUTES = 300
ZOOM_MAX_DURATION_MINUTES = 1440
# How far ahead a course may start; Zoom lets meetings be scheduled a long way out, but a first
# class years away is almost always a mistyped year.
MAX_DAYS_AHEAD = 366
MAX_SERIES_DAYS = 2 * 366

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_ALIASES = {name.lower(): key for key, name in WEEKDAY_NAMES.items()} | {k: k for k in WEEKDAYS}


@dataclass(frozen=True)
class Series:
    """What the teacher asked for. ``weekdays`` are keys of :data:`WEEKDAYS` in week order."""

    first_date: dt.date
    weekdays: tuple[str, ...]
    start_time: dt.time
    duration_minutes: int
    timezone: str
    class_count: int | None = None
    end_date: dt.date | None = None


@dataclass(frozen=True)
class PlannedClass:
    starts_at: dt.datetime  # aware, UTC
    local_start: dt.datetime  # aware, in the course's time zone
    duration_minutes: int

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.duration_minutes)


@dataclass(frozen=True)
class Schedule:
    series: Series
    classes: tuple[PlannedClass, ...]
    # Things worth telling the teacher that are not errors (an ambiguous local time).
    warnings: tuple[str, ...] = field(default=())

    @property
    def count(self) -> int:
        return len(self.classes)

    @property
    def last_end(self) -> dt.datetime:
        return self.classes[-1].ends_at


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(f"{name!r} is not a known time zone.", field="timezone") from None


def parse_weekdays(value: str | Iterable[Any] | None) -> tuple[str, ...]:
    """Accept ``"mon,thu"``, ``["Monday", "thu"]``; return the days in week order.

    Numbers are refused on purpose: Zoom counts Sunday as 1 and ISO counts Monday as 1, and a
    course on the wrong day is worse than a clear message.
    """
    if value is None:
        items: list[Any] = []
    elif isinstance(value, str):
        items = [p for p in value.replace(";", ",").split(",")]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        items = [value]
    days: list[str] = []
    for raw in items:
        if not isinstance(raw, str):
            raise ValidationError(
                "Give weekdays by name (mon, tue, wed, thu, fri, sat, sun), not by number.",
                field="weekdays",
            )
        text = raw.strip().lower()
        if not text:
            continue
        key = _ALIASES.get(text)
        if key is None:
            raise ValidationError(
                f"{raw.strip()!r} is not a weekday; use mon, tue, wed, thu, fri, sat or sun.",
                field="weekdays",
            )
        if key in days:
            raise ValidationError(f"{WEEKDAY_NAMES[key]} is listed twice.", field="weekdays")
        days.append(key)
    if not days:
        raise ValidationError("Choose at least one weekday.", field="weekdays")
    return tuple(sorted(days, key=WEEKDAYS.index))


def zoom_weekly_days(weekdays: Sequence[str]) -> str:
    """Zoom's ``weekly_days``: ``"1"`` is Sunday ... ``"7"`` Saturday, comma separated."""
    numbers = sorted((WEEKDAYS.index(d) + 1) % 7 + 1 for d in parse_weekdays(list(weekdays)))
    return ",".join(str(n) for n in numbers)


def describe_days(weekdays: Sequence[str]) -> str:
    names = [WEEKDAY_NAMES[d] + "s" for d in weekdays]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _local_instant(day: dt.date, at: dt.time, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, str]:
    """The aware local start, and "" | "missing" | "ambiguous" for that wall-clock time."""
    naive = dt.datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    # A wall time that does not exist does not survive a round trip through UTC.
    back = first.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
    if back != naive:
        return first, "missing"
    if first.utcoffset() != second.utcoffset():
        return first, "ambiguous"
    return first, ""


def compute(series: Series, *, now: dt.datetime | None = None) -> Schedule:
    """Every class of the series, or a :class:`ValidationError` naming the field at fault.

    ``now`` (aware) makes a first class in the past an error; leave it out to compute a schedule
    that is already under way (to show or compare an existing course).
    """
    tz = zone(series.timezone)
    if not isinstance(series.duration_minutes, int) or isinstance(series.duration_minutes, bool):
        raise ValidationError("Give the duration in whole minutes.", field="duration_minutes")
    if series.duration_minutes < 1:
        raise ValidationError("A class lasts at least one minute.", field="duration_minutes")
    if series.duration_minutes > MAX_DURATION_MINUTES:
        raise ValidationError(
            f"A class can last at most {MAX_DURATION_MINUTES} minutes "
            f"({MAX_DURATION_MINUTES // 60} hours); {series.duration_minutes} is too long.",
            field="duration_minutes",
        )
    weekdays = parse_weekdays(list(series.weekdays))
    series = dataclasses.replace(series, weekdays=weekdays)
    if WEEKDAYS[series.first_date.weekday()] not in weekdays:
        raise ValidationError(
            f"The first class is on {series.first_date:%A %-d %B %Y}, but the course meets on "
            f"{describe_days(weekdays)}. Pick a first date on one of those days.",
            field="first_date",
        )
    if (series.class_count is None) == (series.end_date is None):
        raise ValidationError(
            "Give either the number of classes or the date of the last class.",
            field="class_count",
        )
    if series.class_count is not None:
        if series.class_count < 1:
            raise ValidationError("A course has at least one class.", field="class_count")
        if series.class_count > MAX_CLASSES:
            raise ValidationError(
                f"Zoom allows at most {MAX_CLASSES} classes in one course; "
                f"{series.class_count} asked for. Split it into two courses.",
                field="class_count",
            )
    if series.end_date is not None:
        if series.end_date < series.first_date:
            raise ValidationError(
                f"The last date ({series.end_date:%-d %B %Y}) is before the first class "
                f"({series.first_date:%-d %B %Y}).",
                field="end_date",
            )
        if (series.end_date - series.first_date).days > MAX_SERIES_DAYS:
            raise ValidationError("A course can run for at most two years.", field="end_date")
    if now is not None:
        days_ahead = (series.first_date - now.astimezone(tz).date()).days
        if days_ahead > MAX_DAYS_AHEAD:
            raise ValidationError(
                "The first class is more than a year away; check the year.", field="first_date"
            )
        if days_ahead < -1:
            raise ValidationError("The first class must be in the future.", field="first_date")

    wanted = {WEEKDAYS.index(d) for d in weekdays}
    classes: list[PlannedClass] = []
    warnings: list[str] = []
    day = series.first_date
    while True:
        if series.class_count is not None and len(classes) >= series.class_count:
            break
        if series.end_date is not None and day > series.end_date:
            break
        if day.weekday() in wanted:
            if len(classes) >= MAX_CLASSES:
                raise ValidationError(
                    f"Up to that date the course would have more than {MAX_CLASSES} classes, "
                    "Zoom's limit. Choose an earlier last date or split the course.",
                    field="end_date",
                )
            local, kind = _local_instant(day, series.start_time, tz)
            if kind == "missing":
                raise ValidationError(
                    f"{series.start_time:%H:%M} does not exist on {day:%A %-d %B %Y} in "
                    f"{series.timezone}: the clocks go forward that night. Choose another time.",
                    field="start_time",
                )
            if kind == "ambiguous":
                warnings.append(
                    f"{series.start_time:%H:%M} happens twice on {day:%A %-d %B %Y} in "
                    f"{series.timezone} (the clocks go back); the class is at the first one."
                )
            classes.append(PlannedClass(local.astimezone(dt.UTC), local, series.duration_minutes))
        day += dt.timedelta(days=1)
    if not classes:
        raise ValidationError("No class falls between those dates.", field="end_date")
    if now is not None and classes[0].starts_at <= now:
        raise ValidationError(
            "The first class must be in the future.",
            field="first_date"
            if classes[0].local_start.date() < now.astimezone(tz).date()
            else "start_time",
        )
    return Schedule(series, tuple(classes), tuple(warnings))


def recurrence_body(schedule: Schedule) -> dict[str, Any]:
    """Zoom's ``recurrence`` for the series: weekly, every week, this many occurrences.

    ``end_times`` (the count we computed) rather than ``end_date_time``: a count leaves Zoom no
    room to read the last date in another time zone or as exclusive.
    """
    return {
        "type": 2,
        "repeat_interval": 1,
        "weekly_days": zoom_weekly_days(schedule.series.weekdays),
        "end_times": schedule.count,
    }


def meeting_times(schedule: Schedule) -> dict[str, Any]:
    """The time fields of a type-8 meeting: local start, its time zone and the duration."""
    first = schedule.classes[0].local_start
    return {
        "type": 8,
        "start_time": first.strftime("%Y-%m-%dT%H:%M:%S"),
        "timezone": schedule.series.timezone,
        "duration": schedule.series.duration_minutes,
        "recurrence": recurrence_body(schedule),
    }


def parse_zoom_time(value: Any) -> dt.datetime | None:
    """Zoom's ``2026-01-07T16:00:00Z`` as an aware UTC datetime; None when absent or garbled."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


@dataclass(frozen=True)
class Occurrence:
    occurrence_id: str
    starts_at: dt.datetime
    duration_minutes: int | None
    deleted: bool


def occurrences(meeting: Meeting) -> list[Occurrence]:
    """Zoom's occurrences of a meeting, oldest first, ignoring entries it could not describe."""
    found: list[Occurrence] = []
    for raw in meeting.get("occurrences") or []:
        if not isinstance(raw, Mapping):
            continue
        start = parse_zoom_time(raw.get("start_time"))
        oid = raw.get("occurrence_id")
        if start is None or oid in (None, ""):
            continue
        duration = raw.get("duration")
        found.append(
            Occurrence(
                occurrence_id=str(oid),
                starts_at=start,
                duration_minutes=duration if isinstance(duration, int) else None,
                deleted=str(raw.get("status", "available")).lower() == "deleted",
            )
        )
    found.sort(key=lambda o: o.starts_at)
    return found


@dataclass(frozen=True)
class ScheduleCheck:
    """How Zoom's occurrences compare with the classes we expect."""

    # Per expected class: Zoom's occurrence at the same instant, or None.
    matched: tuple[Occurrence | None, ...]
    # Zoom occurrences (after ``since``) that no expected class accounts for.
    extra: tuple[Occurrence, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def match_occurrences(
    planned: Sequence[PlannedClass],
    meeting: Meeting,
    *,
    since: dt.datetime | None = None,
) -> ScheduleCheck:
    """Pair each planned class with Zoom's occurrence at the same instant.

    ``matched`` lines up with ``planned``. With ``since``, classes and occurrences that start
    before it are left out of the comparison: Zoom stops listing an occurrence once it has
    started, and a class under way cannot be changed anyway.
    """
    live = [o for o in occurrences(meeting) if not o.deleted]
    if since is not None:
        live = [o for o in live if o.starts_at > since]
    by_start = {o.starts_at: o for o in live}
    matched: list[Occurrence | None] = []
    problems: list[str] = []
    used: set[str] = set()
    for cls in planned:
        if since is not None and cls.starts_at <= since:
            matched.append(None)
            continue
        occ = by_start.get(cls.starts_at)
        matched.append(occ)
        if occ is None:
            problems.append(f"Zoom has no class at {_when(cls.local_start)}")
            continue
        used.add(occ.occurrence_id)
        if occ.duration_minutes is not None and occ.duration_minutes != cls.duration_minutes:
            problems.append(
                f"the class at {_when(cls.local_start)} lasts {occ.duration_minutes} minutes "
                f"in Zoom, not {cls.duration_minutes}"
            )
    tz = planned[0].local_start.tzinfo if planned else dt.UTC
    extra = tuple(o for o in live if o.occurrence_id not in used)
    for occ in extra:
        problems.append(f"Zoom has an extra class at {_when(occ.starts_at.astimezone(tz))}")
    return ScheduleCheck(tuple(matched), extra, tuple(problems))


def _when(local: dt.datetime) -> str:
    return f"{local:%a %-d %b %Y %H:%M} {local.tzname()}"


def local_day_and_time(
    day: dt.date, at: dt.time, timezone: str, *, field_prefix: str = ""
) -> dt.datetime:
    """One local wall-clock time as an aware UTC instant; refuses times a clock change skips."""
    tz = zone(timezone)
    local, kind = _local_instant(day, at, tz)
    if kind == "missing":
        raise ValidationError(
            f"{at:%H:%M} does not exist on {day:%A %-d %B %Y} in {timezone}: the clocks go "
            "forward that night. Choose another time.",
            field=f"{field_prefix}start_time",
        )
    return local.astimezone(dt.UTC)
