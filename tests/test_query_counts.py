"""Pages whose cost does not grow with the course (issue 10, item 5).

The families page, the course page, the admit list, the family page (/f/) and its calendar
file each run the same number of SQL statements for a course of 10 families and 10 classes as
for one of 200 families and 30 classes. The statements are counted on the engine
(``before_cursor_execute``) while the real client asks for the page as the person who uses it.

The test session keeps every object it has loaded between requests (it is one session rolled
back at the end), which would hide lazy loads a real request makes; so the identity map is
emptied before each counted request, as a fresh request's session is in production.

:func:`build_course` is also what ``bench/pages_bench.py`` measures.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from companion import sealing
from companion.accounts.models import User
from companion.accounts.services import hash_token
from companion.courses.models import ClassSession, Course
from companion.db import Clock
from companion.evidence.models import AdultConfirmation, EvidenceSettings
from companion.families.models import (
    AgreementAcceptance,
    AgreementVersion,
    AudioOnlyEvent,
    Family,
    FamilyContact,
    FamilyLink,
    FamilySession,
)
from companion.orgs.models import Organisation

# A Monday morning in London (the families tests' clock).
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
FAMILY_COOKIE = "companion_family"
_seq = itertools.count(1)

# No page may need more than this, at any size.
CEILING = 20


@dataclass(frozen=True)
class Built:
    course_id: int
    class_ids: list[int]
    # The class whose admit list is measured: the next one, with confirmations and requests.
    admit_class_id: int
    family_ids: list[int]
    # The raw family-session id of the first family's first parent (the /f/ cookie).
    family_cookie: str

    def staff_pages(self) -> dict[str, str]:
        return {
            "families page": f"/courses/{self.course_id}/families",
            "course page": f"/courses/{self.course_id}",
            "admit list": f"/courses/{self.course_id}/classes/{self.admit_class_id}/admit",
            "family detail": f"/courses/{self.course_id}/families/{self.family_ids[0]}",
            # The lists of every course (the larger measurement has one course more).
            "courses list": "/courses/",
            "families list": "/families/",
        }

    def family_pages(self) -> dict[str, str]:
        return {"family page": "/f/", "calendar file": "/f/calendar.ics"}


def build_course(
    session: Session,
    org: Organisation,
    teacher: User,
    *,
    families: int,
    classes: int,
    now: dt.datetime,
    sealer: sealing.Sealer,
) -> Built:
    """A course in Zoom and safe, with ``classes`` weekly classes (a third of them past, one
    cancelled, one moved) and ``families`` families of every kind: withdrawn ones, one or two
    parents, links sent, revoked and owed, the agreement accepted or not, audio-only requests
    for one class and for all remaining ones, and adults confirmed for the next class.

    Written straight as rows (no Zoom, no mail), so that 200 families take a moment."""
    n = next(_seq)
    first_start = (now - dt.timedelta(weeks=classes // 3)).replace(
        hour=17, minute=0, second=0, microsecond=0
    )
    starts = [first_start + dt.timedelta(weeks=i) for i in range(classes)]
    course = Course(
        organisation_id=org.id,
        teacher_id=teacher.id,
        title=f"Counted course {n}",
        timezone="Europe/London",
        first_date=starts[0].date(),
        weekdays="mon",
        start_time=dt.time(17, 0),
        duration_minutes=45,
        class_count=classes,
        ends_at=starts[-1] + dt.timedelta(minutes=45),
        zoom_user_id="me",
        zoom_meeting_id=90_000_000_000 + n * 1000 + secrets.randbelow(1000),
        zoom_state="created",
        companion_ref="c" + secrets.token_hex(12),
        join_url="https://zoom.example/j/1",
        passcode_encrypted=sealer.seal(sealing.Purpose.COURSE_PASSCODE, "483920"),
        passcode_set_at=now - dt.timedelta(days=60),
        safety_state="safe",
        last_verified_at=now - dt.timedelta(hours=1),
        created_at=now - dt.timedelta(days=60),
        updated_at=now - dt.timedelta(days=60),
    )
    session.add(course)
    session.flush()
    rows = []
    for i, start in enumerate(starts):
        status = "cancelled" if i == classes // 2 else "moved" if i == classes // 2 + 1 else None
        rows.append(
            ClassSession(
                course_id=course.id,
                occurrence_id=str(int(start.timestamp() * 1000)),
                starts_at=start + (dt.timedelta(days=1) if status == "moved" else dt.timedelta()),
                duration_minutes=45,
                status=status or "scheduled",
                original_starts_at=start if status == "moved" else None,
                cancelled_at=now if status == "cancelled" else None,
            )
        )
    session.add_all(rows)
    session.flush()
    upcoming = [c for c in rows if c.starts_at > now and c.status != "cancelled"]
    admit_class = upcoming[0]

    version = session.query(AgreementVersion).filter_by(organisation_id=org.id).first()
    if version is None:
        version = AgreementVersion(
            organisation_id=org.id, version=1, body="Be kind online.", created_at=now
        )
        session.add(version)
    if session.get(EvidenceSettings, org.id) is None:
        session.add(EvidenceSettings(organisation_id=org.id, confirm_from_minutes=1440))
    session.flush()

    family_rows = []
    for i in range(families):
        withdrawn = i % 10 == 9
        registered = i % 7 != 3
        family = Family(
            organisation_id=org.id,
            course_id=course.id,
            child_first_name=f"Child{i:03d}",
            child_last_name="K" if i % 2 else f"Surname{i}",
            status="withdrawn" if withdrawn else "enrolled",
            zoom_ref="f" + secrets.token_hex(12),
            zoom_state=("cancelled" if withdrawn else "registered" if registered else "pending"),
            zoom_registrant_id=f"reg-{n}-{i}-{secrets.token_hex(4)}" if registered else None,
            join_url_encrypted=sealer.seal(
                sealing.Purpose.JOIN_LINK, f"https://zoom.example/w/{n}/{i}"
            )
            if registered
            else "",
            created_at=now - dt.timedelta(days=50),
            created_by_id=teacher.id,
            withdrawn_at=now - dt.timedelta(days=3) if withdrawn else None,
            withdrawn_by_id=teacher.id if withdrawn else None,
        )
        family_rows.append(family)
    session.add_all(family_rows)
    session.flush()

    contacts = []
    for i, family in enumerate(family_rows):
        for position in (1, 2) if i % 2 == 0 else (1,):
            contacts.append(
                FamilyContact(
                    family_id=family.id,
                    position=position,
                    name=f"Parent {i}.{position}",
                    email=f"parent{n}.{i}.{position}@example.net",
                    link_owed_since=now - dt.timedelta(days=1)
                    if family.zoom_state == "pending"
                    else None,
                    created_at=family.created_at,
                )
            )
    session.add_all(contacts)
    session.flush()

    links = []
    for j, contact in enumerate(contacts):
        if contact.link_owed_since is not None:
            continue
        if j % 3 == 0:  # an older link, replaced by the one after it
            links.append(
                FamilyLink(
                    family_id=contact.family_id,
                    contact_id=contact.id,
                    token_hash=hash_token(secrets.token_urlsafe(32)),
                    created_at=now - dt.timedelta(days=40),
                    revoked_at=now - dt.timedelta(days=30),
                    revoked_reason="resent",
                )
            )
        links.append(
            FamilyLink(
                family_id=contact.family_id,
                contact_id=contact.id,
                token_hash=hash_token(secrets.token_urlsafe(32)),
                created_at=now - dt.timedelta(days=30),
                revoked_at=now - dt.timedelta(days=2) if j % 11 == 5 else None,
                revoked_reason="revoked" if j % 11 == 5 else "",
                last_used_at=now - dt.timedelta(days=1) if j % 2 else None,
            )
        )
    session.add_all(links)
    session.flush()

    first_contact = {}
    for contact in contacts:
        first_contact.setdefault(contact.family_id, contact)
    extras: list[Any] = []
    for i, family in enumerate(family_rows):
        contact = first_contact[family.id]
        if i % 3 != 2:
            extras.append(
                AgreementAcceptance(
                    agreement_id=version.id,
                    family_id=family.id,
                    contact_id=contact.id,
                    accepted_at=now - dt.timedelta(days=20),
                )
            )
        if i % 4 == 0:
            extras.append(
                AudioOnlyEvent(
                    family_id=family.id,
                    contact_id=contact.id,
                    class_id=admit_class.id,
                    action="request",
                    at=now - dt.timedelta(days=5, minutes=i),
                )
            )
        if i % 5 == 1:
            extras.append(
                AudioOnlyEvent(
                    family_id=family.id,
                    contact_id=contact.id,
                    class_id=None,
                    action="request",
                    at=now - dt.timedelta(days=10, minutes=i),
                )
            )
        if i % 8 == 1:
            extras.append(
                AudioOnlyEvent(
                    family_id=family.id,
                    contact_id=contact.id,
                    class_id=upcoming[-1].id,
                    action="withdraw",
                    at=now - dt.timedelta(days=4, minutes=i),
                )
            )
        if i % 3 == 0 and not family.withdrawn_at:
            extras.append(
                AdultConfirmation(
                    family_id=family.id,
                    class_session_id=admit_class.id,
                    contact_id=contact.id,
                    confirmed_at=now - dt.timedelta(minutes=30 + i),
                )
            )
    # The first family (whose pages are measured) asked about every third class: a page that
    # read each request's class on its own would grow with the classes.
    first = family_rows[0]
    for k, cls in enumerate(rows[::3]):
        extras.append(
            AudioOnlyEvent(
                family_id=first.id,
                contact_id=first_contact[first.id].id,
                class_id=cls.id,
                action="request" if k % 2 == 0 else "withdraw",
                at=cls.starts_at - dt.timedelta(days=2),
            )
        )
    session.add_all(extras)
    session.flush()

    raw_sid = secrets.token_urlsafe(32)
    parent = first_contact[family_rows[0].id]
    link = FamilyLink(
        family_id=parent.family_id,
        contact_id=parent.id,
        token_hash=hash_token(secrets.token_urlsafe(32)),
        created_at=now - dt.timedelta(days=1),
    )
    session.add(link)
    session.flush()
    session.add(
        FamilySession(
            link_id=link.id,
            family_id=parent.family_id,
            contact_id=parent.id,
            token_hash=hash_token(raw_sid),
            created_at=now,
            # Seen just now, so the request does not move the session's expiry on.
            last_seen_at=now,
            expires_at=now + dt.timedelta(days=30),
        )
    )
    session.flush()
    return Built(
        course_id=course.id,
        class_ids=[c.id for c in rows],
        admit_class_id=admit_class.id,
        family_ids=[f.id for f in family_rows],
        family_cookie=raw_sid,
    )


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent through ``engine`` inside the block."""
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


