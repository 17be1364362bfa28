"""Who may do what to which object: the one place that services, views, templates and the
navigation ask.

Routes declare who may call them at all (``companion.access``: ``@allow``, ``@public``,
``@family``); the rules here are about objects and the actions on them (this teacher's course,
the lead's holds). A service enforces them (raising Forbidden/NotFound); a view and a template
ask the same function whether to offer the button, so what is offered and what is allowed
cannot drift apart. Templates reach them as ``policy.<rule>(current_user, ...)`` and the
navigation as ``nav_items(current_user)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from .access import ADMIN, LEAD, TEACHER, rule_for

if TYPE_CHECKING:
    from .accounts.models import User
    from .courses.models import Course


# --- courses -------------------------------------------------------------------------------


def may_create_course(user: User) -> bool:
    """Teachers schedule their own courses; an admin schedules them for a teacher."""
    return user.role in (TEACHER, ADMIN)


def may_change_course(user: User, course: Course) -> bool:
    """Change the schedule, cancel, enrol and withdraw: the course's teacher or an admin of its
    organisation (seeing the course at all is checked by the lookup, which answers 404)."""
    if user.organisation_id != course.organisation_id:
        return False
    return user.role == ADMIN or (user.role == TEACHER and course.teacher_id == user.id)


def may_rotate_passcode(user: User, course: Course) -> bool:
    """A new passcode: also the safeguarding lead (a passcode that leaked is theirs to act on)."""
    return may_change_course(user, course) or (
        user.role == LEAD and user.organisation_id == course.organisation_id
    )


def may_manage_links(user: User, course: Course) -> bool:
    """Re-send and revoke families' links: also the safeguarding lead (a link that leaked)."""
    return may_rotate_passcode(user, course)


# --- safeguarding ----------------------------------------------------------------------------


def is_lead(user: User) -> bool:
    """Recordings, holds, evidence packs and every concern are the safeguarding lead's."""
    return user.role == LEAD


def may_hold_recordings(user: User) -> bool:
    """Place and release holds, and see the holds in force."""
    return is_lead(user)


def may_export_pack(user: User) -> bool:
    return is_lead(user)


def sees_concerns(user: User) -> bool:
    """Concerns are for the teacher who raised them and the lead; an admin sees none."""
    return user.role in (TEACHER, LEAD)


# --- the navigation ------------------------------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str


# In the order shown. Each is offered only to those the route's own declaration admits, so the
# menu never shows a page that would refuse its reader.
NAV: tuple[NavItem, ...] = (
    NavItem("web.home", "Home"),
    NavItem("courses.index", "Courses"),
    NavItem("families.index", "Families"),
    NavItem("accounts.staff", "Staff"),
    NavItem("orgs.settings", "Organisation"),
    NavItem("agreement.edit_agreement", "E-safety agreement"),
    NavItem("mail.outbox", "Outbox"),
    NavItem("security_review.index", "Security"),
    NavItem("evidence.settings", "Class evidence"),
    NavItem("evidence.family_list", "Families' data"),
    NavItem("safeguarding.index", "Safeguarding"),
    NavItem("recordings.index", "Recordings"),
    NavItem("evidence.index", "Class evidence"),
    NavItem("concerns.concerns_index", "Concerns"),
    NavItem("audit.index", "Audit trail"),
    NavItem("accounts.tokens", "API tokens"),
    NavItem("twofactor.status", "Two-factor"),
)


def may_visit(user: User, endpoint: str) -> bool:
    """Whether the route's access declaration admits this member of staff."""
    rule = rule_for(current_app, endpoint)
    if rule is None:
        return False  # undeclared: refused to everybody
    if rule.kind == "public":
        return True
    return rule.kind == "staff" and user.role in rule.roles


def nav_items(user: User) -> list[NavItem]:
    return [item for item in NAV if may_visit(user, item.endpoint)]
