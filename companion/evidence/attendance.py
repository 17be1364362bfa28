"""Attendance from Zoom's meeting events, and the warnings read from it.

Each participant or meeting event is stored once (its webhook redelivery key), with the time
Zoom says it happened. Nothing here trusts arrival order: the timeline is always rebuilt from
the stored events sorted by their own time, so an event that arrives late simply takes its place
and the conclusions (who was in, one child alone, overran) are re-read from the whole timeline.

Who someone is comes from Zoom, never from the name they typed:

* the meeting's host (``participant.id`` / ``participant_user_id`` equal to the meeting's
  ``host_id``, or the course teacher's email) is staff, "host";
* a registrant of a family (``registrant_id``) is that family's child;
* a staff member of the organisation (by Zoom account email, or listed as alternative host,
  such as the safeguarding lead) is staff;
* anyone else is a guest, listed apart and flagged: a guest link, a renamed device, a parent
  who typed the meeting id by hand.

The module runs past 600 lines and is kept whole: the intake, the timeline and the one-child-alone
rule read the same events in the same order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import mail
from ..access import LEAD
from ..accounts.models import User
from ..audit.services import record as audit
from ..courses.models import ClassSession, Course
from ..courses.timetable import local_time
from ..errors import ValidationError
from ..families.access import family_for_registrant
from ..families.links import base_url
from ..families.models import Family
from ..orgs.models import Organisation
from ..recordings.ingest import match_class, parse_time
from ..zoom.webhooks import dedupe_key
from .models import (
    KIND_ORDER,
    AttendanceEvent,
    Attendee,
    ClassWarning,
    EventKind,
    EvidenceSettings,
    WarningKind,
    WarningStatus,
    ZoomMeeting,
)

log = logging.getLogger(__name__)

# Zoom event name -> what happened.
ZOOM_EVENTS = {
    "meeting.started": EventKind.MEETING_STARTED,
    "meeting.ended": EventKind.MEETING_ENDED,
    "meeting.participant_joined_waiting_room": EventKind.WAITING,
    "meeting.participant_put_in_waiting_room": EventKind.WAITING,
    "meeting.participant_admitted": EventKind.ADMITTED,
    "meeting.participant_joined": EventKind.JOINED,
    "meeting.participant_left": EventKind.LEFT,
}
# A meeting still going this long after its slot ended is "ran past its slot".
OVERRUN_GRACE = dt.timedelta(minutes=5)
# A meeting whose last event is older than this and has no meeting.ended is not watched live.
LIVE_HORIZON = dt.timedelta(hours=12)
STAFF_ROLES = (Attendee.HOST, Attendee.STAFF)


def _text(value: Any, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def _event_time(kind: str, document: Mapping[str, Any], obj: Mapping[str, Any]) -> dt.datetime:
    """When it happened by Zoom's clock: the participant's time, the meeting's, then event_ts."""
    participant = obj.get("participant")
    if not isinstance(participant, Mapping):
        participant = {}
    candidates: list[Any] = []
    if kind == EventKind.MEETING_STARTED:
        candidates.append(obj.get("start_time"))
    elif kind == EventKind.MEETING_ENDED:
        candidates.append(obj.get("end_time"))
    else:
        field_order = (
            ("leave_time", "date_time", "join_time")
            if kind == EventKind.LEFT
            else (
                "join_time",
                "date_time",
                "leave_time",
            )
        )
        candidates += [participant.get(f) for f in field_order]
    for value in candidates:
        moment = parse_time(value)
        if moment is not None:
            return moment
    ts = document.get("event_ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > 0:
        try:
            return dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
        except (OverflowError, OSError, ValueError):
            pass
    raise ValidationError("The event says nothing about when it happened.", field="event_ts")


def _sole_organisation(session: Session) -> int | None:
    ids = session.scalars(select(Organisation.id).order_by(Organisation.id).limit(2)).all()
    return ids[0] if len(ids) == 1 else None


def _meeting_for(
    session: Session, obj: Mapping[str, Any], at: dt.datetime, now: dt.datetime
) -> ZoomMeeting:
    try:
        zoom_meeting_id = int(obj.get("id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError("The event has no meeting id.", field="id") from None
    zoom_uuid = _text(obj.get("uuid"), 128) or f"meeting-{zoom_meeting_id}-{at:%Y%m%d}"
    meeting = session.scalars(select(ZoomMeeting).where(ZoomMeeting.zoom_uuid == zoom_uuid)).first()
    if meeting is None:
        meeting = ZoomMeeting(
            zoom_uuid=zoom_uuid,
            zoom_meeting_id=zoom_meeting_id,
            first_event_at=at,
            last_event_at=at,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(meeting)
                session.flush()
        except IntegrityError:
            meeting = session.scalars(
                select(ZoomMeeting).where(ZoomMeeting.zoom_uuid == zoom_uuid)
            ).one()
    meeting.topic = meeting.topic or _text(obj.get("topic"), 300)
    meeting.host_zoom_id = meeting.host_zoom_id or _text(obj.get("host_id"), 128)
    meeting.first_event_at = min(meeting.first_event_at, at)
    meeting.last_event_at = max(meeting.last_event_at, at)
    if meeting.class_session_id is None:
        # Every event carries the instance's start_time, so each one can place the meeting;
        # one that arrives before meeting.started does as well as meeting.started itself.
        started = parse_time(obj.get("start_time")) or meeting.started_at or at
        course, cls = match_class(session, zoom_meeting_id, started)
        meeting.course_id = course.id if course is not None else None
        meeting.class_session_id = cls.id if cls is not None else None
        meeting.organisation_id = (
            course.organisation_id if course is not None else _sole_organisation(session)
        )
        meeting.unmatched = cls is None
    return meeting


@dataclass(frozen=True)
class Identity:
    role: Attendee
    family: Family | None = None
    detail: str = ""


def _alternative_hosts(course: Course | None) -> set[str]:
    if course is None:
        return set()
    return {a.strip().lower() for a in course.alternative_hosts.split(";") if a.strip()}


def identify(session: Session, meeting: ZoomMeeting, participant: Mapping[str, Any]) -> Identity:
    """Who a participant is, from Zoom's ids (never from the display name)."""
    ids = {_text(participant.get(k), 128) for k in ("id", "participant_user_id")} - {""}
    if meeting.host_zoom_id and meeting.host_zoom_id in ids:
        return Identity(Attendee.HOST, detail="meeting host")
    registrant_id = _text(participant.get("registrant_id"), 64)
    if registrant_id:
        found = family_for_registrant(session, registrant_id)
        if found is not None and meeting.organisation_id in (None, found.organisation_id):
            return Identity(Attendee.FAMILY, found)
    course = meeting.course
    email = _text(participant.get("email"), 254).strip().lower()
    if email and meeting.organisation_id is not None:
        staff = session.scalars(
            select(User).where(
                User.organisation_id == meeting.organisation_id,
                User.email == email,
                User.active.is_(True),
            )
        ).first()
        if staff is not None:
            if course is not None and staff.id == course.teacher_id:
                return Identity(Attendee.HOST, detail="the course's teacher")
            label = "safeguarding lead" if staff.role == LEAD else staff.role
            return Identity(Attendee.STAFF, detail=f"{label} ({staff.name})")
        if email in _alternative_hosts(course):
            return Identity(Attendee.STAFF, detail="alternative host")
    if registrant_id:
        return Identity(Attendee.GUEST, detail="registrant of no family here")
    return Identity(Attendee.GUEST, detail="no family's link")


@dataclass(frozen=True)
class Recorded:
    event: AttendanceEvent | None
    meeting: ZoomMeeting
    duplicate: bool


def record_event(
    session: Session,
    document: Mapping[str, Any],
    *,
    now: dt.datetime,
    webhook_event_id: int | None = None,
) -> Recorded:
    """Store one meeting or participant event (once), then re-read the meeting's warnings."""
    kind = ZOOM_EVENTS.get(_text(document.get("event"), 100))
    if kind is None:
        raise ValidationError("Not a meeting or participant event.", field="event")
    payload = document.get("payload")
    obj = payload.get("object") if isinstance(payload, Mapping) else None
    if not isinstance(obj, Mapping):
        raise ValidationError("The event has no object.", field="payload")
    participant = obj.get("participant")
    if kind not in (EventKind.MEETING_STARTED, EventKind.MEETING_ENDED) and not isinstance(
        participant, Mapping
    ):
        raise ValidationError("The participant event names no participant.", field="participant")
    at = _event_time(kind, document, obj)
    key = dedupe_key(document)
    meeting = _meeting_for(session, obj, at, now)
    if kind == EventKind.MEETING_STARTED:
        meeting.started_at = parse_time(obj.get("start_time")) or at
    elif kind == EventKind.MEETING_ENDED:
        meeting.ended_at = parse_time(obj.get("end_time")) or at

    existing = session.scalars(
        select(AttendanceEvent).where(AttendanceEvent.dedupe_key == key)
    ).first()
    if existing is not None:
        return Recorded(existing, meeting, duplicate=True)
    event = AttendanceEvent(
        meeting_id=meeting.id,
        dedupe_key=key,
        webhook_event_id=webhook_event_id,
        kind=kind,
        at=at,
        received_at=now,
    )
    if isinstance(participant, Mapping):
        who = identify(session, meeting, participant)
        event.role = who.role
        event.family_id = who.family.id if who.family is not None else None
        event.registrant_id = _text(participant.get("registrant_id"), 64)
        event.participant_uuid = _text(participant.get("participant_uuid"), 64)
        event.zoom_user_id = _text(participant.get("user_id"), 64)
        event.zoom_participant_id = _text(
            participant.get("participant_user_id") or participant.get("id"), 128
        )
        event.display_name = _text(participant.get("user_name"), 200)
        event.email = _text(participant.get("email"), 254).lower()
        reason = _text(participant.get("leave_reason"), 200)
        event.detail = "; ".join(d for d in (who.detail, reason) if d)[:300]
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:
        # The same event, handled at the same moment by another worker.
        found = session.scalars(
            select(AttendanceEvent).where(AttendanceEvent.dedupe_key == key)
        ).one()
        return Recorded(found, meeting, duplicate=True)
    evaluate(session, meeting, now=now)
    return Recorded(event, meeting, duplicate=False)


# --- reading the timeline --------------------------------------------------------------------


def ordered(events: Iterable[AttendanceEvent]) -> list[AttendanceEvent]:
    """By the event's own time; same-instant events in a fixed, meaningful order."""
    return sorted(events, key=lambda e: (e.at, KIND_ORDER.get(e.kind, 99), e.id or 0))


@dataclass
class Person:
    key: str
    role: str
    name: str
    family_id: int | None
    registrant_id: str
    detail: str
    events: list[AttendanceEvent] = field(default_factory=list)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def flagged(self) -> bool:
        return self.role == Attendee.GUEST

    def first(self, kind: str) -> dt.datetime | None:
        return next((e.at for e in self.events if e.kind == kind), None)

    def last(self, kind: str) -> dt.datetime | None:
        found = [e.at for e in self.events if e.kind == kind]
        return found[-1] if found else None


def people(events: Iterable[AttendanceEvent]) -> list[Person]:
    """Everyone who appears in a meeting's events, in order of first appearance."""
    found: dict[str, Person] = {}
    for e in ordered(events):
        if e.kind in (EventKind.MEETING_STARTED, EventKind.MEETING_ENDED):
            continue
        person = found.get(e.person_key)
        if person is None:
            person = found[e.person_key] = Person(
                e.person_key, e.role, e.display_name, e.family_id, e.registrant_id, e.detail
            )
        # One recognised event is enough: a later one without the ids does not demote them.
        if person.role == Attendee.GUEST and e.role != Attendee.GUEST:
            person.role, person.family_id, person.detail = e.role, e.family_id, e.detail
        person.events.append(e)
    return list(found.values())


@dataclass
class Period:
    start: dt.datetime
    end: dt.datetime | None
    children: set[str] = field(default_factory=set)
    staff: set[str] = field(default_factory=set)

    def length(self, now: dt.datetime) -> dt.timedelta:
        return (self.end or now) - self.start


def alone_periods(meeting: ZoomMeeting, events: list[AttendanceEvent]) -> list[Period]:
    """Spans during which exactly one child (anyone not staff) and one staff member were in.

    A guest counts as a child here: nobody has vouched for them as an adult.
    """
    roles = {p.key: p.role for p in people(events)}
    inside: set[str] = set()
    periods: list[Period] = []
    current: Period | None = None
    timeline = ordered(events)
    index = 0
    while index < len(timeline):
        moment = timeline[index].at
        # Apply every event of this instant before judging, so a swap is not a gap.
        while index < len(timeline) and timeline[index].at == moment:
            e = timeline[index]
            if e.kind == EventKind.JOINED:
                inside.add(e.person_key)
            elif e.kind in (EventKind.LEFT, EventKind.WAITING):
                inside.discard(e.person_key)
            elif e.kind == EventKind.MEETING_ENDED:
                inside.clear()
            index += 1
        staff = {k for k in inside if roles.get(k) in STAFF_ROLES}
        children = inside - staff
        alone = len(children) == 1 and len(staff) == 1
        if alone and current is None:
            current = Period(moment, None, set(children), set(staff))
            periods.append(current)
        elif alone and current is not None:
            current.children |= children
            current.staff |= staff
        elif not alone and current is not None:
            current.end = moment
            current = None
    if current is not None and meeting.ended_at is not None:
        current.end = max(meeting.ended_at, current.start)
    return periods


# --- warnings --------------------------------------------------------------------------------


def settings_for(session: Session, organisation_id: int | None) -> EvidenceSettings:
    """The organisation's evidence settings (defaults, unsaved, while it has none)."""
    found = session.get(EvidenceSettings, organisation_id) if organisation_id else None
    if found is not None:
        return found
    return EvidenceSettings(
        organisation_id=organisation_id or 0,
        list_unconfirmed=True,
        one_child_rule=True,
        alone_grace_minutes=2,
        confirm_from_minutes=60,
    )


def _overlaps(w: ClassWarning, period: Period) -> bool:
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return w.period_start <= (period.end or far) and period.start <= (w.period_end or far)


def _names(by_key: dict[str, Person], keys: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "name": by_key[k].name,
            "role": by_key[k].role,
            "family_id": by_key[k].family_id,
            "detail": by_key[k].detail,
        }
        for k in sorted(keys)
        if k in by_key
    ]


def evaluate(
    session: Session, meeting: ZoomMeeting, *, now: dt.datetime, live: bool = False
) -> list[ClassWarning]:
    """Re-read the whole timeline of a meeting and bring its warnings up to date.

    A span still open is measured to the meeting's latest event, or with ``live`` (the job
    that watches running meetings) to ``now``: events of a class delivered late must not make
    a span look hours long before the event that ends it has arrived.

    Safe to run after every event, in any order, and again from the live job: a warning is
    created once per span (and the lead told once), widened as events arrive, closed when the
    span ends, and marked retracted (never deleted) if later events show it did not happen.
    """
    session.flush()
    events = list(
        session.scalars(select(AttendanceEvent).where(AttendanceEvent.meeting_id == meeting.id))
    )
    existing = list(
        session.scalars(
            select(ClassWarning)
            .where(ClassWarning.meeting_id == meeting.id)
            .order_by(ClassWarning.id)
        )
    )
    settings = settings_for(session, meeting.organisation_id)
    touched: list[ClassWarning] = []
    created: list[ClassWarning] = []
    retracted: list[ClassWarning] = []
    by_key = {p.key: p for p in people(events)}
    grace = dt.timedelta(minutes=settings.alone_grace_minutes)
    horizon = now if live else meeting.last_event_at

    alone = [w for w in existing if w.kind == WarningKind.ONE_CHILD_ALONE]
    if settings.one_child_rule:
        matched: list[ClassWarning] = []
        for period in alone_periods(meeting, events):
            if period.length(horizon) < grace:
                # Children arriving or leaving one after another; an open span that is still
                # short is looked at again by the next event or the live job.
                continue
            detail = json.dumps(
                {
                    "children": _names(by_key, period.children),
                    "staff": _names(by_key, period.staff),
                    "minutes": round(period.length(horizon).total_seconds() / 60),
                }
            )
            warning = next(
                (w for w in alone if not any(w is m for m in matched) and _overlaps(w, period)),
                None,
            )
            if warning is None:
                warning = ClassWarning(
                    organisation_id=meeting.organisation_id,
                    course_id=meeting.course_id,
                    class_session_id=meeting.class_session_id,
                    meeting_id=meeting.id,
                    kind=WarningKind.ONE_CHILD_ALONE,
                    period_start=period.start,
                    created_at=now,
                )
                session.add(warning)
                created.append(warning)
            matched.append(warning)
            warning.period_start = period.start
            warning.period_end = period.end
            warning.status = WarningStatus.OPEN if period.end is None else WarningStatus.CLOSED
            warning.detail = detail
            touched.append(warning)
        for w in alone:
            if not any(w is m for m in matched) and w.status != WarningStatus.RETRACTED:
                w.status = WarningStatus.RETRACTED
                touched.append(w)
                retracted.append(w)

    cls = meeting.class_session
    if cls is not None and cls.takes_place:
        end = meeting.ended_at
        live_end = end or horizon
        overran = [w for w in existing if w.kind == WarningKind.OVERRAN]
        if live_end is not None and live_end > cls.ends_at + OVERRUN_GRACE:
            warning = overran[0] if overran else None
            if warning is None:
                warning = ClassWarning(
                    organisation_id=meeting.organisation_id,
                    course_id=meeting.course_id,
                    class_session_id=meeting.class_session_id,
                    meeting_id=meeting.id,
                    kind=WarningKind.OVERRAN,
                    period_start=cls.ends_at,
                    created_at=now,
                )
                session.add(warning)
                created.append(warning)
            warning.period_start = cls.ends_at
            warning.period_end = end
            warning.status = WarningStatus.CLOSED if end is not None else WarningStatus.OPEN
            warning.detail = json.dumps(
                {"minutes_over": round((live_end - cls.ends_at).total_seconds() / 60)}
            )
            touched.append(warning)
        else:
            for w in overran:
                if end is not None and w.status != WarningStatus.RETRACTED:
                    w.status = WarningStatus.RETRACTED
                    touched.append(w)
    session.flush()
    for warning in created:
        _tell(session, meeting, warning, now=now)
    for warning in retracted:
        # The lead was told; the trail says the later events showed otherwise.
        audit(
            session,
            f"evidence.{warning.kind}_retracted",
            organisation_id=meeting.organisation_id,
            subject=("class_warning", warning.id),
            course_id=meeting.course_id,
            class_session_id=meeting.class_session_id,
            notified=warning.notified_at is not None,
        )
    return touched


def _lead_recipients(session: Session, organisation_id: int | None) -> list[tuple[str, str]]:
    query = select(User).where(User.role == LEAD, User.active.is_(True)).order_by(User.id)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    found = [(u.email, u.name) for u in session.scalars(query)]
    if not found and organisation_id is not None:
        org = session.get(Organisation, organisation_id)
        if org is not None and org.safeguarding_contact_email:
            found.append((org.safeguarding_contact_email, org.safeguarding_contact_name))
    return found


def _tell(
    session: Session, meeting: ZoomMeeting, warning: ClassWarning, *, now: dt.datetime
) -> None:
    """Record a new warning on the audit trail; tell the lead of a child alone (by mail)."""
    audit(
        session,
        f"evidence.{warning.kind}",
        organisation_id=meeting.organisation_id,
        subject=("class_warning", warning.id),
        course_id=meeting.course_id,
        class_session_id=meeting.class_session_id,
        zoom_meeting_id=meeting.zoom_meeting_id,
        period_start=warning.period_start.isoformat(),
        family_ids=[c.get("family_id") for c in warning.details.get("children", [])],
    )
    if warning.kind != WarningKind.ONE_CHILD_ALONE:
        return
    course = meeting.course
    cls = meeting.class_session
    when = (
        local_time(course, warning.period_start).strftime("%A %-d %B %Y, %H:%M")
        if course is not None
        else warning.period_start.strftime("%Y-%m-%d %H:%M UTC")
    )
    title = course.title if course is not None else f"Zoom meeting {meeting.zoom_meeting_id}"
    children = ", ".join(c["name"] for c in warning.details.get("children", [])) or "one child"
    link = ""
    if course is not None and cls is not None:
        link = f"{base_url()}/courses/{course.id}/classes/{cls.id}/record"
    for email, name in _lead_recipients(session, meeting.organisation_id):
        mail.send(
            session,
            kind="evidence.one_child_alone",
            to_address=email,
            to_name=name,
            organisation_id=meeting.organisation_id,
            title=title,
            when=when,
            children=children,
            link=link,
        )
    warning.notified_at = now
    session.flush()


def live_meetings(session: Session, now: dt.datetime) -> list[int]:
    """Meetings that may still be running (no meeting.ended, recent events)."""
    return list(
        session.scalars(
            select(ZoomMeeting.id).where(
                ZoomMeeting.ended_at.is_(None),
                ZoomMeeting.last_event_at > now - LIVE_HORIZON,
            )
        )
    )


def meetings_of_class(session: Session, cls: ClassSession) -> list[ZoomMeeting]:
    return list(
        session.scalars(
            select(ZoomMeeting)
            .where(ZoomMeeting.class_session_id == cls.id)
            .order_by(ZoomMeeting.first_event_at)
        )
    )
