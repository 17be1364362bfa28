"""Zoom registrants: registering a family in the course's meeting and cancelling it, and
reading its join link from Zoom again after its sealing key was lost.

* Each family is one Zoom registrant (``auto_approve``), so each family has its own join link.
  The registrant's email is made by companion per family (:func:`registrant_email`), never a
  parent's address: two siblings with the same parent stay two registrants (Zoom answers a
  second registration of one email with the first registrant), Zoom's limit of three
  registrations a day per email is never shared between families, parents' addresses are not
  handed to Zoom, and a retry can find a registrant an earlier attempt made by that address.
* Zoom is never called while a transaction is open, and being down, slow or rate limiting never
  loses an enrolment: the family is saved "pending in Zoom" and committed first; the registrant
  work (:class:`RegistrantStep` on the :data:`REGISTRANTS` queue of the work engine) then runs
  inline after the commit or in the worker, and looks the registrant up by its address before
  adding it again, so no family is registered twice. Withdrawal cancels the registrant the same
  way ("cancelling" until Zoom confirms).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from .. import sealing, work
from ..accounts.models import User
from ..audit.services import record as audit
from ..courses.models import Course, ZoomState
from ..errors import Conflict
from ..sealing import Purpose
from ..zoom import (
    ZoomAuthError,
    ZoomConnectionError,
    ZoomError,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
)
from ..zoom.api import Registrant, ZoomApi
from .access import course_to_change, get_family
from .links import deliver_owed_links
from .models import Family, FamilyStatus, RegistrantState
from .people import CHILD_NAME_MAX, display_name

log = logging.getLogger(__name__)

TRANSIENT = (ZoomConnectionError, ZoomServerError, ZoomRateLimited, ZoomAuthError)

# Registrant work is a queue of the work engine (companion.work) over the families table. A
# request only records what it wants (a new family "pending in Zoom", a withdrawn one
# "cancelling", a retry due now) and commits; then RegistrantStep runs, inline right after the
# commit (jobs.zoom_now) or in the worker (jobs.sync_zoom):
#
#   prepare (in the claim's transaction): read the meeting, the registrant's address and names
#       into a plan, and count the attempt;
#   call (no transaction open): look the registrant up first when an earlier attempt may have
#       reached Zoom, then add (or cancel) it;
#   record (a new short transaction): store the registrant and its sealed join link, or postpone
#       with the engine's one backoff, or mark the family refused.
#
# A crash anywhere leaves the claim to expire; the next attempt looks the registrant up by its
# companion-made address (``_find_registrant``) before adding one, so there is never a second.


def registrant_email(family: Family) -> str:
    """The address Zoom knows this family by: made by companion, one per family, at the domain
    companion sends mail from. Zoom sends nothing to it (registrant emails are off)."""
    domain = str(current_app.config["MAIL_FROM"]).rsplit("@", 1)[-1].strip().lower()
    return f"family-{family.zoom_ref}@{domain or 'example.org'}"


def meeting_in_zoom(course: Course) -> bool:
    return course.zoom_state == ZoomState.CREATED and course.zoom_meeting_id is not None


def waiting_for_meeting(course: Course) -> str:
    return (
        "Waiting for the course's meeting to be created in Zoom."
        if course.is_open
        else "The course's meeting is no longer in Zoom."
    )


def _wants_zoom_work() -> ColumnElement[bool]:
    meeting_in_zoom = Family.course_id.in_(
        select(Course.id).where(
            Course.zoom_state == ZoomState.CREATED, Course.zoom_meeting_id.is_not(None)
        )
    )
    return or_(
        and_(
            Family.status == FamilyStatus.ENROLLED,
            Family.zoom_state == RegistrantState.PENDING,
            meeting_in_zoom,
        ),
        # Withdrawn families of a meeting that is gone are settled without Zoom (in prepare).
        and_(
            Family.status == FamilyStatus.WITHDRAWN,
            Family.zoom_state.in_((RegistrantState.CANCELLING, RegistrantState.REGISTERED)),
        ),
    )


REGISTRANTS = work.Queue(
    name="family registrant",
    model=Family,
    id=Family.id,
    attempts=Family.zoom_attempts,
    due=Family.zoom_next_attempt_at,
    claimed_until=Family.zoom_claimed_until,
    ready=_wants_zoom_work,
    # prepare counts an attempt only when it is about to call Zoom, so "attempts > 0" means Zoom
    # may hold a registrant for this family and the next attempt looks for it before adding one.
    count_attempts=False,
)


@dataclass(frozen=True)
class RegistrantPlan:
    """What one Zoom call for one family needs, read in the claim's transaction."""

    action: str  # "register" or "cancel"
    meeting_id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    registrant_id: str | None = None
    # An earlier attempt may have reached Zoom (its answer lost, or the worker stopped).
    look_first: bool = False


