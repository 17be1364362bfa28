"""The safeguarding lead's workspace: open concerns and holds, recordings found by course,
class, child and date, each concern's chronology, notes and outcome, disclosures of recordings,
and telling a family about an incident.

Only the safeguarding lead: every service refuses anyone else (the views already have), and
every change is on the audit trail in the same transaction as the change itself.
Services take a session, plain values, the acting user and ``now``; they flush, never commit.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from .. import mail
from ..access import LEAD
from ..accounts.models import User
from ..audit.models import AuditEvent
from ..audit.services import record as audit
from ..courses import access as course_access
from ..courses.access import get_course
from ..courses.models import ClassSession, Course
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..families.models import Family
from ..recordings import concerns as vault_concerns
from ..recordings.models import Concern, Hold, Recording, RecordingState
from .models import OUTCOMES, ConcernNote, ConcernOutcome, Disclosure, FamilyNotice

MIN_TEXT = 10
MAX_TEXT = 5000
MAX_NAME = 200
MAX_SUBJECT = 200
MAX_ID = course_access.MAX_ID
# Disclosures are recorded after the fact, but not years after, and never in the future.
DISCLOSURE_PAST = dt.timedelta(days=366)
RETRIEVAL_KINDS = ("recording.access_granted", "recording.retrieved", "recording.access_refused")


def require_lead(actor: User | None) -> User:
    if actor is None or actor.role != LEAD:
        raise Forbidden("Only the safeguarding lead can do this.")
    return actor


def _text(
    value: str | None, field: str, what: str, limit: int = MAX_TEXT, least: int = MIN_TEXT
) -> str:
    text = (value or "").strip()
    if len(text) < least:
        raise ValidationError(f"{what} (at least {least} characters).", field=field)
    if len(text) > limit:
        raise ValidationError(f"Please keep it under {limit} characters.", field=field)
    if any(ch in text for ch in "\x00"):
        raise ValidationError("The text contains a character that cannot be stored.", field=field)
    return text


def _line(value: str | None, field: str, what: str, limit: int = MAX_NAME) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise ValidationError(f"{what} is needed.", field=field)
    if len(text) > limit:
        raise ValidationError(f"Please keep it under {limit} characters.", field=field)
    return text


# --- the overview --------------------------------------------------------------------------------


def _outcome_of(session: Session, concern_id: int) -> ConcernOutcome | None:
    return session.scalars(
        select(ConcernOutcome).where(ConcernOutcome.concern_id == concern_id)
    ).first()


def open_concerns(session: Session, actor: User, limit: int = 300) -> list[Concern]:
    require_lead(actor)
    closed = select(ConcernOutcome.concern_id)
    return list(
        session.scalars(
            select(Concern)
            .where(Concern.organisation_id == actor.organisation_id, Concern.id.not_in(closed))
            .options(selectinload(Concern.course), selectinload(Concern.class_session))
            .order_by(Concern.created_at.desc())
            .limit(limit)
        )
    )


def closed_concerns(session: Session, actor: User, limit: int = 50) -> list[ConcernOutcome]:
    require_lead(actor)
    return list(
        session.scalars(
            select(ConcernOutcome)
            .where(ConcernOutcome.organisation_id == actor.organisation_id)
            .order_by(ConcernOutcome.decided_at.desc())
            .limit(limit)
        )
    )


def open_holds(session: Session, actor: User) -> list[Hold]:
    require_lead(actor)
    return vault_concerns.active_holds(session, actor)


# --- recordings by course, class, child and date ------------------------------------------------


@dataclass(frozen=True)
class RecordingFilter:
    course_id: int | None = None
    class_id: int | None = None
    child: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    include_deleted: bool = False


def find_recordings(
    session: Session, actor: User, f: RecordingFilter, limit: int = 300
) -> list[Recording]:
    """The vault's listing, narrowed: a child means the classes of the courses the child is in."""
    require_lead(actor)
    query = (
        select(Recording)
        .where(
            or_(
                Recording.organisation_id == actor.organisation_id,
                Recording.organisation_id.is_(None),
            )
        )
        .options(
            selectinload(Recording.files),
            selectinload(Recording.course),
            selectinload(Recording.class_session),
        )
    )
    if not f.include_deleted:
        query = query.where(Recording.state == RecordingState.ACTIVE)
    if f.course_id is not None:
        query = query.where(Recording.course_id == f.course_id)
    if f.class_id is not None:
        query = query.where(Recording.class_session_id == f.class_id)
    if f.child:
        words = [w for w in f.child.split() if w][:4]
        fam = select(Family.course_id).where(Family.organisation_id == actor.organisation_id)
        for word in words:
            like = f"%{word}%"
            fam = fam.where(
                or_(Family.child_first_name.ilike(like), Family.child_last_name.ilike(like))
            )
        query = query.where(Recording.course_id.in_(fam))
    if f.since is not None:
        query = query.where(Recording.started_at >= f.since)
    if f.until is not None:
        query = query.where(Recording.started_at < f.until)
    return list(session.scalars(query.order_by(Recording.started_at.desc()).limit(limit)))