# --- the test ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _at_now(clock: Clock) -> Iterator[None]:
    clock.offset = NOW - dt.datetime.now(dt.UTC)
    yield


def _count(engine: Engine, db_session: Session, client: Any, path: str) -> tuple[list[str], bytes]:
    db_session.commit()
    # A fresh identity map, as a production request's session has.
    db_session.expunge_all()
    with counted(engine) as statements:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return statements, response.get_data()


def _measure(
    app: Flask, engine: Engine, db_session: Session, org: Any, teacher: Any, size: tuple[int, int]
) -> dict[str, list[str]]:
    from .staff_helpers import sign_in

    families, classes = size
    built = build_course(
        db_session,
        org,
        teacher,
        families=families,
        classes=classes,
        now=NOW,
        sealer=sealing.sealer_for(app),
    )
    found: dict[str, list[str]] = {}
    staff = app.test_client()
    sign_in(staff, teacher.email)
    for name, path in built.staff_pages().items():
        found[name] = _count(engine, db_session, staff, path)[0]
    parent = app.test_client()
    parent.set_cookie(FAMILY_COOKIE, built.family_cookie, path="/f/")
    for name, path in built.family_pages().items():
        statements, body = _count(engine, db_session, parent, path)
        if name == "family page":
            assert b"Child000" in body  # the parent's own family page
        found[name] = statements
    return found


