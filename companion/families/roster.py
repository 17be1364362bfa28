"""Who is expected in a class (the children the teacher admits), and where the teacher's admit
list of a class is."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..courses.models import ClassSession, Course
from .links import base_url
from .models import Family
from .people import display_name


def expected_families(session: Session, cls: ClassSession) -> list[Family]:
    """Families expected in this class: enrolled before it ended and not withdrawn before it
    started (so the list of a past class stays what it was)."""
    families = session.scalars(
        select(Family).where(
            Family.course_id == cls.course_id,
            Family.created_at < cls.ends_at,
            or_(Family.withdrawn_at.is_(None), Family.withdrawn_at > cls.starts_at),
        )
    )
    return sorted(families, key=lambda f: (display_name(f).casefold(), f.id))


def expected_among(families: Iterable[Family], cls: ClassSession) -> list[Family]:
    """:func:`expected_families` picked from a course's families already loaded (the same rule,
    the same order), so a page about many classes reads the families once."""
    starts, ends = cls.starts_at, cls.ends_at
    found = [
        f
        for f in families
        if f.course_id == cls.course_id and is_expected(f.created_at, f.withdrawn_at, starts, ends)
    ]
    return sorted(found, key=lambda f: (display_name(f).casefold(), f.id))


def is_expected(
    created: dt.datetime, withdrawn: dt.datetime | None, starts: dt.datetime, ends: dt.datetime
) -> bool:
    """The rule of :func:`expected_families` for one family and one class."""
    return created < ends and (withdrawn is None or withdrawn > starts)


def admit_url(course: Course, cls: ClassSession) -> str:
    return f"{base_url()}/courses/{course.id}/classes/{cls.id}/admit"