def courses_for_filter(session: Session, actor: User) -> list[Course]:
    require_lead(actor)
    return list(
        session.scalars(
            select(Course)
            .where(Course.organisation_id == actor.organisation_id)
            .order_by(Course.title)
            .limit(500)
        )
    )


# --- one concern ---------------------------------------------------------------------------------


def get_concern(session: Session, actor: User, concern_id: int) -> Concern:
    require_lead(actor)
    return vault_concerns.get_concern(session, actor, concern_id)


@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    kind: str  # concern | hold | release | retrieval | disclosure | note | notice | outcome
    title: str
    who: str = ""
    text: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chronology:
    concern: Concern
    entries: list[Entry]
    holds: list[Hold]
    recordings: list[Recording]
    families: list[Family]
    outcome: ConcernOutcome | None

    @property
    def is_open(self) -> bool:
        return self.outcome is None


def _person(user: User | None) -> str:
    return f"{user.name} ({user.email})" if user is not None else "companion"


def chronology(session: Session, actor: User, concern_id: int) -> Chronology:
    """Everything that happened about a concern, oldest first: from the concern's own rows and
    from the audit trail (who opened the class's recordings, and why)."""
    concern = get_concern(session, actor, concern_id)
    holds = vault_concerns.holds_of_concern(session, concern)
    recordings = vault_concerns.recordings_of_class(session, concern.class_session_id)
    outcome = _outcome_of(session, concern.id)
    entries = [
        Entry(
            concern.created_at,
            "concern",
            "Concern raised",
            _person(concern.raised_by),
            concern.what_happened,
            {"minute": concern.minute_into_class},
        )
    ]
    for hold in holds:
        entries.append(
            Entry(
                hold.placed_at,
                "hold",
                "Recordings of the class put on hold",
                _person(hold.placed_by),
            )
        )
        if hold.released_at is not None:
            entries.append(
                Entry(
                    hold.released_at,
                    "release",
                    "Hold released",
                    _person(hold.released_by),
                    hold.release_reason,
                )
            )
    wanted = {str(r.id) for r in recordings}
    if wanted:
        events = session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.kind.in_(RETRIEVAL_KINDS),
                or_(
                    AuditEvent.course_id == concern.course_id,
                    AuditEvent.course_id.is_(None),
                ),
                AuditEvent.at >= concern.created_at - dt.timedelta(days=1),
            )
            .order_by(AuditEvent.id)
            .limit(2000)
        )
        files = {str(f.id): r for r in recordings for f in r.files}
        for event in events:
            detail = json.loads(event.detail or "{}")
            rec_id = detail.get("recording_id") or (
                str(files[event.subject_id].id) if event.subject_id in files else None
            )
            if rec_id not in wanted:
                continue
            titles = {
                "recording.access_granted": "Recording opened, with a reason",
                "recording.retrieved": "Recording retrieved",
                "recording.access_refused": "Recording access refused",
            }
            entries.append(
                Entry(
                    event.at,
                    "retrieval",
                    titles[event.kind],
                    event.actor,
                    str(detail.get("reason") or detail.get("problem") or ""),
                    {"file_type": detail.get("file_type", ""), "audit_id": event.id},
                )
            )
    for note in session.scalars(
        select(ConcernNote).where(ConcernNote.concern_id == concern.id).order_by(ConcernNote.id)
    ):
        entries.append(Entry(note.created_at, "note", "Note", _person(note.author), note.body))
    for d in session.scalars(
        select(Disclosure)
        .where(
            or_(
                Disclosure.concern_id == concern.id,
                and_(
                    Disclosure.concern_id.is_(None),
                    Disclosure.recording_id.in_([r.id for r in recordings] or [uuid.UUID(int=0)]),
                ),
            )
        )
        .order_by(Disclosure.id)
    ):
        entries.append(
            Entry(
                d.created_at,
                "disclosure",
                f"Disclosed to {d.recipient_name}, {d.recipient_organisation} "
                f"(on {d.disclosed_on:%-d %B %Y})",
                _person(d.recorded_by),
                d.reason,
                {"what": d.what},
            )
        )
    for n in session.scalars(
        select(FamilyNotice).where(FamilyNotice.concern_id == concern.id).order_by(FamilyNotice.id)
    ):
        entries.append(
            Entry(
                n.created_at,
                "notice",
                f"Family of {n.family.child_first_name} {n.family.child_last_name} told "
                f"({n.recipients} parent{'s' if n.recipients != 1 else ''}): {n.subject}",
                _person(n.sent_by),
                n.body,
            )
        )
    if outcome is not None:
        entries.append(
            Entry(
                outcome.decided_at,
                "outcome",
                f"Outcome: {OUTCOMES.get(outcome.outcome, outcome.outcome)}"
                + (" (hold released)" if outcome.hold_released else ""),
                _person(outcome.decided_by),
                outcome.summary,
            )
        )
    entries.sort(key=lambda e: e.at)
    families = list(
        session.scalars(
            select(Family)
            .where(Family.course_id == concern.course_id)
            .order_by(Family.child_first_name, Family.id)
        )
    )
    return Chronology(concern, entries, holds, recordings, families, outcome)


