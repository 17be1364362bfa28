"""Concerns and holds: a worrying class keeps its recording until the safeguarding lead decides.

A teacher (about a class of their own course) or the safeguarding lead raises a concern: what
happened and when in the class. The class's recordings go on hold at once, and so does any
recording of that class that arrives later, because the hold is on the class, not on a file.
The lead is told by mail, and both steps are in the audit trail. Only the lead releases a hold,
and must say why. The lead can also hold a single recording (one whose class is unknown).

Services take a session, plain values, the acting user and ``now``; they flush, never commit.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from typing import Any

from flask import current_app
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from .. import mail
from ..access import LEAD, TEACHER
from ..accounts.models import User
from ..audit.services import record as audit
from ..courses.access import MAX_ID, get_course
from ..courses.models import ClassSession, ClassStatus, Course
from ..courses.timetable import local_time
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..orgs.models import Organisation
from .models import Concern, Hold, Recording, RecordingState

MIN_TEXT = 10
MAX_TEXT = 5000
MAX_REASON = 2000
# How far back a class may be for a concern (recordings are gone by then in most set-ups).
CONCERN_WINDOW = dt.timedelta(days=120)
_MINUTE = re.compile(r"^(?:minute\s*)?(\d{1,4})\s*(?:m|min|mins|minutes?)?$", re.IGNORECASE)
_CLOCK = re.compile(r"^(\d{1,2})[:.h](\d{2})$")


# --- holds ---------------------------------------------------------------------------------------


def active_holds_query(recording: Recording) -> Select[int]:
    targets = [Hold.recording_id == recording.id]
    if recording.class_session_id is not None:
        targets.append(Hold.class_session_id == recording.class_session_id)
    return select(Hold.id).where(Hold.released_at.is_(None), or_(*targets))


def hold_in_force(session: Session, recording: Recording) -> bool:
    """Whether any hold keeps this recording (on itself or on its class)."""
    return session.scalars(active_holds_query(recording).limit(1)).first() is not None


def refresh_on_hold(
    session: Session, *, class_session_id: int | None = None, recording_id: uuid.UUID | None = None
) -> list[Recording]:
    """Recompute the ``on_hold`` flag of the recordings a hold concerns; returns them."""
    targets = []
    if class_session_id is not None:
        targets.append(Recording.class_session_id == class_session_id)
    if recording_id is not None:
        targets.append(Recording.id == recording_id)
    if not targets:
        return []
    recordings = list(session.scalars(select(Recording).where(or_(*targets))))
    for rec in recordings:
        rec.on_hold = hold_in_force(session, rec)
    session.flush()
    return recordings


def _require_lead(actor: User) -> None:
    if actor.role != LEAD:
        raise Forbidden("Only the safeguarding lead can do this.")


def _lead_recipients(session: Session, organisation_id: int | None) -> list[tuple[str, str]]:
    query = select(User).where(User.role == LEAD, User.active.is_(True)).order_by(User.id)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    people = [(u.email, u.name) for u in session.scalars(query)]
    if not people and organisation_id is not None:
        org = session.get(Organisation, organisation_id)
        if org is not None and org.safeguarding_contact_email:
            people.append((org.safeguarding_contact_email, org.safeguarding_contact_name))
    return people


def _tell_leads(session: Session, organisation_id: int | None, kind: str, **facts: Any) -> int:
    recipients = _lead_recipients(session, organisation_id)
    for email, name in recipients:
        mail.send(
            session,
            kind=kind,
            to_address=email,
            to_name=name,
            organisation_id=organisation_id,
            **facts,
        )
    return len(recipients)


def _visible_recording(session: Session, actor: User, recording_id: uuid.UUID) -> Recording:
    rec = session.get(Recording, recording_id)
    if rec is None or rec.organisation_id not in (None, actor.organisation_id):
        raise NotFound("No such recording.")
    return rec


def place_hold(
    session: Session, actor: User, *, recording_id: uuid.UUID, reason: str, now: dt.datetime
) -> Hold:
    """The lead keeps one recording from deletion (e.g. one whose class is unknown)."""
    _require_lead(actor)
    reason = _text(reason, "reason", "Say why the recording is kept", MAX_REASON)
    rec = _visible_recording(session, actor, recording_id)
    if rec.state != RecordingState.ACTIVE:
        raise Conflict("This recording has already been deleted.")
    hold = Hold(
        organisation_id=rec.organisation_id or actor.organisation_id,
        recording_id=rec.id,
        placed_by_id=actor.id,
        reason=reason,
        placed_at=now,
    )
    session.add(hold)
    session.flush()
    refresh_on_hold(session, recording_id=rec.id)
    audit(
        session,
        "recording.hold_placed",
        actor=actor,
        subject=("hold", hold.id),
        course_id=rec.course_id,
        recording_id=str(rec.id),
        reason=reason,
    )
    return hold


def active_holds(session: Session, actor: User) -> list[Hold]:
    _require_lead(actor)
    return list(
        session.scalars(
            select(Hold)
            .where(
                Hold.released_at.is_(None),
                or_(Hold.organisation_id == actor.organisation_id, Hold.organisation_id.is_(None)),
            )
            .order_by(Hold.placed_at.desc())
        )
    )


def release_hold(
    session: Session, actor: User, *, hold_id: int, reason: str, now: dt.datetime
) -> Hold:
    """Only the lead lifts a hold, with a reason; the recordings then follow their schedule."""
    _require_lead(actor)
    reason = _text(reason, "reason", "Say why the hold is released", MAX_REASON)
    hold = session.get(Hold, hold_id, with_for_update=True)
    if hold is None or hold.organisation_id not in (None, actor.organisation_id):
        raise NotFound("No such hold.")
    if hold.released_at is not None:
        raise Conflict("This hold was already released.")
    hold.released_at = now
    hold.released_by_id = actor.id
    hold.release_reason = reason
    session.flush()
    recordings = refresh_on_hold(
        session, class_session_id=hold.class_session_id, recording_id=hold.recording_id
    )
    audit(
        session,
        "recording.hold_released",
        actor=actor,
        subject=("hold", hold.id),
        class_session_id=hold.class_session_id,
        recording_ids=[str(r.id) for r in recordings],
        still_held=[str(r.id) for r in recordings if r.on_hold],
        reason=reason,
    )
    return hold


# --- concerns ------------------------------------------------------------------------------------


def _text(value: str | None, field: str, what: str, limit: int) -> str:
    text = (value or "").strip()
    if len(text) < MIN_TEXT:
        raise ValidationError(
            f"{what} in a few words (at least {MIN_TEXT} characters).", field=field
        )
    if len(text) > limit:
        raise ValidationError(f"Please keep it under {limit} characters.", field=field)
    return text


def classes_for_concerns(session: Session, actor: User, now: dt.datetime) -> list[ClassSession]:
    """Classes the person may raise a concern about: started ones of the courses they see."""
    if actor.role not in (TEACHER, LEAD):
        raise Forbidden("Only teachers and the safeguarding lead raise concerns here.")
    query = (
        select(ClassSession)
        .join(Course, Course.id == ClassSession.course_id)
        .where(
            Course.organisation_id == actor.organisation_id,
            ClassSession.starts_at <= now,
            ClassSession.starts_at >= now - CONCERN_WINDOW,
            ClassSession.status != ClassStatus.CANCELLED,
        )
        .order_by(ClassSession.starts_at.desc())
        .limit(300)
    )
    if actor.role == TEACHER:
        query = query.where(Course.teacher_id == actor.id)
    return list(session.scalars(query))


def minute_into_class(when: str, cls: ClassSession, course: Course) -> int:
    """Minutes after the class started: from "12", "minute 12" or a clock time "17:25"."""
    text = (when or "").strip()
    if not text:
        raise ValidationError("Say when in the class it happened.", field="when")
    limit = cls.duration_minutes + 60  # a class may overrun
    match = _MINUTE.match(text)
    if match:
        minute = int(match.group(1))
    else:
        clock = _CLOCK.match(text)
        if not clock or int(clock.group(1)) > 23 or int(clock.group(2)) > 59:
            raise ValidationError(
                "Give the minute of the class (e.g. 12) or the time (e.g. 17:25).", field="when"
            )
        zone = zoneinfo.ZoneInfo(course.timezone)
        start = cls.starts_at.astimezone(zone)
        moment = dt.datetime.combine(
            start.date(), dt.time(int(clock.group(1)), int(clock.group(2))), zone
        )
        minute = int((moment - start).total_seconds() // 60)
        if minute < 0:
            raise ValidationError(
                f"{text} is before the class started ({start:%H:%M}).", field="when"
            )
    if minute > limit:
        raise ValidationError(
            f"The class lasted {cls.duration_minutes} minutes; give a time within it.",
            field="when",
        )
    return minute


def raise_concern(
    session: Session,
    actor: User,
    *,
    class_session_id: int,
    what_happened: str,
    when: str,
    now: dt.datetime,
) -> Concern:
    """Record the concern, hold the class's recordings, tell the lead."""
    if actor.role not in (TEACHER, LEAD):
        raise Forbidden("Only teachers and the safeguarding lead raise concerns here.")
    cls = session.get(ClassSession, class_session_id)
    if cls is None:
        raise NotFound("No such class.", field="class_session_id")
    # A teacher sees only their own courses: another course's class is "not found".
    course = get_course(session, actor, cls.course_id)
    if cls.starts_at > now:
        raise ValidationError("This class has not taken place yet.", field="class_session_id")
    text = _text(what_happened, "what_happened", "Describe what happened", MAX_TEXT)
    minute = minute_into_class(when, cls, course)

    concern = Concern(
        organisation_id=course.organisation_id,
        course_id=course.id,
        class_session_id=cls.id,
        raised_by_id=actor.id,
        what_happened=text,
        minute_into_class=minute,
        when_text=when.strip()[:40],
        created_at=now,
    )
    session.add(concern)
    session.flush()
    hold = Hold(
        organisation_id=course.organisation_id,
        class_session_id=cls.id,
        concern_id=concern.id,
        placed_by_id=actor.id,
        reason=f"Concern #{concern.id}",
        placed_at=now,
    )
    session.add(hold)
    session.flush()
    recordings = refresh_on_hold(session, class_session_id=cls.id)
    # The description stays in the concerns table; the chained trail keeps only the facts.
    audit(
        session,
        "concern.raised",
        actor=actor,
        subject=("concern", concern.id),
        course_id=course.id,
        class_session_id=cls.id,
        minute_into_class=minute,
    )
    audit(
        session,
        "recording.hold_placed",
        actor=actor,
        subject=("hold", hold.id),
        course_id=course.id,
        class_session_id=cls.id,
        concern_id=concern.id,
        recording_ids=[str(r.id) for r in recordings],
    )
    local = local_time(course, cls.starts_at)
    link = f"{current_app.config['BASE_URL']}/concerns/{concern.id}"
    kept = (
        "Its recording is on hold and will not be deleted until you release the hold."
        if recordings
        else "Its recording has not arrived yet; it will be kept on hold when it does."
    )
    told = _tell_leads(
        session,
        course.organisation_id,
        "safeguarding_concern",
        course=course,
        actor=actor,
        local=local,
        minute=minute,
        kept=kept,
        link=link,
    )
    audit(
        session,
        "concern.lead_told",
        subject=("concern", concern.id),
        organisation_id=course.organisation_id,
        course_id=course.id,
        messages=told,
    )
    return concern


