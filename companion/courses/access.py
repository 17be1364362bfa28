"""Who may see and change a course: a teacher their own, the admin and the lead all of their
organisation's; the teacher and the admin change it. A course the user may not see is "not
found", so ids reveal nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import policy
from ..access import ADMIN, TEACHER
from ..accounts.models import User
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from .models import ClassSession, Course, ZoomState


def _visible(user: User) -> Any:
    query = select(Course).where(Course.organisation_id == user.organisation_id)
    if user.role == TEACHER:
        query = query.where(Course.teacher_id == user.id)
    return query


def list_courses(session: Session, user: User, *, open_only: bool = False) -> list[Course]:
    """Courses the user may see: a teacher their own, the admin and the lead all of theirs."""
    query = _visible(user)
    if open_only:
        query = query.where(
            Course.zoom_state.in_((ZoomState.PENDING, ZoomState.CREATED, ZoomState.FAILED))
        )
    return list(session.scalars(query.order_by(Course.first_date.desc(), Course.id.desc())))


MAX_ID = 2**31 - 1


def get_course(session: Session, user: User, course_id: int) -> Course:
    """The course if the user may see it; otherwise "not found", so ids reveal nothing."""
    if not 0 < course_id <= MAX_ID:
        raise NotFound("No such course.")
    course = session.scalars(_visible(user).where(Course.id == course_id)).first()
    if course is None:
        raise NotFound("No such course.")
    return course


def changeable(session: Session, user: User, course_id: int) -> Course:
    course = get_course(session, user, course_id)
    if not policy.may_change_course(user, course):
        raise Forbidden(
            "Only the course's teacher or an admin can change it; the safeguarding lead can "
            "re-check it and rotate its passcode."
        )
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; it can no longer be changed.")
    return course


def get_class(course: Course, class_id: int) -> ClassSession:
    for cls in course.classes:
        if cls.id == class_id:
            return cls
    raise NotFound("No such class in this course.")


def teachers(session: Session, organisation_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .where(
                User.organisation_id == organisation_id,
                User.role == TEACHER,
                User.active.is_(True),
            )
            .order_by(User.name)
        )
    )


def teacher_for(session: Session, actor: User, teacher_id: int | None) -> User:
    if actor.role == TEACHER:
        if teacher_id not in (None, actor.id):
            raise Forbidden("A teacher schedules their own courses.")
        return actor
    if actor.role != ADMIN:
        raise Forbidden("Only teachers and admins schedule courses.")
    if teacher_id is None:
        raise ValidationError("Choose the teacher of this course.", field="teacher_id")
    teacher = session.get(User, teacher_id) if 0 < teacher_id <= MAX_ID else None
    if (
        teacher is None
        or teacher.organisation_id != actor.organisation_id
        or teacher.role != TEACHER
        or not teacher.active
    ):
        raise ValidationError("Choose an active teacher of your organisation.", field="teacher_id")
    return teacher


def require_in_zoom(course: Course) -> int:
    if course.zoom_state != ZoomState.CREATED or course.zoom_meeting_id is None:
        raise Conflict(
            "This course is not in Zoom yet; its classes can be changed once it is."
            if course.zoom_state in (ZoomState.PENDING, ZoomState.FAILED)
            else f"This course is {course.zoom_state}."
        )
    return course.zoom_meeting_id
