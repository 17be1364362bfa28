"""The family's calendar file: every class of the course, with the family's join details.

Times carry the course's time zone (TZID, with its VTIMEZONE), so a calendar in another zone
shows them right across clock changes. Each class keeps one UID for good, so importing the file
again updates the events (a moved class moves, a cancelled one is marked STATUS:CANCELLED).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import icalendar

from ..courses.models import ClassSession, Course
from ..courses.timetable import local_time
from .models import Family


def _sequence(cls: ClassSession) -> int:
    # Calendars take the event with the higher SEQUENCE as the newer one.
    return (1 if cls.original_starts_at is not None else 0) + (0 if cls.takes_place else 2)


def calendar(
    course: Course,
    classes: Sequence[ClassSession],
    *,
    family: Family,
    child_name: str,
    join_url: str | None,
    passcode: str | None,
    family_page_url: str,
    uid_domain: str,
    now: dt.datetime,
) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//companion//family calendar//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"{course.title} ({child_name})")
    cal.add("x-wr-timezone", course.timezone)
    if join_url:
        details = f"Join with {child_name}'s own link: {join_url}"
        if passcode:
            details += f"\nPasscode: {passcode}"
        details += "\n\nThis link is for your family only; please do not share it."
    else:
        details = "The Zoom link and passcode are on your family page once you have accepted the "
        details += "e-safety agreement."
    details += f"\n\nFamily page: {family_page_url}"
    for cls in classes:
        event = icalendar.Event()
        event.add("uid", f"class-{cls.id}-family-{family.id}@{uid_domain}")
        event.add("dtstamp", now.astimezone(dt.UTC))
        event.add("dtstart", local_time(course, cls.starts_at))
        event.add("dtend", local_time(course, cls.ends_at))
        event.add("sequence", _sequence(cls))
        if cls.takes_place:
            event.add("summary", course.title)
            event.add("status", "CONFIRMED")
            event.add("description", details)
            event.add("location", join_url or "Zoom")
        else:
            event.add("summary", f"Cancelled: {course.title}")
            event.add("status", "CANCELLED")
            event.add("description", "This class is cancelled.")
        cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()
