"""The family page a parent's link opens: every class, the join details once the agreement is
accepted and the course is safe, audio-only, and the calendar file."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from ..courses import passcodes, timetable, verification
from ..courses.models import ClassSession, Course, ZoomState
from ..orgs.models import Organisation
from . import agreement, ics
from .audio_only import audio_only_state, cutoff_of, events_by_family
from .extensions import ClassPanel, family_class_panels
from .family_sessions import FamilyPrincipal
from .links import base_url, course_over
from .models import AgreementAcceptance, AgreementVersion, Family, FamilyContact
from .people import display_name
from .registrants import join_url_of


@dataclass(frozen=True)
class FamilyClass:
    cls: ClassSession
    number: int
    start: dt.datetime
    end: dt.datetime
    original: dt.datetime | None
    audio_only: bool
    cutoff: dt.datetime
    changeable: bool
    past: bool


@dataclass
class FamilyPage:
    family: Family
    contact: FamilyContact
    course: Course
    organisation: Organisation
    child_name: str
    classes: list[FamilyClass]
    withdrawn: bool
    over: bool
    cancelled: bool
    paused: bool
    agreement: AgreementVersion
    accepted: AgreementAcceptance | None
    join_url: str | None
    passcode: str | None
    join_problem: str
    remaining_open: int
    remaining_audio_only: int
    # What other packages show in each class's row: (panel, {class_id: value}).
    panels: list[tuple[ClassPanel, dict[int, Any]]] = field(default_factory=list)

    @property
    def shows_join_details(self) -> bool:
        return self.join_url is not None


def family_page(session: Session, principal: FamilyPrincipal, *, now: dt.datetime) -> FamilyPage:
    family = principal.family
    contact = principal.contact
    course = family.course
    org = family.organisation
    version = agreement.current(session, org, now=now)
    accepted = agreement.acceptance(session, contact.id, version.id)
    events = events_by_family(session, [family.id])[family.id]
    withdrawn = not family.enrolled
    over = course_over(course, now)
    rows = []
    number = 0
    for cls in timetable.class_sessions(course):
        if cls.takes_place:
            number += 1
        cutoff = cutoff_of(org, cls)
        rows.append(
            FamilyClass(
                cls=cls,
                number=number if cls.takes_place else 0,
                start=timetable.local_time(course, cls.starts_at),
                end=timetable.local_time(course, cls.ends_at),
                original=timetable.local_time(course, cls.original_starts_at)
                if cls.original_starts_at
                else None,
                audio_only=cls.takes_place and audio_only_state(events, cls, cutoff),
                cutoff=timetable.local_time(course, cutoff),
                changeable=cls.takes_place and not withdrawn and not over and now < cutoff,
                past=cls.ends_at <= now,
            )
        )
    open_rows = [r for r in rows if r.changeable]
    paused = not verification.course_is_safe(course)
    join_url = passcode = None
    join_problem = ""
    if withdrawn:
        join_problem = "withdrawn"
    elif over:
        join_problem = "over"
    elif accepted is None:
        join_problem = "agreement"
    elif paused:
        join_problem = "paused"
    else:
        join_url = join_url_of(family)
        if join_url is None:
            join_problem = "pending"
        else:
            try:
                passcode = passcodes.passcode_of(course)
            except Exception:  # unreadable after a key change: Zoom's link still admits them
                passcode = None
    return FamilyPage(
        family=family,
        contact=contact,
        course=course,
        organisation=org,
        child_name=display_name(family),
        classes=rows,
        withdrawn=withdrawn,
        over=over,
        cancelled=course.zoom_state == ZoomState.CANCELLED,
        paused=paused,
        agreement=version,
        accepted=accepted,
        join_url=join_url,
        passcode=passcode,
        join_problem=join_problem,
        remaining_open=len(open_rows),
        remaining_audio_only=sum(1 for r in open_rows if r.audio_only),
        panels=[
            (panel, panel.values(session, principal, [r.cls for r in rows], now))
            for panel in family_class_panels()
        ],
    )


def calendar_file(session: Session, principal: FamilyPrincipal, *, now: dt.datetime) -> bytes:
    page = family_page(session, principal, now=now)
    host = urlparse(base_url()).hostname or "companion"
    return ics.calendar(
        page.course,
        [row.cls for row in page.classes],
        family=page.family,
        child_name=page.child_name,
        join_url=page.join_url,
        passcode=page.passcode,
        family_page_url=f"{base_url()}/f/",
        uid_domain=host,
        now=now,
    )
