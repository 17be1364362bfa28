"""A course's timetable: its series and its classes in order, their local times, and making the
future classes those of a new schedule (the schedule itself is computed in :mod:`.schedule`)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from . import schedule as sched
from .models import ClassSession, ClassStatus, Course


def class_sessions(course: Course) -> list[ClassSession]:
    """Every class, cancelled ones included, oldest first."""
    return sorted(course.classes, key=lambda c: (c.starts_at, c.id or 0))


def upcoming_classes(course: Course, now: dt.datetime) -> list[ClassSession]:
    """Classes that take place and have not ended yet."""
    return [c for c in class_sessions(course) if c.takes_place and c.ends_at > now]


def local_time(course: Course, at: dt.datetime) -> dt.datetime:
    return at.astimezone(sched.zone(course.timezone))


def series_of(course: Course) -> sched.Series:
    return sched.Series(
        first_date=course.first_date,
        weekdays=course.weekday_list,
        start_time=course.start_time,
        duration_minutes=course.duration_minutes,
        timezone=course.timezone,
        class_count=course.class_count,
        end_date=course.end_date,
    )


def edit_defaults(course: Course, now: dt.datetime) -> sched.Series:
    """The series as an edit starts from: from the next class on, once the course has started
    (a change of the whole series can only reach classes still to come)."""
    series = series_of(course)
    upcoming = [c for c in class_sessions(course) if c.takes_place and c.starts_at > now]
    started = any(c.starts_at <= now for c in course.classes)
    if not started or not upcoming:
        return series
    return sched.Series(
        first_date=local_time(course, upcoming[0].starts_at).date(),
        weekdays=series.weekdays,
        start_time=series.start_time,
        duration_minutes=series.duration_minutes,
        timezone=series.timezone,
        class_count=None if series.end_date else len(upcoming),
        end_date=series.end_date,
    )


def apply_series(course: Course, series: sched.Series) -> None:
    course.first_date = series.first_date
    course.weekdays = ",".join(sched.parse_weekdays(list(series.weekdays)))
    course.start_time = series.start_time
    course.duration_minutes = series.duration_minutes
    course.timezone = series.timezone
    course.class_count = series.class_count
    course.end_date = series.end_date


def refresh_ends_at(course: Course) -> None:
    taking_place = [c.ends_at for c in course.classes if c.takes_place]
    every = [c.ends_at for c in course.classes]
    course.ends_at = max(taking_place or every) if every else None


def reconcile_classes(
    session: Session,
    course: Course,
    schedule: sched.Schedule,
    now: dt.datetime,
    *,
    keep_history: bool,
) -> None:
    """Make the course's future classes those of ``schedule``.

    A class on the same local day as before stays the same row (its time may change), so
    whatever other parts of companion attached to it stays attached. A future class the new
    series drops is cancelled (or deleted when the course never reached Zoom); past classes
    are history and stay as they were.
    """
    tz = sched.zone(course.timezone)
    future = [c for c in class_sessions(course) if c.takes_place and c.starts_at > now]
    by_day: dict[dt.date, ClassSession] = {}
    for cls in future:
        by_day.setdefault(cls.starts_at.astimezone(tz).date(), cls)
    for planned in schedule.classes:
        row = by_day.pop(planned.local_start.date(), None)
        if row is None:
            row = ClassSession(course=course, created_at=now)
            session.add(row)
        elif row.starts_at != planned.starts_at:
            row.occurrence_id = None
        row.starts_at = planned.starts_at
        row.duration_minutes = planned.duration_minutes
        row.status = ClassStatus.SCHEDULED
        row.original_starts_at = None
    for row in by_day.values():
        if keep_history:
            row.status = ClassStatus.CANCELLED
            row.cancelled_at = now
        else:
            course.classes.remove(row)
            session.delete(row)
    refresh_ends_at(course)
    session.flush()
