"""The organisation's evidence settings, adult-present confirmations, and the class record.

Who sees what on a class record:

* the course's teacher: their own classes, without the recordings (nor holds) and with only
  the concerns they raised themselves (a concern may be about them);
* the safeguarding lead: every class of the organisation, with recordings, files and their
  SHA-256, concerns and holds, and can export the signed evidence pack;
* the admin: every class of the organisation without recordings, concerns or holds (running
  the organisation is not safeguarding);
* parents: none of it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..access import ADMIN, LEAD, TEACHER
from ..accounts.models import User
from ..audit.services import by_parent
from ..audit.services import record as audit
from ..courses.access import MAX_ID
from ..courses.models import ClassSession, ClassStatus, Course
from ..courses.timetable import local_time
from ..errors import Forbidden, NotFound, ValidationError
from ..families import admit
from ..families.family_sessions import FamilyPrincipal
from ..families.models import Family, FamilyContact
from ..families.people import display_name
from ..recordings.models import Concern, Hold, Recording
from . import attendance
from .models import (
    AdultConfirmation,
    Attendee,
    ClassWarning,
    EvidenceSettings,
    WarningStatus,
    ZoomMeeting,
)

settings_for = attendance.settings_for


def update_settings(
    session: Session,
    actor: User,
    *,
    list_unconfirmed: bool,
    one_child_rule: bool,
    alone_grace_minutes: int,
    confirm_from_minutes: int,
    now: dt.datetime,
) -> EvidenceSettings:
    if actor.role != ADMIN:
        raise Forbidden("Only an admin changes the organisation's settings.")
    if not 0 <= alone_grace_minutes <= 120:
        raise ValidationError(
            "Give a number of minutes from 0 to 120.", field="alone_grace_minutes"
        )
    if not 5 <= confirm_from_minutes <= 1440:
        raise ValidationError(
            "Give a number of minutes from 5 to 1440 (a day).", field="confirm_from_minutes"
        )
    row = session.get(EvidenceSettings, actor.organisation_id)
    if row is None:
        row = EvidenceSettings(organisation_id=actor.organisation_id)
        session.add(row)
    before = {
        "list_unconfirmed": row.list_unconfirmed,
        "one_child_rule": row.one_child_rule,
        "alone_grace_minutes": row.alone_grace_minutes,
        "confirm_from_minutes": row.confirm_from_minutes,
    }
    row.list_unconfirmed = list_unconfirmed
    row.one_child_rule = one_child_rule
    row.alone_grace_minutes = alone_grace_minutes
    row.confirm_from_minutes = confirm_from_minutes
    row.updated_at = now
    row.updated_by_id = actor.id
    session.flush()
    after = {k: getattr(row, k) for k in before}
    audit(
        session,
        "evidence.settings_changed",
        actor=actor,
        subject=("organisation", actor.organisation_id),
        before=before,
        after=after,
    )
    return row


# --- adult present ---------------------------------------------------------------------------


def confirm_window(
    cls: ClassSession, settings: EvidenceSettings
) -> tuple[dt.datetime, dt.datetime]:
    """From a while before the class starts until it ends."""
    return cls.starts_at - dt.timedelta(minutes=settings.confirm_from_minutes), cls.ends_at


def confirmations_for(
    session: Session, class_ids: list[int], family_id: int | None = None
) -> list[AdultConfirmation]:
    if not class_ids:
        return []
    query = select(AdultConfirmation).where(AdultConfirmation.class_session_id.in_(class_ids))
    if family_id is not None:
        query = query.where(AdultConfirmation.family_id == family_id)
    return list(session.scalars(query.order_by(AdultConfirmation.confirmed_at)))


@dataclass(frozen=True)
class Confirmed:
    confirmation: AdultConfirmation
    created: bool


def confirm_adult(
    session: Session,
    principal: FamilyPrincipal,
    *,
    class_id: int,
    now: dt.datetime,
    ip: str = "",
) -> Confirmed:
    """A parent says an adult is in the room for this class (kept with the time and parent)."""
    family = principal.family
    cls = session.get(ClassSession, class_id) if 0 < class_id <= MAX_ID else None
    if cls is None or cls.course_id != family.course_id:
        raise NotFound("No such class.")
    if not family.enrolled:
        raise ValidationError("Your child is no longer enrolled on this course.")
    if not cls.takes_place:
        raise ValidationError("This class is cancelled.")
    settings = settings_for(session, family.organisation_id)
    opens, closes = confirm_window(cls, settings)
    existing = session.scalars(
        select(AdultConfirmation).where(
            AdultConfirmation.family_id == family.id,
            AdultConfirmation.class_session_id == cls.id,
        )
    ).first()
    if existing is not None:
        return Confirmed(existing, created=False)
    if now < opens:
        local = local_time(cls.course, opens)
        raise ValidationError(
            f"You can confirm from {local:%H:%M} on {local:%A %-d %B}, shortly before the class."
        )
    if now >= closes:
        raise ValidationError("This class has ended.")
    row = AdultConfirmation(
        family_id=family.id,
        class_session_id=cls.id,
        contact_id=principal.contact.id,
        confirmed_at=now,
        ip=ip[:64],
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # The other parent (or a second click) was a moment quicker.
        found = session.scalars(
            select(AdultConfirmation).where(
                AdultConfirmation.family_id == family.id,
                AdultConfirmation.class_session_id == cls.id,
            )
        ).one()
        return Confirmed(found, created=False)
    by_parent(
        session,
        "evidence.adult_confirmed",
        family=family,
        contact_id=principal.contact.id,
        subject=("class_session", cls.id),
    )
    return Confirmed(row, created=True)


@dataclass(frozen=True)
class AdultPanel:
    """What the family page shows in a class's row."""

    class_id: int
    confirmed_at: dt.datetime | None
    confirmed_by: str
    can_confirm: bool
    opens_at: dt.datetime


