"""Attendance from Zoom's meeting events: who, what, when; out of order, repeated, unknown."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.evidence import attendance
from companion.evidence.models import AttendanceEvent, ClassWarning, EvidenceSettings, ZoomMeeting
from companion.mail.models import OutboxMessage

from .. import factories
from ..factories import Meeting, class_of, feed

M = dt.timedelta(minutes=1)


def _meeting(session: Session) -> ZoomMeeting:
    return session.scalars(select(ZoomMeeting)).one()


def _events(session: Session) -> list[AttendanceEvent]:
    return attendance.ordered(session.scalars(select(AttendanceEvent)))


def _warnings(session: Session, kind: str = "one_child_alone") -> list[ClassWarning]:
    session.flush()
    return list(
        session.scalars(
            select(ClassWarning).where(ClassWarning.kind == kind).order_by(ClassWarning.id)
        )
    )


def _class_docs(
    course: Any, families: list[Any], *, guest: str | None = None
) -> tuple[Meeting, list[dict[str, Any]]]:
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    host = z.host()
    docs = [z.started(), z.participant("meeting.participant_joined", host, z.start)]
    for i, fam in enumerate(families):
        docs += z.attend(
            Meeting.child(fam), cls.starts_at + i * dt.timedelta(seconds=5), cls.ends_at - M
        )
    if guest:
        docs += z.attend(Meeting.child(name=guest), cls.starts_at + 3 * M, cls.ends_at - 2 * M)
    docs.append(z.participant("meeting.participant_left", host, cls.ends_at))
    docs.append(z.ended(cls.ends_at))
    return z, docs


def test_a_class_ties_each_participant_to_a_family_and_names_the_host(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    amira = factories.family(db_session, course, first="Amira")
    ben = factories.family(db_session, course, first="Ben")
    _z, docs = _class_docs(course, [amira, ben], guest="iPad (2)")
    feed(db_session, docs)

    meeting = _meeting(db_session)
    assert meeting.class_session_id == class_of(course).id and not meeting.unmatched
    assert meeting.course_id == course.id and meeting.organisation_id == course.organisation_id
    assert meeting.started_at is not None and meeting.ended_at == class_of(course).ends_at
    people = {p.name: p for p in attendance.people(meeting.events)}
    assert people["Ms Teacher"].role == "host" and people["Ms Teacher"].is_staff
    assert people["Amira K"].family_id == amira.id and people["Amira K"].role == "family"
    assert people["Ben K"].family_id == ben.id
    guest = people["iPad (2)"]
    assert guest.role == "guest" and guest.flagged and guest.family_id is None
    assert [e.kind for e in people["Amira K"].events] == ["waiting", "admitted", "joined", "left"]
    assert people["Amira K"].first("joined") == class_of(course).starts_at


def test_events_out_of_order_and_repeated_are_each_stored_once_in_zoom_time_order(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    fams = [factories.family(db_session, course, first=n) for n in ("Amira", "Ben", "Cleo")]
    _z, docs = _class_docs(course, fams)
    shuffled = docs + docs[:5]
    random.Random(7).shuffle(shuffled)
    feed(db_session, shuffled, as_given=True)
    feed(db_session, list(reversed(docs)), as_given=True)

    events = _events(db_session)
    assert len(events) == len(docs)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[0].kind == "meeting_started" and events[-1].kind == "meeting_ended"
    assert db_session.scalar(select(ZoomMeeting.id)) is not None
    assert len(db_session.scalars(select(ZoomMeeting)).all()) == 1
    # Three children and the teacher all along: whatever a half-arrived timeline suggested on
    # the way is retracted once the whole of it is known (kept, never deleted).
    assert all(w.status == "retracted" for w in _warnings(db_session))


def test_a_participant_whose_registrant_is_no_family_is_a_flagged_guest(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at)
    stranger = Meeting.child(name="Amira K", registrant_id="not-a-family-registrant")
    feed(db_session, z.attend(stranger, cls.starts_at, cls.starts_at + 10 * M))
    (person,) = attendance.people(_meeting(db_session).events)
    assert person.role == "guest" and person.family_id is None
    assert "registrant of no family" in person.detail


def test_a_meeting_no_course_owns_is_kept_unmatched(db_session: Session, teacher: Any) -> None:
    start = factories.class_start(2)
    z = Meeting(99999999999, start)
    feed(db_session, [z.started(), *z.attend(Meeting.child(name="Someone"), start, start + M)])
    meeting = _meeting(db_session)
    assert meeting.unmatched and meeting.course_id is None and meeting.class_session_id is None
    assert len(meeting.events) == 5


def test_a_meeting_of_the_course_on_a_day_without_a_class_is_unmatched_but_kept(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    z = Meeting(course.zoom_meeting_id, class_of(course).starts_at + dt.timedelta(days=3))
    feed(db_session, [z.started()])
    meeting = _meeting(db_session)
    assert meeting.course_id == course.id and meeting.class_session_id is None and meeting.unmatched


def test_a_meeting_that_ran_past_its_slot_is_a_warning(db_session: Session, teacher: Any) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at)
    feed(db_session, [z.started(), z.ended(cls.ends_at + 25 * M)])
    (warning,) = _warnings(db_session, "overran")
    assert warning.status == "closed" and warning.details["minutes_over"] == 25
    assert warning.class_session_id == cls.id


def test_a_live_meeting_past_its_slot_is_seen_by_the_live_check(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher, starts=[factories.class_start(0)])
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at)
    feed(db_session, [z.started()], now=cls.starts_at)
    assert _warnings(db_session, "overran") == []
    later = cls.ends_at + 10 * M
    for meeting_id in attendance.live_meetings(db_session, later):
        attendance.evaluate(
            db_session, db_session.get(ZoomMeeting, meeting_id), now=later, live=True
        )
    (warning,) = _warnings(db_session, "overran")
    assert warning.status == "open" and warning.period_end is None


# --- never one child alone ---------------------------------------------------------------------


def _alone_docs(
    course: Any, fam: Any, extra: list[dict[str, Any]] | None = None
) -> tuple[Meeting, list[dict[str, Any]]]:
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    host = z.host()
    docs = [z.started(), z.participant("meeting.participant_joined", host, z.start)]
    docs += z.attend(Meeting.child(fam), cls.starts_at, cls.ends_at - M)
    docs += [z.participant("meeting.participant_left", host, cls.ends_at), z.ended(cls.ends_at)]
    return z, docs


def test_one_child_alone_with_the_teacher_warns_and_tells_the_lead(
    db_session: Session, teacher: Any, lead: Any, app: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    fam = factories.family(db_session, course)
    _z, docs = _alone_docs(course, fam)
    feed(db_session, docs)
    feed(db_session, docs)  # repeated: still one warning, one message
    (warning,) = _warnings(db_session)
    cls = class_of(course)
    assert warning.status == "closed"
    assert warning.period_start == cls.starts_at and warning.period_end == cls.ends_at - M
    assert warning.details["children"][0]["family_id"] == fam.id
    assert warning.details["staff"][0]["role"] == "host"
    mails = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "evidence.one_child_alone")
    ).all()
    assert [m.to_address for m in mails] == [lead.email]
    assert f"/classes/{cls.id}/record" in mails[0].body_text
    kinds = db_session.scalars(
        select(AuditEvent.kind).where(AuditEvent.kind == "evidence.one_child_alone")
    ).all()
    assert len(kinds) == 1


def test_the_rule_is_the_organisations_to_switch_off(
    db_session: Session, teacher: Any, lead: Any
) -> None:
    db_session.add(EvidenceSettings(organisation_id=teacher.organisation_id, one_child_rule=False))
    course = factories.course_with_classes(db_session, teacher)
    _z, docs = _alone_docs(course, factories.family(db_session, course))
    feed(db_session, docs)
    assert _warnings(db_session) == []


def test_a_second_adult_present_means_no_warning(
    db_session: Session, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = class_of(course)
    z, docs = _alone_docs(course, factories.family(db_session, course))
    lead_in_zoom = Meeting.child(name="Sam (lead)", email=lead.email, id="LEADzoom")
    docs += z.attend(lead_in_zoom, cls.starts_at - M, cls.ends_at, wait=False)
    feed(db_session, docs)
    people = {p.name: p for p in attendance.people(_meeting(db_session).events)}
    assert (
        people["Sam (lead)"].role == "staff" and "safeguarding lead" in people["Sam (lead)"].detail
    )
    assert _warnings(db_session) == []


def test_an_alternative_host_by_email_counts_as_a_second_adult(
    db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    course.alternative_hosts = "deputy@example.org"
    cls = class_of(course)
    z, docs = _alone_docs(course, factories.family(db_session, course))
    docs += z.attend(
        Meeting.child(name="Deputy", email="Deputy@example.org"),
        cls.starts_at,
        cls.ends_at,
        wait=False,
    )
    feed(db_session, docs)
    assert _warnings(db_session) == []


def test_children_arriving_one_after_another_are_not_a_warning(
    db_session: Session, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    fams = [factories.family(db_session, course, first=n) for n in ("Amira", "Ben")]
    # The first child is alone with the teacher for the 5 s before the second one comes in.
    _z, docs = _class_docs(course, fams)
    feed(db_session, docs)
    assert _warnings(db_session) == []


def test_a_late_event_that_shows_a_second_child_retracts_the_warning(
    db_session: Session, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = class_of(course)
    z, docs = _alone_docs(course, factories.family(db_session, course, first="Amira"))
    feed(db_session, docs)
    (warning,) = _warnings(db_session)
    assert warning.status == "closed"
    # Ben's events were delayed: he was there from the first minute to near the end.
    ben = Meeting.child(factories.family(db_session, course, first="Ben"))
    feed(
        db_session,
        z.attend(ben, cls.starts_at + dt.timedelta(seconds=20), cls.ends_at - M),
        as_given=True,
    )
    (warning,) = _warnings(db_session)
    assert warning.status == "retracted"  # kept, never deleted
    retracted = db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "evidence.one_child_alone_retracted")
    ).all()
    assert len(retracted) == 1 and '"notified": true' in retracted[0].detail
    assert json.loads(warning.detail)["children"]


def test_a_child_alone_while_the_class_runs_is_warned_before_it_ends(
    db_session: Session, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher, starts=[factories.class_start(0)])
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    host = z.host()
    child = Meeting.child(factories.family(db_session, course))
    feed(
        db_session,
        [
            z.started(),
            z.participant("meeting.participant_joined", host, z.start),
            z.participant("meeting.participant_joined", child, cls.starts_at),
        ],
        now=cls.starts_at + dt.timedelta(seconds=30),
    )
    assert _warnings(db_session) == []  # 30 s so far: not yet
    later = cls.starts_at + 3 * M
    for meeting_id in attendance.live_meetings(db_session, later):
        attendance.evaluate(
            db_session, db_session.get(ZoomMeeting, meeting_id), now=later, live=True
        )
    (warning,) = _warnings(db_session)
    assert warning.status == "open" and warning.period_end is None and warning.notified_at
