"""Enrolling families: one at a time or from a CSV file, saved "pending in Zoom" (the
registrant work in :mod:`companion.families.registrants` registers them after the commit)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from ..accounts.models import User
from ..audit.services import record as audit
from ..courses.models import Course
from ..errors import Conflict
from . import csv_import
from .access import course_to_change, families_of
from .errors import ImportRejected
from .models import Family, FamilyContact, FamilyStatus, RegistrantState
from .people import ContactInput, child_names, clean_contacts, display_name, name_key
from .registrants import meeting_in_zoom, waiting_for_meeting


def _check_open(course: Course, now: dt.datetime) -> None:
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; families can no longer be enrolled.")
    if course.ends_at is not None and course.ends_at <= now:
        raise Conflict("The last class of this course is over; families can no longer be enrolled.")


def _enrolled_keys(session: Session, course_id: int) -> dict[tuple[str, str], Family]:
    return {
        name_key(f.child_first_name, f.child_last_name): f
        for f in families_of(session, course_id, enrolled_only=True)
    }


def _new_family(
    session: Session,
    course: Course,
    first: str,
    last: str,
    contacts: Sequence[ContactInput],
    *,
    actor: User,
    now: dt.datetime,
) -> Family:
    family = Family(
        organisation_id=course.organisation_id,
        course_id=course.id,
        child_first_name=first,
        child_last_name=last,
        status=FamilyStatus.ENROLLED,
        zoom_ref="f" + secrets.token_hex(10),
        # "Pending in Zoom" and due now: the registrant is added after this is committed.
        zoom_state=RegistrantState.PENDING,
        zoom_error="" if meeting_in_zoom(course) else waiting_for_meeting(course),
        zoom_attempts=0,
        zoom_next_attempt_at=None,
        created_at=now,
        created_by_id=actor.id,
    )
    family.course = course
    family.organisation = course.organisation
    session.add(family)
    for position, person in enumerate(contacts, start=1):
        family.contacts.append(
            FamilyContact(
                position=position,
                name=person.name,
                email=person.email,
                link_owed_since=now,
                created_at=now,
            )
        )
    session.flush()
    return family


def enrol(
    session: Session,
    *,
    actor: User,
    course_id: int,
    child_first_name: Any,
    child_last_name: Any,
    contacts: Sequence[ContactInput | None],
    now: dt.datetime,
) -> Family:
    """Enrol one child with one or two parents/carers; the family is "pending in Zoom".

    Bad input raises before anything is saved. Zoom is not called here: the caller commits and
    then runs the registrant work (:func:`companion.families.jobs.zoom_now`, or the worker), so
    the family is kept whatever Zoom does. Each parent's link goes out once the family is
    registered and the course is safe.
    """
    course = course_to_change(session, actor, course_id)
    _check_open(course, now)
    first, last = child_names(course.organisation, child_first_name, child_last_name)
    people = clean_contacts(contacts)
    twin = _enrolled_keys(session, course.id).get(name_key(first, last))
    if twin is not None:
        raise Conflict(
            f"{display_name(twin)} is already enrolled on this course. If this is another child "
            "with the same name, add something to tell them apart to the first name (the teacher "
            "admits children by name).",
            code="duplicate",
            field="child_first_name",
        )
    family = _new_family(session, course, first, last, people, actor=actor, now=now)
    audit(
        session,
        "family.enrolled",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("family", family.id),
        course_id=course.id,
        family_id=family.id,
        contacts=len(people),
    )
    return family


def import_families(
    session: Session,
    *,
    actor: User,
    course_id: int,
    data: bytes,
    now: dt.datetime,
) -> list[Family]:
    """Enrol every family of a CSV file, or none: any problem rejects the whole file.

    The families are registered in Zoom by the worker once this is committed (one call each; a
    file can hold hundreds, far too many to wait for in one request).
    """
    course = course_to_change(session, actor, course_id)
    _check_open(course, now)
    parsed = csv_import.parse(
        data, org=course.organisation, existing=set(_enrolled_keys(session, course.id))
    )
    if parsed.problems:
        raise ImportRejected(
            f"Nothing was imported: the file has {len(parsed.problems)} problem(s).",
            parsed.problems,
        )
    families = [
        _new_family(session, course, row.first, row.last, row.contacts, actor=actor, now=now)
        for row in parsed.rows
    ]
    audit(
        session,
        "family.imported",
        actor=actor,
        organisation_id=course.organisation_id,
        subject=("course", course.id),
        course_id=course.id,
        families=len(families),
        family_ids=[f.id for f in families],
    )
    return families
