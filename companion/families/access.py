"""Who may see and change a course's families, and the look-ups that check it: what a user
may not see is "not found"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from .. import policy
from ..accounts.models import User
from ..courses import access as course_access
from ..courses.models import ClassSession, Course
from ..errors import Forbidden, NotFound
from .models import Family, FamilyContact, FamilyStatus, RegistrantState
from .people import display_name

MAX_ID = course_access.MAX_ID


def get_course(session: Session, user: User, course_id: int) -> Course:
    """The course if the user may see it (a teacher: only their own), else 404."""
    return course_access.get_course(session, user, course_id)


def course_to_change(session: Session, user: User, course_id: int) -> Course:
    course = get_course(session, user, course_id)
    if not policy.may_change_course(user, course):
        raise Forbidden("Only the course's teacher or an admin can enrol or withdraw families.")
    return course


def get_family(session: Session, user: User, course_id: int, family_id: int) -> Family:
    """The family if it is on a course the user may see; otherwise 404."""
    course = get_course(session, user, course_id)
    family = session.get(Family, family_id) if 0 < family_id <= MAX_ID else None
    if family is None or family.course_id != course.id:
        raise NotFound("No such family on this course.")
    # The course just read is the family's: without this ``family.course`` reads it again.
    set_committed_value(family, "course", course)
    return family


def _on_visible_course(session: Session, user: User, model: Any, object_id: int) -> Any:
    """The object (with a ``course_id``) if its course is one the user may see, else None."""
    obj = session.get(model, object_id) if 0 < object_id <= MAX_ID else None
    if obj is None:
        return None
    try:
        get_course(session, user, obj.course_id)
    except NotFound:
        return None
    return obj


def find_family(session: Session, user: User, family_id: int) -> Family:
    """A family by its id alone, if it is on a course the user may see; otherwise 404."""
    family = _on_visible_course(session, user, Family, family_id)
    if family is None:
        raise NotFound("No such family.")
    return family


def find_class(session: Session, user: User, class_id: int) -> ClassSession:
    """A class by its id alone, if its course is one the user may see; otherwise 404."""
    cls = _on_visible_course(session, user, ClassSession, class_id)
    if cls is None:
        raise NotFound("No such class.")
    return cls


def list_families(session: Session, user: User, course_id: int) -> list[Family]:
    course = get_course(session, user, course_id)
    return families_of(session, course.id)


def families_of(
    session: Session, course_id: int, *, enrolled_only: bool = False, with_contacts: bool = False
) -> list[Family]:
    """A course's families, enrolled first, by name. ``with_contacts`` loads every family's
    parents in one more query, for pages that show them (instead of one query per family)."""
    query = select(Family).where(Family.course_id == course_id)
    if enrolled_only:
        query = query.where(Family.status == FamilyStatus.ENROLLED)
    families = list(session.scalars(query))
    if with_contacts and families:
        # By course rather than selectinload's lists of ids, which it splits every 500 families.
        contacts: dict[int, list[FamilyContact]] = {f.id: [] for f in families}
        for contact in session.scalars(
            select(FamilyContact)
            .join(Family, Family.id == FamilyContact.family_id)
            .where(Family.course_id == course_id)
            .order_by(FamilyContact.family_id, FamilyContact.position)
        ):
            if contact.family_id in contacts:
                contacts[contact.family_id].append(contact)
        for family in families:
            set_committed_value(family, "contacts", contacts[family.id])
            for contact in contacts[family.id]:
                set_committed_value(contact, "family", family)
    return sorted(
        families,
        key=lambda f: (f.status != FamilyStatus.ENROLLED, display_name(f).casefold(), f.id),
    )


def enrolled_counts(session: Session, course_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Course id -> (families enrolled, of which not registered in Zoom yet), for many courses
    in one query. A course without families is missing."""
    if not course_ids:
        return {}
    rows = session.execute(
        select(
            Family.course_id,
            func.count(Family.id),
            func.count(Family.id).filter(Family.zoom_state != RegistrantState.REGISTERED),
        )
        .where(Family.course_id.in_(set(course_ids)), Family.status == FamilyStatus.ENROLLED)
        .group_by(Family.course_id)
    )
    return {course_id: (int(n), int(waiting)) for course_id, n, waiting in rows}


def family_for_registrant(session: Session, registrant_id: str) -> Family | None:
    """The family a Zoom registrant belongs to (webhooks name participants by registrant_id)."""
    if not registrant_id:
        return None
    return session.scalars(select(Family).where(Family.zoom_registrant_id == registrant_id)).first()