@dataclass(frozen=True)
class RegistrantAnswer:
    # As Zoom sent them (its answers are not validated): ``record`` checks both before use.
    registrant_id: Any = None
    join_url: Any = None
    adopted: bool = False


def _find_registrant(zoom: ZoomApi, meeting_id: int, email: str) -> Registrant | None:
    for status in ("approved", "pending"):
        for registrant in zoom.iter_registrants(meeting_id, status=status):
            if str(registrant.get("email") or "").strip().lower() == email:
                return registrant
    return None


def _valid_join_url(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("https://", "http://"))


class RegistrantStep:
    """Register an enrolled family, or cancel a withdrawn one's registrant (see above).

    ``actor_id`` is the person whose request runs the step inline (for the audit trail); the
    worker runs it as nobody.
    """

    def __init__(self, zoom: ZoomApi, *, actor_id: int | None = None):
        self.zoom = zoom
        self.actor_id = actor_id

    def _actor(self, session: Session) -> User | None:
        return session.get(User, self.actor_id) if self.actor_id is not None else None

    def prepare(self, session: Session, family_id: int, now: dt.datetime) -> RegistrantPlan | None:
        family = session.get(Family, family_id)
        if family is None:
            return None
        course = family.course
        if family.enrolled:
            if family.zoom_state != RegistrantState.PENDING:
                return None
            if not meeting_in_zoom(course):
                family.zoom_error = waiting_for_meeting(course)
                return None
            assert course.zoom_meeting_id is not None
            plan = RegistrantPlan(
                "register",
                course.zoom_meeting_id,
                registrant_email(family),
                first_name=family.child_first_name[:CHILD_NAME_MAX],
                last_name=family.child_last_name[:CHILD_NAME_MAX],
                look_first=family.zoom_attempts > 0,
            )
        else:
            if family.zoom_state not in (RegistrantState.CANCELLING, RegistrantState.REGISTERED):
                return None
            family.zoom_state = RegistrantState.CANCELLING
            if not meeting_in_zoom(course):
                # The meeting itself is gone (course cancelled or closed), and its registrants
                # with it.
                _cancelled(session, family, self._actor(session), meeting_gone=True)
                return None
            assert course.zoom_meeting_id is not None
            plan = RegistrantPlan(
                "cancel",
                course.zoom_meeting_id,
                registrant_email(family),
                registrant_id=family.zoom_registrant_id,
            )
        family.zoom_attempts += 1
        return plan

    def call(self, plan: RegistrantPlan) -> RegistrantAnswer:
        zoom = self.zoom
        if plan.action == "cancel":
            registrant_id = plan.registrant_id
            if registrant_id is None:
                found = _find_registrant(zoom, plan.meeting_id, plan.email)
                registrant_id = found.get("id") if found else None
            if registrant_id:
                zoom.update_registrant_status(
                    plan.meeting_id, "cancel", [{"id": registrant_id, "email": plan.email}]
                )
            return RegistrantAnswer(registrant_id=registrant_id)
        found = _find_registrant(zoom, plan.meeting_id, plan.email) if plan.look_first else None
        if found is None:
            answer = zoom.add_registrant(
                plan.meeting_id,
                {
                    "email": plan.email,
                    "first_name": plan.first_name,
                    "last_name": plan.last_name,
                    "auto_approve": True,
                },
            )
            registrant_id, join_url = answer.get("registrant_id"), answer.get("join_url")
        else:
            registrant_id, join_url = found.get("id"), found.get("join_url")
        if isinstance(registrant_id, str) and registrant_id and not join_url:
            join_url = zoom.get_registrant(plan.meeting_id, registrant_id).get("join_url")
        return RegistrantAnswer(registrant_id, join_url, adopted=found is not None)

    def record(
        self,
        session: Session,
        family_id: int,
        plan: RegistrantPlan,
        answer: RegistrantAnswer,
        now: dt.datetime,
    ) -> work.Outcome:
        family = session.get(Family, family_id)
        if family is None:
            return "gone"
        work.release(family, REGISTRANTS)
        actor = self._actor(session)
        if plan.action == "cancel":
            _cancelled(session, family, actor, meeting_gone=False)
            return family.zoom_state
        registrant_id = answer.registrant_id
        known = isinstance(registrant_id, str) and bool(registrant_id)
        if answer.adopted:
            log.info("family %s: adopting the registrant of an earlier attempt", family.id)
        if not family.enrolled:
            # Withdrawn while Zoom was registering it: keep the registrant, so the cancellation
            # (due now) cancels exactly this one.
            if known:
                family.zoom_registrant_id = registrant_id[:64]
            session.flush()
            return family.zoom_state
        if not known or not _valid_join_url(answer.join_url):
            family.zoom_state = RegistrantState.FAILED
            family.zoom_error = "Zoom registered the family but gave no join link; try again."
            session.flush()
            return family.zoom_state
        family.zoom_state = RegistrantState.REGISTERED
        family.zoom_registrant_id = registrant_id[:64]
        family.join_url_encrypted = sealing.seal(Purpose.JOIN_LINK, answer.join_url[:1000])
        family.zoom_error = ""
        audit(
            session,
            "family.zoom_registered",
            actor=actor,
            organisation_id=family.organisation_id,
            subject=("family", family.id),
            course_id=family.course_id,
            family_id=family.id,
            registrant_id=family.zoom_registrant_id,
            attempts=family.zoom_attempts,
        )
        session.flush()
        # Queues each owed link in the outbox; the mail worker sends it.
        deliver_owed_links(session, family, now=now, actor=actor)
        return family.zoom_state

    def failed(
        self,
        session: Session,
        family_id: int,
        plan: RegistrantPlan,
        exc: Exception,
        now: dt.datetime,
    ) -> work.Outcome:
        family = session.get(Family, family_id)
        if family is None:
            return "gone"
        actor = self._actor(session)
        if plan.action == "register" and not family.enrolled:
            # Withdrawn meanwhile: the cancellation (due now) looks the registrant up anyway.
            work.release(family, REGISTRANTS)
            return family.zoom_state
        doing = (
            "registering the family"
            if plan.action == "register"
            else "cancelling the family's Zoom registration"
        )
        if plan.action == "cancel" and isinstance(exc, ZoomNotFound):
            _cancelled(session, family, actor, meeting_gone=True)
            return family.zoom_state
        if isinstance(exc, TRANSIENT):
            retry_after = exc.retry_after if isinstance(exc, ZoomRateLimited) else None
            work.postpone(family, REGISTRANTS, now, retry_after=retry_after)
            if isinstance(exc, ZoomAuthError):
                family.zoom_error = (
                    "Zoom refused companion's credentials; an admin must check them."
                )
            elif isinstance(exc, ZoomRateLimited):
                family.zoom_error = (
                    "Zoom is limiting requests; companion will try again automatically."
                )
            else:
                family.zoom_error = "Zoom did not answer; companion will try again automatically."
            log.warning(
                "family %s: Zoom %s postponed after %s (attempt %s)",
                family.id,
                doing,
                type(exc).__name__,
                family.zoom_attempts,
            )
            return family.zoom_state
        if isinstance(exc, ZoomError):
            if plan.action == "cancel":
                # Zoom refused the cancellation; keep trying (slowly) and say so on the page.
                family.zoom_claimed_until = None
                family.zoom_next_attempt_at = now + REGISTRANTS.backoff_cap
            else:
                work.release(family, REGISTRANTS)
            _refused(session, family, exc, actor, doing)
            return family.zoom_state
        log.error("family %s: %s failed", family.id, doing, exc_info=exc)
        work.postpone(family, REGISTRANTS, now)
        return "errors"


