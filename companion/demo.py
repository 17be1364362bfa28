"""Demo data for a new database: an organisation, its staff, a course with two families."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .accounts import services as accounts
from .accounts.models import User
from .db import utcnow
from .orgs import services as orgs
from .orgs.models import Organisation

DEMO_PEOPLE = (
    ("admin", "admin@example.org", "Avery Admin"),
    ("teacher", "teacher@example.org", "Tara Teacher"),
    ("safeguarding_lead", "lead@example.org", "Sam Safeguarding"),
)


def demo_password() -> str:
    # Four random words' worth of entropy, readable enough to type from the terminal.
    return "-".join(secrets.token_hex(3) for _ in range(4))


DEMO_FAMILIES = (
    ("Amira", "Haddad", [("Leila Haddad", "leila.haddad@example.org")]),
    (
        "Tom",
        "Price",
        [("Sarah Price", "sarah.price@example.org"), ("Owen Price", "owen.price@example.org")],
    ),
)


def create_course(session: Session, org: Organisation, teacher: User, now: dt.datetime) -> Any:
    """A weekly course starting next Monday at 17:00, with two families enrolled."""
    from .courses import provisioning, schedule
    from .families import enrolment
    from .families.people import ContactInput

    tz = ZoneInfo(org.timezone)
    today = now.astimezone(tz).date()
    first = today + dt.timedelta(days=7 - today.weekday())  # next Monday, never today
    series = schedule.Series(
        first_date=first,
        weekdays=("mon", "thu"),
        start_time=dt.time(17, 0),
        duration_minutes=45,
        timezone=org.timezone,
        class_count=8,
    )
    # The demo runs before the Zoom sandbox is up: the course is saved "pending in Zoom" and the
    # worker creates it (and registers its families) within a minute or two, through the same
    # path that recovers from a Zoom outage.
    course = provisioning.create_course(
        session,
        actor=teacher,
        title="Violin for beginners (ages 8-10)",
        series=series,
        now=now,
    ).course
    for first_name, last_name, parents in DEMO_FAMILIES:
        enrolment.enrol(
            session,
            actor=teacher,
            course_id=course.id,
            child_first_name=first_name,
            child_last_name=last_name,
            contacts=[ContactInput(name=n, email=e) for n, e in parents],
            now=now,
        )
    return course


def create(
    session: Session, config: dict[str, Any], *, force: bool = False
) -> list[dict[str, str]]:
    """Create the demo organisation, staff and a course; returns the staff with passwords."""
    if not force and (session.scalar(select(func.count(User.id))) or 0) > 0:
        return []
    org = orgs.create(
        session,
        name="Riverside Music Trust (demo)",
        timezone=config.get("DEFAULT_TIMEZONE") or "Europe/London",
        safeguarding_contact_name="Sam Safeguarding",
        safeguarding_contact_email="lead@example.org",
        safeguarding_contact_phone="020 7946 0000",
    )
    created = []
    for role, email, name in DEMO_PEOPLE:
        if accounts.find_user_by_email(session, email) is not None:
            continue
        password = demo_password()
        accounts.create_user(
            session, organisation_id=org.id, email=email, name=name, role=role, password=password
        )
        created.append({"role": role, "email": email, "password": password})
    teacher = accounts.find_user_by_email(session, "teacher@example.org")
    if teacher is not None and teacher.organisation_id == org.id:
        create_course(session, org, teacher, utcnow())
    return created
