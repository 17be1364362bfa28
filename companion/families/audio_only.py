"""Audio-only requests: a parent asks for a class (or every remaining class) to be joined with
the camera off, until the organisation's cut-off before the class.

Requests are append-only events; the latest event that applies to a class decides."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import mail
from ..audit.services import by_parent
from ..courses import timetable
from ..courses.models import ClassSession, Course
from ..errors import Conflict, NotFound, ValidationError
from ..orgs.models import Organisation
from .access import MAX_ID
from .family_sessions import FamilyPrincipal
from .links import course_over
from .models import AudioOnlyEvent, ClassSummary, Family
from .people import display_name
from .roster import admit_url, expected_families, is_expected


def cutoff_of(org: Organisation, cls: ClassSession) -> dt.datetime:
    """Until when a parent may ask for (or withdraw) audio-only for this class."""
    return cls.starts_at - dt.timedelta(minutes=org.audio_only_cutoff_minutes or 0)


def events_by_family(
    session: Session, family_ids: Iterable[int]
) -> dict[int, list[AudioOnlyEvent]]:
    """Family id -> that family's audio-only events, in the order made."""
    ids = list(family_ids)
    found: dict[int, list[AudioOnlyEvent]] = {i: [] for i in ids}
    if not ids:
        return found
    for event in session.scalars(
        select(AudioOnlyEvent)
        .where(AudioOnlyEvent.family_id.in_(ids))
        .order_by(AudioOnlyEvent.at, AudioOnlyEvent.id)
    ):
        found[event.family_id].append(event)
    return found


def audio_only_state(
    events: Sequence[AudioOnlyEvent], cls: ClassSession, cutoff: dt.datetime
) -> bool:
    """Whether the family asked for audio-only for this class: the latest event for the class
    itself, or for "all remaining classes" made before the class's cut-off, decides."""
    state = False
    for event in events:
        if event.class_id == cls.id or (event.class_id is None and event.at < cutoff):
            state = event.action == "request"
    return state


def audio_only_for_class(session: Session, cls: ClassSession) -> dict[int, bool]:
    """Family id -> audio-only, for the families expected in this class."""
    families = expected_families(session, cls)
    cutoff = cutoff_of(cls.course.organisation, cls)
    events = events_by_family(session, [f.id for f in families])
    return {f.id: audio_only_state(events[f.id], cls, cutoff) for f in families}


def audio_only_by_class(
    session: Session, course: Course, families: Sequence[Family], classes: Sequence[ClassSession]
) -> dict[int, dict[int, bool]]:
    """Class id -> {family id -> audio-only} for the families expected in each class, as
    :func:`audio_only_for_class` gives, for many classes of one course: ``families`` are all the
    course's families (already loaded); their requests are read once, not once per class."""
    org = course.organisation
    events = events_by_family(session, [f.id for f in families]) if classes else {}
    # Plain values read once: the loop below runs for every class and family.
    facts = [(f.id, f.course_id, f.created_at, f.withdrawn_at, events[f.id]) for f in families]
    found = {}
    for cls in classes:
        cutoff = cutoff_of(org, cls)
        starts, ends = cls.starts_at, cls.ends_at
        found[cls.id] = {
            family_id: audio_only_state(family_events, cls, cutoff)
            for family_id, course_id, created, withdrawn, family_events in facts
            if course_id == cls.course_id and is_expected(created, withdrawn, starts, ends)
        }
    return found


@dataclass(frozen=True)
class AudioOnlyResult:
    changed: bool
    message: str


def _when(course: Course, at: dt.datetime) -> str:
    local = timetable.local_time(course, at)
    return f"{local:%A %-d %B} at {local:%H:%M}"


def _class_of(course: Course, class_id: int) -> ClassSession:
    if not 0 < class_id <= MAX_ID:
        raise NotFound("No such class on your course.")
    for cls in course.classes:
        if cls.id == class_id:
            return cls
    # A class of another course is "not found" too, whoever it belongs to.
    raise NotFound("No such class on your course.")


def _too_late(course: Course, org: Organisation, cls: ClassSession, now: dt.datetime) -> str:
    if now >= cls.starts_at:
        return (
            f"The class on {_when(course, cls.starts_at)} has already started, so audio-only can "
            "no longer be changed for it. Please tell the teacher directly."
        )
    return (
        f"Too late: audio-only for the class on {_when(course, cls.starts_at)} had to be asked for "
        f"by {timetable.local_time(course, cutoff_of(org, cls)):%H:%M}. Please tell the teacher "
        "directly."
    )


