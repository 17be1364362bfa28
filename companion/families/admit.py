"""The teacher's admit list of a class (who to let in from the waiting room, audio-only flagged)
and the summary of it mailed to the teacher before each class."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from .. import mail
from ..accounts.models import User
from ..courses import access as course_access
from ..courses import timetable
from ..courses.models import ClassSession, ClassStatus, Course, ZoomState
from ..orgs.models import Organisation
from . import agreement
from .access import get_course
from .audio_only import audio_only_state, cutoff_of, events_by_family
from .extensions import admit_columns
from .models import (
    AgreementAcceptance,
    AudioOnlyEvent,
    ClassSummary,
    Family,
    FamilyContact,
    RegistrantState,
)
from .people import display_name, zoom_name
from .roster import admit_url, expected_families

# The teacher's summary email goes out this long before each class.
SUMMARY_BEFORE = dt.timedelta(hours=2)


@dataclass
class AdmitRow:
    family: Family
    child_name: str
    zoom_name: str
    audio_only: bool
    registered: bool
    agreement_accepted: bool
    # Columns other packages add (see admit_columns), by key.
    extras: dict[str, Any] = field(default_factory=dict)


def accepted_families(
    session: Session, org: Organisation, families: Sequence[Family], *, now: dt.datetime
) -> set[int]:
    """Families at least one of whose parents accepted the current agreement."""
    if not families:
        return set()
    version = agreement.current(session, org, now=now)
    return set(
        session.scalars(
            select(AgreementAcceptance.family_id).where(
                AgreementAcceptance.agreement_id == version.id,
                AgreementAcceptance.family_id.in_([f.id for f in families]),
            )
        )
    )


def admit_list(session: Session, cls: ClassSession, *, now: dt.datetime) -> list[AdmitRow]:
    """The children the teacher should admit from the waiting room, audio-only ones flagged."""
    families = expected_families(session, cls)
    events = events_by_family(session, [f.id for f in families])
    return _admit_rows(session, cls, families, events, now=now)


def _admit_rows(
    session: Session,
    cls: ClassSession,
    families: list[Family],
    events: dict[int, list[AudioOnlyEvent]],
    *,
    now: dt.datetime,
) -> list[AdmitRow]:
    org = cls.course.organisation
    cutoff = cutoff_of(org, cls)
    accepted = accepted_families(session, org, families, now=now)
    rows = [
        AdmitRow(
            family=f,
            child_name=display_name(f),
            zoom_name=zoom_name(f),
            audio_only=audio_only_state(events[f.id], cls, cutoff),
            registered=f.zoom_state == RegistrantState.REGISTERED,
            agreement_accepted=f.id in accepted,
        )
        for f in families
    ]
    for column in admit_columns():
        values = column.values(session, cls, families)
        for row in rows:
            row.extras[column.key] = values.get(row.family.id)
    return rows


def get_class_for(session: Session, user: User, course_id: int, class_id: int) -> ClassSession:
    course = get_course(session, user, course_id)
    cls = course_access.get_class(course, class_id)
    # Loading the course's classes does not point each class back at the course: without this
    # ``cls.course`` reads the course again once this function's reference to it is gone.
    set_committed_value(cls, "course", course)
    return cls


def audio_only_events_for_class(session: Session, cls: ClassSession) -> list[AudioOnlyEvent]:
    """Every request and withdrawal that concerns this class, in the order made."""
    families = expected_families(session, cls)
    return _class_events(cls, events_by_family(session, [f.id for f in families]))


def _class_events(
    cls: ClassSession, events: dict[int, list[AudioOnlyEvent]]
) -> list[AudioOnlyEvent]:
    cutoff = cutoff_of(cls.course.organisation, cls)
    found = []
    for family_events in events.values():
        found += [
            e
            for e in family_events
            if e.class_id == cls.id or (e.class_id is None and e.at < cutoff)
        ]
    return sorted(found, key=lambda e: (e.at, e.id))


@dataclass
class AdmitPage:
    """Everything the admit list page shows, read once: its rows, the requests for the class,
    and the names those requests are shown with."""

    rows: list[AdmitRow]
    events: list[AudioOnlyEvent]
    # Family id -> the child's name; contact id -> the parent's name.
    names: dict[int, str]
    contact_names: dict[int, str]


def admit_page(session: Session, cls: ClassSession, *, now: dt.datetime) -> AdmitPage:
    """:func:`admit_list` and :func:`audio_only_events_for_class` of one class, with the
    families and their requests read once for both."""
    families = expected_families(session, cls)
    events = events_by_family(session, [f.id for f in families])
    rows = _admit_rows(session, cls, families, events, now=now)
    class_events = _class_events(cls, events)
    contact_ids = {e.contact_id for e in class_events}
    contact_names = (
        {
            c.id: c.name
            for c in session.scalars(select(FamilyContact).where(FamilyContact.id.in_(contact_ids)))
        }
        if contact_ids
        else {}
    )
    return AdmitPage(
        rows=rows,
        events=class_events,
        names={r.family.id: r.child_name for r in rows},
        contact_names=contact_names,
    )


def due_summaries(session: Session, now: dt.datetime, limit: int = 200) -> list[int]:
    """Classes starting within SUMMARY_BEFORE whose summary has not gone out."""
    return list(
        session.scalars(
            select(ClassSession.id)
            .join(Course, Course.id == ClassSession.course_id)
            .outerjoin(ClassSummary, ClassSummary.class_id == ClassSession.id)
            .where(
                ClassSummary.id.is_(None),
                ClassSession.status != ClassStatus.CANCELLED,
                ClassSession.starts_at > now,
                ClassSession.starts_at <= now + SUMMARY_BEFORE,
                Course.zoom_state == ZoomState.CREATED,
            )
            .order_by(ClassSession.starts_at, ClassSession.id)
            .limit(limit)
        )
    )


def send_summary(session: Session, *, class_id: int, now: dt.datetime) -> bool:
    """Mail the teacher the admit list of one class, once; False if it went out already (or
    the class no longer needs one)."""
    cls = session.get(ClassSession, class_id)
    if cls is None or not cls.takes_place or cls.starts_at <= now:
        return False
    if session.scalars(select(ClassSummary.id).where(ClassSummary.class_id == cls.id)).first():
        return False
    course = cls.course
    rows = admit_list(session, cls, now=now)
    audio = [r for r in rows if r.audio_only]
    # Written first: a second run (or a second worker) fails on the unique class_id and sends
    # nothing, because the message is queued in the same transaction.
    session.add(
        ClassSummary(class_id=cls.id, sent_at=now, expected=len(rows), audio_only=len(audio))
    )
    session.flush()
    teacher = course.teacher
    cutoff = cutoff_of(course.organisation, cls)
    mail.send(
        session,
        kind="family.class_summary",
        to_address=teacher.email,
        to_name=teacher.name,
        organisation_id=course.organisation_id,
        course=course,
        start=timetable.local_time(course, cls.starts_at),
        rows=rows,
        audio=audio,
        now=now,
        cutoff=cutoff,
        cutoff_local=timetable.local_time(course, cutoff),
        admit_url=admit_url(course, cls),
    )
    return True