def family_panel_values(
    session: Session,
    principal: FamilyPrincipal,
    classes: list[ClassSession],
    now: dt.datetime,
) -> dict[int, AdultPanel]:
    """The class about to start (or running) gets the button; confirmed classes say so."""
    family = principal.family
    settings = settings_for(session, family.organisation_id)
    done = {
        c.class_session_id: c
        for c in confirmations_for(session, [c.id for c in classes], family.id)
    }
    # The parents' names are only shown beside a confirmation: no query for them without one.
    names = {c.id: c.name for c in family.contacts} if done else {}
    found: dict[int, AdultPanel] = {}
    for cls in classes:
        opens, closes = confirm_window(cls, settings)
        confirmation = done.get(cls.id)
        open_now = family.enrolled and cls.takes_place and opens <= now < closes
        if confirmation is None and not open_now:
            continue
        found[cls.id] = AdultPanel(
            class_id=cls.id,
            confirmed_at=confirmation.confirmed_at if confirmation else None,
            confirmed_by=names.get(confirmation.contact_id, "") if confirmation else "",
            can_confirm=open_now and confirmation is None,
            opens_at=opens,
        )
    return found


NOT_CONFIRMED = "not confirmed"
DO_NOT_ADMIT = "not confirmed — do not admit"


def admit_column_values(
    session: Session, cls: ClassSession, family_rows: list[Family]
) -> dict[int, str]:
    """The admit list's "Adult present" column."""
    settings = settings_for(session, cls.course.organisation_id)
    done = {c.family_id: c for c in confirmations_for(session, [cls.id])}
    contact_ids = [c.contact_id for c in done.values()]
    names = (
        {
            c.id: c.name
            for c in session.scalars(select(FamilyContact).where(FamilyContact.id.in_(contact_ids)))
        }
        if contact_ids
        else {}
    )
    values = {}
    for fam in family_rows:
        c = done.get(fam.id)
        if c is not None:
            when = local_time(cls.course, c.confirmed_at)
            values[fam.id] = f"✓ confirmed {when:%H:%M} by {names.get(c.contact_id, 'a parent')}"
        else:
            values[fam.id] = NOT_CONFIRMED if settings.list_unconfirmed else DO_NOT_ADMIT
    return values


# --- the class record ------------------------------------------------------------------------


@dataclass
class MeetingView:
    meeting: ZoomMeeting
    people: list[attendance.Person]
    timeline: list[Any]

    @property
    def staff(self) -> list[attendance.Person]:
        return [p for p in self.people if p.is_staff]

    @property
    def children(self) -> list[attendance.Person]:
        return [p for p in self.people if p.role == Attendee.FAMILY]

    @property
    def guests(self) -> list[attendance.Person]:
        return [p for p in self.people if p.role == Attendee.GUEST]


@dataclass
class ClassRecord:
    viewer: User
    course: Course
    cls: ClassSession
    now: dt.datetime
    meetings: list[MeetingView]
    expected: list[admit.AdmitRow]
    names: dict[int, str]
    contact_names: dict[int, str]
    audio_only_events: list[Any]
    confirmations: list[AdultConfirmation]
    warnings: list[ClassWarning]
    concerns: list[Concern]
    show_recordings: bool
    recordings: list[Recording] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)

    @property
    def never_started(self) -> bool:
        """A class that should have run (it has ended) with no sign of its meeting in Zoom."""
        return self.cls.takes_place and self.cls.ends_at <= self.now and not self.meetings

    @property
    def active_warnings(self) -> list[ClassWarning]:
        return [w for w in self.warnings if w.status != WarningStatus.RETRACTED]

    def local(self, moment: dt.datetime | None) -> dt.datetime | None:
        return local_time(self.course, moment) if moment is not None else None


def get_class(session: Session, actor: User, course_id: int, class_id: int) -> ClassSession:
    """The class if the actor may see its record (a teacher: only their own courses)."""
    if actor.role not in (TEACHER, LEAD, ADMIN):
        raise NotFound("No such class.")
    return admit.get_class_for(session, actor, course_id, class_id)


def _timeline(meeting: ZoomMeeting) -> list[Any]:
    return attendance.ordered(meeting.events)