def _visible_concerns(actor: User) -> Select[Concern]:
    query = select(Concern).where(Concern.organisation_id == actor.organisation_id)
    if actor.role == TEACHER:
        query = query.where(Concern.raised_by_id == actor.id)
    elif actor.role != LEAD:
        raise Forbidden("Only teachers and the safeguarding lead see concerns.")
    return query


def list_concerns(session: Session, actor: User, limit: int = 200) -> list[Concern]:
    query = _visible_concerns(actor).order_by(Concern.created_at.desc()).limit(limit)
    return list(session.scalars(query))


def get_concern(session: Session, actor: User, concern_id: int) -> Concern:
    if not 0 < concern_id <= MAX_ID:
        raise NotFound("No such concern.")
    query = _visible_concerns(actor).where(Concern.id == concern_id)
    concern = session.scalars(query).first()
    if concern is None:
        raise NotFound("No such concern.")
    return concern


def holds_of_concern(session: Session, concern: Concern) -> list[Hold]:
    return list(session.scalars(select(Hold).where(Hold.concern_id == concern.id)))


def recordings_of_class(session: Session, class_session_id: int) -> list[Recording]:
    return list(
        session.scalars(
            select(Recording)
            .where(Recording.class_session_id == class_session_id)
            .order_by(Recording.started_at)
        )
    )