def test_every_page_runs_the_same_statements_for_10_and_200_families(
    app: Flask, engine: Engine, db_session: Session, org: Any, teacher: Any
) -> None:
    small = _measure(app, engine, db_session, org, teacher, (10, 10))
    large = _measure(app, engine, db_session, org, teacher, (200, 30))
    print()
    for name in small:
        print(
            f"{name:>14}: {len(small[name]):3} statements at 10 families / 10 classes, "
            f"{len(large[name]):3} at 200 families / 30 classes"
        )
    for name in small:
        assert len(small[name]) == len(large[name]), (name, large[name])
        assert len(large[name]) <= CEILING, (name, large[name])


def test_a_parent_changes_audio_only_with_a_fresh_session(
    app: Flask, engine: Engine, db_session: Session, org: Any, teacher: Any
) -> None:
    """The family session is read with its family, course and organisation in one query; a
    change that then locks the family (``refresh(..., with_for_update=True)``) must still work
    on PostgreSQL, which refuses FOR UPDATE through an outer join."""
    from sqlalchemy import select

    from .conftest import csrf_from

    built = build_course(
        db_session,
        org,
        teacher,
        families=3,
        classes=6,
        now=NOW,
        sealer=sealing.sealer_for(app),
    )
    parent = app.test_client()
    parent.set_cookie(FAMILY_COOKIE, built.family_cookie, path="/f/")
    _statements, body = _count(engine, db_session, parent, "/f/")
    token = csrf_from(body.decode())
    db_session.commit()
    db_session.expunge_all()
    response = parent.post("/f/audio-only", data={"action": "request", "csrf_token": token})
    assert response.status_code == 303
    remaining = db_session.scalars(
        select(AudioOnlyEvent).where(
            AudioOnlyEvent.family_id == built.family_ids[0], AudioOnlyEvent.class_id.is_(None)
        )
    ).all()
    assert [e.action for e in remaining] == ["request"]
