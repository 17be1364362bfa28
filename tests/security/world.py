"""Two of everything, so each test can point one party at the other party's objects.

Course X (teacher X, family A: child "Amira Alpha") and course Y (teacher Y, family B: child
"Zebedee Quasar"); a class of course Y that happened yesterday with a recording, a concern
(raised by teacher Y) and its hold; staff API tokens; a parent session for family A.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.accounts import services as accounts
from companion.accounts.models import StaffSession, User
from companion.courses.models import ClassSession, Course
from companion.db import utcnow
from companion.families.models import Family
from companion.recordings import concerns
from companion.recordings.models import Concern, Hold, Recording, RecordingGrant

from .. import factories
from ..staff_helpers import sign_in

# What only the "other" party may see: never in a refused (or an unrelated) response.
SECRET_CHILD = "Zebedee"
SECRET_CHILD_LAST = "Quasar"
SECRET_PARENT = "quincy.beta@example.net"
SECRET_COURSE = "Theremin for Otters"


@dataclass
class World:
    org: Any
    admin: User
    lead: User
    teacher_x: User
    teacher_y: User
    course_x: Course
    course_y: Course
    class_x: ClassSession
    class_y: ClassSession
    family_a: Family
    family_b: Family
    recording_y: Recording
    concern_y: Concern
    hold_y: Hold
    token_y_id: int


def build(session: Session, app: Flask, org: Any, admin: User, lead: User) -> World:
    teacher_x = factories.user(session, org, role="teacher", name="Xavier Teacher")
    teacher_y = factories.user(session, org, role="teacher", name="Yolanda Teacher")
    course_x = factories.course_with_classes(session, teacher_x, title="Recorder for beginners")
    course_y = factories.course_with_classes(session, teacher_y, title=SECRET_COURSE)
    family_a = factories.family(
        session,
        course_x,
        first="Amira",
        last="Alpha",
        contacts=(("Rana Alpha", "rana@example.net"),),
    )
    family_b = factories.family(
        session,
        course_y,
        first=SECRET_CHILD,
        last=SECRET_CHILD_LAST,
        contacts=(("Quincy Beta", SECRET_PARENT), ("Pat Beta", "pat.beta@example.net")),
    )
    class_x, class_y = factories.class_of(course_x), factories.class_of(course_y)
    recording_y = factories.recording(session, class_y)
    with app.test_request_context():
        concern = concerns.raise_concern(
            session,
            teacher_y,
            class_session_id=class_y.id,
            what_happened="A stranger's voice asked the children for their addresses.",
            when="12",
            now=utcnow(),
        )
    hold = concerns.holds_of_concern(session, concern)[0]
    accounts.create_token(session, user=teacher_y, name="teacher y's script")
    token_y = teacher_y_token_id(session, teacher_y)
    session.flush()
    return World(
        org, admin, lead, teacher_x, teacher_y, course_x, course_y, class_x, class_y,
        family_a, family_b, recording_y, concern, hold, token_y,
    )  # fmt: skip


def teacher_y_token_id(session: Session, teacher: User) -> int:
    from sqlalchemy import select

    from companion.accounts.models import ApiToken

    return session.scalars(select(ApiToken.id).where(ApiToken.user_id == teacher.id)).one()


def parent_client(app: Flask, session: Session, family: Family, position: int = 0) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(
        "companion_family", factories.family_cookie(session, family.contacts[position]), path="/f/"
    )
    return client


def staff_client(app: Flask, person: User) -> FlaskClient:
    client = app.test_client()
    response = sign_in(client, person.email)
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    return client


def foreign_grant(session: Session, world: World) -> str:
    """A recording grant the lead made in another browser: worthless in this one."""
    other = StaffSession(
        user_id=world.lead.id,
        token_hash=accounts.hash_token(secrets.token_urlsafe(32)),
        created_at=utcnow(),
        last_seen_at=utcnow(),
    )
    session.add(other)
    session.flush()
    token = secrets.token_urlsafe(32)
    file = world.recording_y.files[0]
    session.add(
        RecordingGrant(
            token_hash=accounts.hash_token(token),
            file_id=file.id,
            user_id=world.lead.id,
            staff_session_id=other.id,
            reason="checking the class from another browser",
            expires_at=utcnow() + dt.timedelta(minutes=5),
            absolute_expires_at=utcnow() + dt.timedelta(hours=1),
        )
    )
    session.flush()
    return token