def _open(session: Session, concern: Concern) -> None:
    if _outcome_of(session, concern.id) is not None:
        raise Conflict("This concern is closed; its chronology can no longer change.")


def add_note(
    session: Session, actor: User, *, concern_id: int, body: str, now: dt.datetime
) -> ConcernNote:
    concern = get_concern(session, actor, concern_id)
    _open(session, concern)
    text = _text(body, "body", "Write the note")
    note = ConcernNote(
        organisation_id=concern.organisation_id,
        concern_id=concern.id,
        author_id=actor.id,
        body=text,
        created_at=now,
    )
    session.add(note)
    session.flush()
    audit(
        session,
        "concern.note_added",
        actor=actor,
        subject=("concern", concern.id),
        course_id=concern.course_id,
        note_id=note.id,
    )
    return note


def record_outcome(
    session: Session,
    actor: User,
    *,
    concern_id: int,
    outcome: str,
    summary: str,
    release_hold: bool,
    release_reason: str = "",
    now: dt.datetime,
) -> ConcernOutcome:
    """Close the concern; optionally release its hold (through the vault, with a reason)."""
    concern = get_concern(session, actor, concern_id)
    _open(session, concern)
    if outcome not in OUTCOMES:
        raise ValidationError("Choose one of the listed outcomes.", field="outcome")
    text = _text(summary, "summary", "Describe the outcome")
    released = []
    if release_hold:
        for hold in vault_concerns.holds_of_concern(session, concern):
            if hold.released_at is None:
                vault_concerns.release_hold(
                    session, actor, hold_id=hold.id, reason=release_reason, now=now
                )
                released.append(hold.id)
    row = ConcernOutcome(
        organisation_id=concern.organisation_id,
        concern_id=concern.id,
        decided_by_id=actor.id,
        outcome=outcome,
        summary=text,
        hold_released=bool(released),
        decided_at=now,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        "concern.closed",
        actor=actor,
        subject=("concern", concern.id),
        course_id=concern.course_id,
        outcome=outcome,
        holds_released=released,
    )
    return row


# --- disclosures ---------------------------------------------------------------------------------


def _recording(session: Session, actor: User, recording_id: uuid.UUID) -> Recording:
    rec = session.get(Recording, recording_id)
    if rec is None or rec.organisation_id not in (None, actor.organisation_id):
        raise NotFound("No such recording.", field="recording_id")
    return rec