def _refused(
    session: Session, family: Family, exc: ZoomError, actor: User | None, doing: str
) -> None:
    if isinstance(exc, ZoomNotFound):
        family.zoom_error = "Zoom no longer has this course's meeting."
    else:
        family.zoom_error = f"Zoom refused {doing}: {exc.message}"[:500]
    if family.zoom_state == RegistrantState.PENDING:
        family.zoom_state = RegistrantState.FAILED
    audit(
        session,
        "family.zoom_refused",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family", family.id),
        course_id=family.course_id,
        family_id=family.id,
        doing=doing,
        zoom_code=exc.zoom_code,
        http_status=exc.http_status,
    )
    session.flush()


def _cancelled(session: Session, family: Family, actor: User | None, *, meeting_gone: bool) -> None:
    family.zoom_state = RegistrantState.CANCELLED
    # The link is dead; there is no reason to keep the secret.
    family.join_url_encrypted = ""
    family.zoom_error = ""
    work.release(family, REGISTRANTS)
    audit(
        session,
        "family.zoom_cancelled",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family", family.id),
        course_id=family.course_id,
        family_id=family.id,
        registrant_id=family.zoom_registrant_id,
        meeting_gone=meeting_gone,
    )
    session.flush()


def retry_zoom(
    session: Session, *, actor: User, course_id: int, family_id: int, now: dt.datetime
) -> Family:
    """A person asks to try Zoom again now for a pending, refused or cancelling family: the work
    is made due now; the caller commits and runs it."""
    course = course_to_change(session, actor, course_id)
    family = get_family(session, actor, course.id, family_id)
    if family.enrolled and family.zoom_state in (RegistrantState.PENDING, RegistrantState.FAILED):
        family.zoom_state = RegistrantState.PENDING
        if not meeting_in_zoom(course):
            family.zoom_error = waiting_for_meeting(course)
    elif not (
        not family.enrolled
        and family.zoom_state in (RegistrantState.CANCELLING, RegistrantState.REGISTERED)
    ):
        raise Conflict("Zoom already has this family as it should be; there is nothing to retry.")
    work.schedule(family, REGISTRANTS)
    session.flush()
    return family