def class_record(
    session: Session, actor: User, course_id: int, class_id: int, *, now: dt.datetime
) -> ClassRecord:
    cls = get_class(session, actor, course_id, class_id)
    course = cls.course
    meetings = [
        MeetingView(m, attendance.people(m.events), _timeline(m))
        for m in attendance.meetings_of_class(session, cls)
    ]
    expected = admit.admit_list(session, cls, now=now)
    names: dict[int, str] = {r.family.id: r.child_name for r in expected}
    family_ids = {p.family_id for mv in meetings for p in mv.people if p.family_id}
    missing = family_ids - set(names)
    if missing:
        for fam in session.scalars(select(Family).where(Family.id.in_(missing))):
            names[fam.id] = display_name(fam)
    audio_events = admit.audio_only_events_for_class(session, cls)
    confirmations = confirmations_for(session, [cls.id])
    contact_ids = {e.contact_id for e in audio_events} | {c.contact_id for c in confirmations}
    contact_names = (
        {
            c.id: c.name
            for c in session.scalars(select(FamilyContact).where(FamilyContact.id.in_(contact_ids)))
        }
        if contact_ids
        else {}
    )
    warnings = list(
        session.scalars(
            select(ClassWarning)
            .where(ClassWarning.class_session_id == cls.id)
            .order_by(ClassWarning.period_start, ClassWarning.id)
        )
    )
    concern_query = select(Concern).where(Concern.class_session_id == cls.id)
    if actor.role == TEACHER:
        concern_query = concern_query.where(Concern.raised_by_id == actor.id)
    concerns = (
        [] if actor.role == ADMIN else list(session.scalars(concern_query.order_by(Concern.id)))
    )
    record = ClassRecord(
        viewer=actor,
        course=course,
        cls=cls,
        now=now,
        meetings=meetings,
        expected=expected,
        names=names,
        contact_names=contact_names,
        audio_only_events=audio_events,
        confirmations=confirmations,
        warnings=warnings,
        concerns=concerns,
        show_recordings=actor.role == LEAD,
    )
    if actor.role == LEAD:
        record.recordings = recordings_of_class(session, cls)
        record.holds = list(
            session.scalars(
                select(Hold)
                .where(
                    (Hold.class_session_id == cls.id)
                    | Hold.recording_id.in_([r.id for r in record.recordings])
                )
                .order_by(Hold.placed_at)
            )
        )
    return record


def recordings_of_class(session: Session, cls: ClassSession) -> list[Recording]:
    return list(
        session.scalars(
            select(Recording)
            .where(Recording.class_session_id == cls.id)
            .order_by(Recording.started_at)
        )
    )


# --- the lead's overview ---------------------------------------------------------------------


def _require_lead(actor: User) -> None:
    if actor.role != LEAD:
        raise Forbidden("Only the safeguarding lead sees this.")


def unmatched_meetings(session: Session, actor: User, limit: int = 100) -> list[ZoomMeeting]:
    """Meetings whose class is unknown: kept and listed, never dropped."""
    _require_lead(actor)
    return list(
        session.scalars(
            select(ZoomMeeting)
            .where(
                ZoomMeeting.unmatched.is_(True),
                (ZoomMeeting.organisation_id == actor.organisation_id)
                | ZoomMeeting.organisation_id.is_(None),
            )
            .order_by(ZoomMeeting.first_event_at.desc())
            .limit(limit)
        )
    )


def get_meeting(session: Session, actor: User, meeting_id: int) -> MeetingView:
    _require_lead(actor)
    meeting = session.get(ZoomMeeting, meeting_id) if 0 < meeting_id <= MAX_ID else None
    if meeting is None or meeting.organisation_id not in (None, actor.organisation_id):
        raise NotFound("No such meeting.")
    return MeetingView(meeting, attendance.people(meeting.events), _timeline(meeting))


def recent_warnings(session: Session, actor: User, limit: int = 100) -> list[ClassWarning]:
    _require_lead(actor)
    return list(
        session.scalars(
            select(ClassWarning)
            .where(
                (ClassWarning.organisation_id == actor.organisation_id)
                | ClassWarning.organisation_id.is_(None),
                ClassWarning.status != WarningStatus.RETRACTED,
            )
            .order_by(ClassWarning.period_start.desc())
            .limit(limit)
        )
    )


def classes_never_started(
    session: Session, actor: User, *, now: dt.datetime, days: int = 30
) -> list[ClassSession]:
    """Classes that should have taken place lately but of which Zoom told nothing."""
    _require_lead(actor)
    with_meeting = select(ZoomMeeting.class_session_id).where(
        ZoomMeeting.class_session_id.is_not(None)
    )
    found = session.scalars(
        select(ClassSession)
        .join(Course, Course.id == ClassSession.course_id)
        .where(
            Course.organisation_id == actor.organisation_id,
            Course.zoom_meeting_id.is_not(None),
            ClassSession.status != ClassStatus.CANCELLED,
            ClassSession.starts_at >= now - dt.timedelta(days=days),
            ClassSession.starts_at <= now,
            ClassSession.id.not_in(with_meeting),
        )
        .order_by(ClassSession.starts_at.desc())
    )
    return [c for c in found if c.ends_at <= now]