def request_audio_only(
    session: Session,
    principal: FamilyPrincipal,
    *,
    class_id: int | None,
    action: str,
    now: dt.datetime,
) -> AudioOnlyResult:
    """A parent asks for audio-only (``action="request"``) or withdraws that (``"withdraw"``),
    for one class or (``class_id=None``) every remaining class whose cut-off has not passed.

    Asking twice changes nothing and says so. After the cut-off the request is refused.
    """
    if action not in ("request", "withdraw"):
        raise ValidationError("Choose to ask for audio-only or to withdraw the request.")
    family = principal.family
    # One request at a time per family, so a double click cannot write two events.
    session.refresh(family, with_for_update=True)
    course = family.course
    org = family.organisation
    child = family.child_first_name
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} has been withdrawn from this course.")
    if course_over(course, now):
        raise Conflict("This course is over; there are no classes left to change.")
    want = action == "request"
    events = events_by_family(session, [family.id])[family.id]
    if class_id is not None:
        cls = _class_of(course, class_id)
        if not cls.takes_place:
            raise Conflict(f"The class on {_when(course, cls.starts_at)} is cancelled.")
        cutoff = cutoff_of(org, cls)
        if now >= cutoff:
            raise Conflict(_too_late(course, org, cls, now))
        when = _when(course, cls.starts_at)
        if audio_only_state(events, cls, cutoff) == want:
            return AudioOnlyResult(
                False,
                f"You had already asked for this: {child} joins the class on {when} "
                + ("by audio only." if want else "with video as usual.")
                + " Nothing changed.",
            )
        touched = [cls]
        message = (
            f"Done: {child} will join the class on {when} by audio only (camera off). "
            "The teacher can see this."
            if want
            else f"Done: {child} will join the class on {when} with video as usual."
        )
    else:
        touched = [c for c in timetable.upcoming_classes(course, now) if now < cutoff_of(org, c)]
        if not touched:
            raise Conflict(
                "No class is left that can still be changed: the cut-off has passed for every "
                "remaining class. Please tell the teacher directly."
            )
        if all(audio_only_state(events, c, cutoff_of(org, c)) == want for c in touched):
            return AudioOnlyResult(
                False,
                f"You had already asked for this: {child} joins every remaining class "
                + ("by audio only." if want else "with video.")
                + " Nothing changed.",
            )
        message = (
            f"Done: {child} will join all {len(touched)} remaining class(es) by audio only "
            "(camera off)."
            if want
            else f"Done: {child} will join the remaining classes with video as usual."
        )
    event = AudioOnlyEvent(
        family_id=family.id,
        contact_id=principal.contact.id,
        class_id=class_id,
        action=action,
        at=now,
    )
    session.add(event)
    session.flush()
    by_parent(
        session,
        "family.audio_only_requested" if want else "family.audio_only_withdrawn",
        family=family,
        contact_id=principal.contact.id,
        subject=("family", family.id),
        class_id=class_id,
        scope="class" if class_id is not None else "remaining",
    )
    _tell_teacher_of_late_change(session, family, touched, want, now=now)
    return AudioOnlyResult(True, message)


def _tell_teacher_of_late_change(
    session: Session,
    family: Family,
    classes: Sequence[ClassSession],
    want: bool,
    *,
    now: dt.datetime,
) -> None:
    """A change after the class's summary went out is mailed to the teacher straight away."""
    ids = [c.id for c in classes if c.starts_at > now]
    if not ids:
        return
    summarised = set(
        session.scalars(select(ClassSummary.class_id).where(ClassSummary.class_id.in_(ids)))
    )
    if not summarised:
        return
    course = family.course
    teacher = course.teacher
    for cls in classes:
        if cls.id not in summarised:
            continue
        mail.send(
            session,
            kind="family.audio_only_change",
            to_address=teacher.email,
            to_name=teacher.name,
            organisation_id=course.organisation_id,
            course=course,
            when=_when(course, cls.starts_at),
            child=display_name(family),
            audio_only=want,
            admit_url=admit_url(course, cls),
        )