def withdraw(
    session: Session, *, actor: User, course_id: int, family_id: int, now: dt.datetime
) -> Family:
    """Withdraw a family: no link is sent any more, its family page says it was withdrawn, and
    its registrant is to be cancelled in Zoom (so its link stops working): "cancelling" and due
    now; the caller commits and runs it."""
    course = course_to_change(session, actor, course_id)
    family = get_family(session, actor, course.id, family_id)
    session.refresh(family, with_for_update=True)
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} is already withdrawn from this course.")
    family.status = FamilyStatus.WITHDRAWN
    family.withdrawn_at = now
    family.withdrawn_by_id = actor.id
    for contact in family.contacts:
        contact.link_owed_since = None
    # Zoom may hold a registrant once an attempt has started, even if its answer was lost.
    in_zoom = family.zoom_state == RegistrantState.REGISTERED or family.zoom_attempts > 0
    audit(
        session,
        "family.withdrawn",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family", family.id),
        course_id=course.id,
        family_id=family.id,
    )
    family.zoom_state = RegistrantState.CANCELLING if in_zoom else RegistrantState.CANCELLED
    if not in_zoom:
        family.zoom_error = ""
    work.schedule(family, REGISTRANTS)
    session.flush()
    return family


# A family's join link, sealed under a data-sealing key, is unreadable if that key is lost; it is
# then read from Zoom again, as one more step of the engine over the same columns (so it never
# runs while registrant work holds the family), with no transaction open.
JOIN_LINKS = work.Queue(
    name="family join link",
    model=Family,
    id=Family.id,
    attempts=Family.zoom_attempts,
    due=Family.zoom_next_attempt_at,
    claimed_until=Family.zoom_claimed_until,
    ready=lambda: and_(
        Family.status == FamilyStatus.ENROLLED, Family.zoom_state == RegistrantState.REGISTERED
    ),
    count_attempts=False,
)


def join_url_lost(family: Family) -> bool:
    """The family's join link was sealed under a key now lost and must be read again."""
    if family.zoom_state != RegistrantState.REGISTERED or not family.join_url_encrypted:
        return False
    if not family.zoom_registrant_id:
        return False
    try:
        sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted)
    except sealing.Unreadable:
        return True
    return False


def join_url_of(family: Family) -> str | None:
    """The family's join link, unsealed; None while there is none or it cannot be read (after a
    sealing key was lost: the family's own page then has it read from Zoom again, with no
    transaction open, see :func:`join_url_lost`). The page never calls Zoom itself."""
    if family.zoom_state != RegistrantState.REGISTERED or not family.join_url_encrypted:
        return None
    try:
        return sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted)
    except sealing.Unreadable:
        return None


class JoinLinkStep:
    """Read a registered family's join link from Zoom again (after its sealing key was lost)."""

    def __init__(self, zoom: ZoomApi):
        self.zoom = zoom

    def prepare(self, session: Session, family_id: int, now: dt.datetime) -> tuple[int, str] | None:
        family = session.get(Family, family_id)
        if family is None or not join_url_lost(family):
            return None
        meeting_id = family.course.zoom_meeting_id
        if meeting_id is None or family.zoom_registrant_id is None:
            return None
        return meeting_id, family.zoom_registrant_id

    def call(self, plan: tuple[int, str]) -> Any:
        return self.zoom.get_registrant(*plan).get("join_url")

    def record(
        self, session: Session, family_id: int, plan: tuple[int, str], url: Any, now: dt.datetime
    ) -> work.Outcome:
        family = session.get(Family, family_id)
        if family is None:
            return "gone"
        family.zoom_claimed_until = None
        if family.zoom_registrant_id != plan[1] or not _valid_join_url(url):
            return "unchanged"
        family.join_url_encrypted = sealing.seal(Purpose.JOIN_LINK, url[:1000])
        session.flush()
        return "reread"

    def failed(
        self,
        session: Session,
        family_id: int,
        plan: tuple[int, str],
        exc: Exception,
        now: dt.datetime,
    ) -> work.Outcome:
        log.warning(
            "family %s: could not re-read the join link (%s)", family_id, type(exc).__name__
        )
        family = session.get(Family, family_id)
        if family is not None:
            family.zoom_claimed_until = None
        return "unreachable"