def record_disclosure(
    session: Session,
    actor: User,
    *,
    recording_id: uuid.UUID,
    concern_id: int | None,
    recipient_name: str,
    recipient_organisation: str,
    reason: str,
    what: str,
    disclosed_on: dt.date,
    today: dt.date,
    now: dt.datetime,
) -> Disclosure:
    require_lead(actor)
    rec = _recording(session, actor, recording_id)
    concern = None
    if concern_id is not None:
        concern = get_concern(session, actor, concern_id)
        if rec.class_session_id != concern.class_session_id:
            raise ValidationError(
                "This recording is not of the class the concern is about.", field="recording_id"
            )
    name = _line(recipient_name, "recipient_name", "The recipient's name")
    org = _line(recipient_organisation, "recipient_organisation", "Their organisation")
    why = _text(reason, "reason", "Say why it was shared")
    what_text = " ".join((what or "").split())[:MAX_NAME]
    if disclosed_on > today:
        raise ValidationError("A disclosure cannot be dated in the future.", field="disclosed_on")
    if disclosed_on < today - DISCLOSURE_PAST:
        raise ValidationError("That date is more than a year ago.", field="disclosed_on")
    row = Disclosure(
        organisation_id=rec.organisation_id or actor.organisation_id,
        recording_id=rec.id,
        concern_id=concern.id if concern else None,
        recorded_by_id=actor.id,
        recipient_name=name,
        recipient_organisation=org,
        reason=why,
        what=what_text,
        disclosed_on=disclosed_on,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        "recording.disclosed",
        actor=actor,
        subject=("recording", rec.id),
        course_id=rec.course_id,
        concern_id=row.concern_id,
        disclosure_id=row.id,
        recipient=name,
        recipient_organisation=org,
        reason=why,
        disclosed_on=disclosed_on.isoformat(),
    )
    return row


def disclosures(session: Session, actor: User, limit: int = 300) -> list[Disclosure]:
    require_lead(actor)
    return list(
        session.scalars(
            select(Disclosure)
            .where(Disclosure.organisation_id == actor.organisation_id)
            .order_by(Disclosure.disclosed_on.desc(), Disclosure.id.desc())
            .limit(limit)
        )
    )


# --- telling a family ----------------------------------------------------------------------------


def tell_family(
    session: Session,
    actor: User,
    *,
    concern_id: int,
    family_id: int,
    subject: str,
    body: str,
    now: dt.datetime,
) -> FamilyNotice:
    """One message to each of the family's parents, to their addresses on file and no other."""
    concern = get_concern(session, actor, concern_id)
    family = session.get(Family, family_id) if 0 < family_id <= MAX_ID else None
    if (
        family is None
        or family.organisation_id != actor.organisation_id
        or family.course_id != concern.course_id
    ):
        raise NotFound("No such family on this concern's course.", field="family_id")
    title = _line(subject, "subject", "A subject", MAX_SUBJECT)
    text = _text(body, "body", "Write the message")
    parents = [c for c in family.contacts if c.email]
    if not parents:
        raise Conflict("This family has no parent with an email address.")
    notice = FamilyNotice(
        organisation_id=family.organisation_id,
        family_id=family.id,
        concern_id=concern.id,
        sent_by_id=actor.id,
        subject=title,
        body=text,
        recipients=len(parents),
        created_at=now,
    )
    session.add(notice)
    session.flush()
    for parent in parents:
        mail.send(
            session,
            kind="safeguarding.family_notice",
            to_address=parent.email,
            to_name=parent.name,
            organisation_id=family.organisation_id,
            title=title,
            text=text,
            actor=actor,
        )
    audit(
        session,
        "family.incident_notice",
        actor=actor,
        subject=("concern", concern.id),
        course_id=family.course_id,
        family_id=family.id,
        notice_id=notice.id,
        recipients=len(parents),
    )
    return notice


def class_choices(session: Session, actor: User, course_id: int | None) -> list[ClassSession]:
    require_lead(actor)
    if course_id is None:
        return []
    course = get_course(session, actor, course_id)
    return sorted(course.classes, key=lambda c: c.starts_at)
