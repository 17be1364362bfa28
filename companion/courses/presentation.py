"""What the course pages show: the safety panel, the problems, the passcode (when readable), and
the rows a list of courses needs, loaded in a fixed number of queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .. import sealing
from ..accounts.models import User
from . import safety
from .models import ClassSession, Course, SafetyState
from .passcodes import passcode_of
from .safety import SafetyProblem


@dataclass(frozen=True)
class PanelRow:
    key: str
    label: str
    ok: bool | None  # None: not verified yet
    reasons: tuple[str, ...]


PANEL_GROUPS = ("waiting_room", "passcode", "recording", "registration", "host", "schedule")


def safety_panel(course: Course) -> list[PanelRow]:
    """One row per safety area for the course page: tick, cross or not verified, and why."""
    problems = [SafetyProblem.from_dict(p) for p in course.problems]
    grouped = safety.groups_status(problems)
    meeting_gone = bool(grouped.get("meeting"))
    rows = []
    for key in PANEL_GROUPS:
        found = grouped.get(key, [])
        if course.safety_state == SafetyState.UNVERIFIED or course.last_verified_at is None:
            ok: bool | None = None
        else:
            ok = not found and not meeting_gone
        reasons = tuple(p.describe() for p in found)
        if meeting_gone and not found:
            reasons = ("the meeting no longer exists in Zoom",)
        rows.append(PanelRow(key, safety.GROUPS[key], ok, reasons))
    return rows


def problem_list(course: Course) -> list[SafetyProblem]:
    return [SafetyProblem.from_dict(p) for p in course.problems]


def passcode_preview(course: Course) -> str | None:
    try:
        return passcode_of(course)
    except sealing.Unreadable:
        return None


def preload_for_lists(session: Session, courses: Sequence[Course]) -> None:
    """Fill in the classes and the teacher of every course a page lists, in at most two queries;
    otherwise each course reads its classes (and each teacher their row) when the page first
    touches them. Already loaded ones are left as they are."""
    inspected = [(course, inspect(course).unloaded) for course in courses]
    need_classes = [c for c, unloaded in inspected if "classes" in unloaded]
    if need_classes:
        classes: dict[int, list[ClassSession]] = defaultdict(list)
        for cls in session.scalars(
            select(ClassSession)
            .where(ClassSession.course_id.in_({c.id for c in need_classes}))
            .order_by(ClassSession.starts_at, ClassSession.id)
        ):
            classes[cls.course_id].append(cls)
        for course in need_classes:
            set_committed_value(course, "classes", classes[course.id])
            for cls in classes[course.id]:
                set_committed_value(cls, "course", course)
    need_teacher = [c for c, unloaded in inspected if "teacher" in unloaded]
    # A teacher already in the session (the signed-in one) costs nothing to reach.
    teachers = {
        c.teacher_id: found
        for c in need_teacher
        if (found := session.identity_map.get(identity_key(User, c.teacher_id))) is not None
    }
    missing = {c.teacher_id for c in need_teacher} - teachers.keys()
    if missing:
        teachers.update(
            (u.id, u) for u in session.scalars(select(User).where(User.id.in_(missing)))
        )
    for course in need_teacher:
        if course.teacher_id in teachers:
            set_committed_value(course, "teacher", teachers[course.teacher_id])
