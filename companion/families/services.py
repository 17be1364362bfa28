"""Families: enrolment, Zoom registrants, personal family links and sessions, audio-only requests,
the teacher's admit list and class summaries.

Every function takes a Session and plain values (plus the Zoom client, the acting user and
``now``), flushes, and never commits. Rules the rest of companion relies on:

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
* A family link goes to one parent alone, holds a 256-bit token of which only the hash is kept,
  and is only sent while the course is safe (:func:`companion.courses.services.course_is_safe`)
  and the family has its Zoom link; until then it is owed and sent as soon as both hold.
* Audio-only requests are append-only events; the latest event that applies to a class decides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from flask import current_app
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from .. import mail, sealing, signals, work
from ..access import LEAD
from ..accounts.models import User
from ..accounts.services import EMAIL_RE, hash_token
from ..audit.services import record as audit
from ..courses import services as courses
from ..courses.models import ClassSession, Course
from ..db import utcnow
from ..errors import CompanionError, Conflict, Forbidden, NotFound, ValidationError
from ..orgs.models import Organisation
from ..sealing import Purpose
from ..zoom import (
    ZoomAuthError,
    ZoomConnectionError,
    ZoomError,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
)
from . import agreement
from .models import (
    AgreementAcceptance,
    AgreementVersion,
    AudioOnlyEvent,
    ClassSummary,
    Family,
    FamilyContact,
    FamilyLink,
    FamilySession,
)

log = logging.getLogger(__name__)

TRANSIENT = (ZoomConnectionError, ZoomServerError, ZoomRateLimited, ZoomAuthError)
MAX_ID = courses.MAX_ID
MAX_CONTACTS = 2
# Zoom's limit for a registrant's first and last name.
CHILD_NAME_MAX = 64
CONTACT_NAME_MAX = 200
# After the course ends its links still open a page that says so (and shows the safeguarding
# lead) for this long; then they have expired.
LINK_GRACE = dt.timedelta(days=30)
# A family session unused this long ends; opening the link again starts a new one.
SESSION_IDLE = dt.timedelta(days=30)
SESSION_TOUCH = dt.timedelta(minutes=5)
# The teacher's summary email goes out this long before each class.
SUMMARY_BEFORE = dt.timedelta(hours=2)


# --- errors -----------------------------------------------------------------------------------


class LinkInvalid(CompanionError):
    """No such link: mistyped, cut short or made up. Says nothing about any family."""

    code = "link_invalid"
    status = 404


class LinkGone(CompanionError):
    """The link existed but no longer works (replaced, revoked, or expired after the course)."""

    code = "link_gone"
    status = 410


class ImportRejected(ValidationError):
    """A CSV upload with problems; nothing was imported. ``problems`` lists every one."""

    code = "import_rejected"

    def __init__(self, message: str, problems: Sequence[Any]):
        super().__init__(message)
        self.problems = list(problems)


# --- input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactInput:
    name: str
    email: str


def clean_text(value: Any, *, field: str, label: str, max_len: int) -> str:
    text = " ".join(str(value if value is not None else "").split())
    if not text:
        raise ValidationError(f"Give the {label}.", field=field)
    if len(text) > max_len:
        raise ValidationError(f"Keep the {label} to {max_len} characters.", field=field)
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise ValidationError(f"The {label} contains characters that cannot be shown.", field=field)
    return text


def clean_email(value: Any, *, field: str, label: str = "email address") -> str:
    raw = str(value if value is not None else "").strip()
    if not raw:
        raise ValidationError(f"Give the {label}.", field=field)
    email = raw.lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise ValidationError(f"“{raw[:100]}” is not a valid email address.", field=field)
    return email


def surname_label(org: Organisation) -> str:
    return "child's surname initial" if org.child_name_style == "initial" else "child's surname"


def child_names(org: Organisation, first: Any, last: Any) -> tuple[str, str]:
    """The child's first name and surname, or only its initial when the organisation says so
    (then only the initial is ever stored, or sent to Zoom)."""
    first_name = clean_text(
        first, field="child_first_name", label="child's first name", max_len=CHILD_NAME_MAX
    )
    last_name = clean_text(
        last, field="child_last_name", label=surname_label(org), max_len=CHILD_NAME_MAX
    )
    if org.child_name_style == "initial":
        letter = next((ch for ch in last_name if ch.isalpha()), None)
        if letter is None:
            raise ValidationError(
                "Give the first letter of the child's surname.", field="child_last_name"
            )
        last_name = letter.upper()
    return first_name, last_name


def contact_label(position: int) -> str:
    return "parent/carer" if position == 1 else "second parent/carer"


def clean_contacts(contacts: Sequence[ContactInput | None]) -> list[ContactInput]:
    """One or two parents/carers, by position: the first is required, the second optional.

    Fields are named contact1_* and contact2_* (the API and the forms show them there)."""
    if len(contacts) > MAX_CONTACTS and any(
        c is not None and (c.name or c.email) for c in contacts[MAX_CONTACTS:]
    ):
        raise ValidationError(
            f"A family has at most {MAX_CONTACTS} parent/carer contacts.", field="contacts"
        )
    cleaned: list[ContactInput] = []
    for position in range(1, MAX_CONTACTS + 1):
        given = contacts[position - 1] if position <= len(contacts) else None
        blank = given is None or not (
            str(given.name or "").strip() or str(given.email or "").strip()
        )
        if blank:
            if position == 1:
                raise ValidationError(
                    "Give the name and email of at least one parent or carer.",
                    field="contact1_name",
                )
            continue
        assert given is not None
        who = contact_label(position)
        name = clean_text(
            given.name,
            field=f"contact{position}_name",
            label=f"{who}'s name",
            max_len=CONTACT_NAME_MAX,
        )
        email = clean_email(
            given.email, field=f"contact{position}_email", label=f"{who}'s email address"
        )
        cleaned.append(ContactInput(name, email))
    if len(cleaned) == 2 and cleaned[0].email == cleaned[1].email:
        raise ValidationError(
            "The two parents/carers need different email addresses: each gets a personal link.",
            field="contact2_email",
        )
    return cleaned


def name_key(first: str, last: str) -> tuple[str, str]:
    return (first.casefold(), last.casefold())


def display_name(family: Family) -> str:
    last = family.child_last_name
    return (
        f"{family.child_first_name} {last}."
        if len(last) == 1
        else (f"{family.child_first_name} {last}")
    )


def zoom_name(family: Family) -> str:
    """The name the child has in Zoom (and so in the waiting room)."""
    return f"{family.child_first_name} {family.child_last_name}"


# --- who may see and change ---------------------------------------------------------------------


def may_change(user: User, course: Course) -> bool:
    """Enrol and withdraw: the course's teacher or an admin."""
    return courses.may_change(user, course)


def may_manage_links(user: User, course: Course) -> bool:
    """Re-send and revoke links: also the safeguarding lead (a link that leaked is theirs too)."""
    return courses.may_change(user, course) or user.role == LEAD


def get_course(session: Session, user: User, course_id: int) -> Course:
    """The course if the user may see it (a teacher: only their own), else 404."""
    return courses.get_course(session, user, course_id)


def _changeable(session: Session, user: User, course_id: int) -> Course:
    course = get_course(session, user, course_id)
    if not may_change(user, course):
        raise Forbidden("Only the course's teacher or an admin can enrol or withdraw families.")
    return course


def _check_open(course: Course, now: dt.datetime) -> None:
    if not course.is_open:
        raise Conflict(f"This course is {course.zoom_state}; families can no longer be enrolled.")
    if course.ends_at is not None and course.ends_at <= now:
        raise Conflict("The last class of this course is over; families can no longer be enrolled.")


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


def _contact_of(family: Family, contact_id: int) -> FamilyContact:
    for contact in family.contacts:
        if contact.id == contact_id:
            return contact
    raise NotFound("No such parent/carer in this family.")


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
        query = query.where(Family.status == "enrolled")
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
        families, key=lambda f: (f.status != "enrolled", display_name(f).casefold(), f.id)
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
            func.count(Family.id).filter(Family.zoom_state != "registered"),
        )
        .where(Family.course_id.in_(set(course_ids)), Family.status == "enrolled")
        .group_by(Family.course_id)
    )
    return {course_id: (int(n), int(waiting)) for course_id, n, waiting in rows}


def family_for_registrant(session: Session, registrant_id: str) -> Family | None:
    """The family a Zoom registrant belongs to (webhooks name participants by registrant_id)."""
    if not registrant_id:
        return None
    return session.scalars(select(Family).where(Family.zoom_registrant_id == registrant_id)).first()


# --- enrolment ---------------------------------------------------------------------------------


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
        status="enrolled",
        zoom_ref="f" + secrets.token_hex(10),
        # "Pending in Zoom" and due now: the registrant is added after this is committed.
        zoom_state="pending",
        zoom_error="" if _meeting_in_zoom(course) else _waiting_for_meeting(course),
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
    course = _changeable(session, actor, course_id)
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
    from . import csv_import

    course = _changeable(session, actor, course_id)
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


# --- Zoom: registering and cancelling ------------------------------------------------------------
#
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


def _meeting_in_zoom(course: Course) -> bool:
    return course.zoom_state == "created" and course.zoom_meeting_id is not None


def _waiting_for_meeting(course: Course) -> str:
    return (
        "Waiting for the course's meeting to be created in Zoom."
        if course.is_open
        else "The course's meeting is no longer in Zoom."
    )


def _wants_zoom_work() -> ColumnElement[bool]:
    meeting_in_zoom = Family.course_id.in_(
        select(Course.id).where(Course.zoom_state == "created", Course.zoom_meeting_id.is_not(None))
    )
    return or_(
        and_(Family.status == "enrolled", Family.zoom_state == "pending", meeting_in_zoom),
        # Withdrawn families of a meeting that is gone are settled without Zoom (in prepare).
        and_(Family.status == "withdrawn", Family.zoom_state.in_(("cancelling", "registered"))),
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
    registrant_id: Any = None
    join_url: Any = None
    adopted: bool = False


def _find_registrant(zoom: Any, meeting_id: int, email: str) -> dict[str, Any] | None:
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

    def __init__(self, zoom: Any, *, actor_id: int | None = None):
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
            if family.zoom_state != "pending":
                return None
            if not _meeting_in_zoom(course):
                family.zoom_error = _waiting_for_meeting(course)
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
            if family.zoom_state not in ("cancelling", "registered"):
                return None
            family.zoom_state = "cancelling"
            if not _meeting_in_zoom(course):
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
            family.zoom_state = "failed"
            family.zoom_error = "Zoom registered the family but gave no join link; try again."
            session.flush()
            return family.zoom_state
        family.zoom_state = "registered"
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
    if family.zoom_state == "pending":
        family.zoom_state = "failed"
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
    family.zoom_state = "cancelled"
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
    course = _changeable(session, actor, course_id)
    family = get_family(session, actor, course.id, family_id)
    if family.enrolled and family.zoom_state in ("pending", "failed"):
        family.zoom_state = "pending"
        if not _meeting_in_zoom(course):
            family.zoom_error = _waiting_for_meeting(course)
    elif not (not family.enrolled and family.zoom_state in ("cancelling", "registered")):
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
    course = _changeable(session, actor, course_id)
    family = get_family(session, actor, course.id, family_id)
    session.refresh(family, with_for_update=True)
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} is already withdrawn from this course.")
    family.status = "withdrawn"
    family.withdrawn_at = now
    family.withdrawn_by_id = actor.id
    for contact in family.contacts:
        contact.link_owed_since = None
    # Zoom may hold a registrant once an attempt has started, even if its answer was lost.
    in_zoom = family.zoom_state == "registered" or family.zoom_attempts > 0
    audit(
        session,
        "family.withdrawn",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family", family.id),
        course_id=course.id,
        family_id=family.id,
    )
    family.zoom_state = "cancelling" if in_zoom else "cancelled"
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
    ready=lambda: and_(Family.status == "enrolled", Family.zoom_state == "registered"),
    count_attempts=False,
)


def join_url_lost(family: Family) -> bool:
    """The family's join link was sealed under a key now lost and must be read again."""
    if family.zoom_state != "registered" or not family.join_url_encrypted:
        return False
    if not family.zoom_registrant_id:
        return False
    try:
        sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted)
    except sealing.Unreadable:
        return True
    return False


class JoinLinkStep:
    """Read a registered family's join link from Zoom again (after its sealing key was lost)."""

    def __init__(self, zoom: Any):
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


# --- family links --------------------------------------------------------------------------------


def link_expires_at(course: Course) -> dt.datetime | None:
    """When a course's family links stop opening anything: a while after its last class (or its
    cancellation), so parents can still read that it ended and how to reach the lead."""
    if course.zoom_state == "cancelled" and course.cancelled_at is not None:
        return course.cancelled_at + LINK_GRACE
    if course.ends_at is not None:
        return course.ends_at + LINK_GRACE
    return None


def course_over(course: Course, now: dt.datetime) -> bool:
    return not course.is_open or (course.ends_at is not None and course.ends_at <= now)


def link_blocker(family: Family, now: dt.datetime) -> str | None:
    """Why a link cannot be sent to this family now, or None when it can."""
    course = family.course
    if not family.enrolled:
        return "The family is withdrawn."
    if course_over(course, now):
        return "The course is over."
    if family.zoom_state != "registered":
        return "Waiting for Zoom to register the family."
    if not courses.course_is_safe(course):
        return "Waiting until Zoom confirms the course's safety settings."
    return None


def base_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def _active_links(session: Session, contact_id: int) -> list[FamilyLink]:
    return list(
        session.scalars(
            select(FamilyLink).where(
                FamilyLink.contact_id == contact_id, FamilyLink.revoked_at.is_(None)
            )
        )
    )


def _revoke_links(session: Session, contact: FamilyContact, now: dt.datetime, reason: str) -> int:
    links = _active_links(session, contact.id)
    for link in links:
        link.revoked_at = now
        link.revoked_reason = reason
    if links:
        session.execute(
            update(FamilySession)
            .where(
                FamilySession.link_id.in_([link.id for link in links]),
                FamilySession.ended_at.is_(None),
            )
            .values(ended_at=now)
            .execution_options(synchronize_session="fetch")
        )
    session.flush()
    return len(links)


def _link_message(family: Family, contact: FamilyContact, url: str) -> tuple[str, str]:
    course = family.course
    org = family.organisation
    child = display_name(family)
    body = (
        f"Dear {contact.name},\n\n"
        f'{child} is enrolled on "{course.title}" with {org.name}, taught by '
        f"{course.teacher.name}.\n\n"
        f"Your personal family page shows every class, {family.child_first_name}'s own Zoom link "
        "and the passcode, and is where you can ask for audio-only. Open it here:\n\n"
        f"{url}\n\n"
        "This link is for you alone: please do not forward it. It works until the course ends. "
        "Before the Zoom link is shown you will be asked to read and accept our e-safety "
        "agreement.\n\n"
        f"{agreement.lead_contact_line(org)}\n"
    )
    return f"Your family link for {course.title}", body


def _issue_link(
    session: Session,
    family: Family,
    contact: FamilyContact,
    *,
    now: dt.datetime,
    actor: User | None,
    reason: str,
) -> None:
    _revoke_links(session, contact, now, "resent")
    raw = secrets.token_urlsafe(32)
    session.add(
        FamilyLink(
            family_id=family.id, contact_id=contact.id, token_hash=hash_token(raw), created_at=now
        )
    )
    contact.link_owed_since = None
    subject, body = _link_message(family, contact, f"{base_url()}/f/{raw}")
    # One message to this parent alone; the other parent (if any) gets their own.
    mail.send(
        session,
        to_address=contact.email,
        to_name=contact.name,
        subject=subject,
        body=body,
        kind="family.link",
        organisation_id=family.organisation_id,
    )
    audit(
        session,
        "family.link_issued",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        reason=reason,
    )
    session.flush()


def deliver_owed_links(
    session: Session, family: Family, *, now: dt.datetime, actor: User | None = None
) -> int:
    """Send every link owed to this family's parents, if links may be sent now."""
    if link_blocker(family, now) is not None:
        return 0
    sent = 0
    for contact in family.contacts:
        if contact.link_owed_since is not None:
            _issue_link(session, family, contact, now=now, actor=actor, reason="owed")
            sent += 1
    return sent


def families_owed_links(session: Session, now: dt.datetime, limit: int = 500) -> list[int]:
    """Families with a link owed that could go now (the job's query; the rest keep waiting)."""
    return list(
        session.scalars(
            select(Family.id)
            .join(Course, Course.id == Family.course_id)
            .join(FamilyContact, FamilyContact.family_id == Family.id)
            .where(
                FamilyContact.link_owed_since.is_not(None),
                Family.status == "enrolled",
                Family.zoom_state == "registered",
                Course.zoom_state == "created",
                Course.safety_state == "safe",
                or_(Course.ends_at.is_(None), Course.ends_at > now),
            )
            .distinct()
            .order_by(Family.id)
            .limit(limit)
        )
    )


def _link_target(
    session: Session, actor: User, course_id: int, family_id: int, contact_id: int
) -> tuple[Family, FamilyContact]:
    course = get_course(session, actor, course_id)
    if not may_manage_links(actor, course):
        raise Forbidden(
            "Only the course's teacher, an admin or the safeguarding lead can manage links."
        )
    family = get_family(session, actor, course.id, family_id)
    return family, _contact_of(family, contact_id)


def resend_link(
    session: Session,
    *,
    actor: User,
    course_id: int,
    family_id: int,
    contact_id: int,
    now: dt.datetime,
) -> str:
    """A new link for one parent; the old one stops working at once. Returns "sent", or
    "queued" when the course is not safe yet (or Zoom has not registered the family)."""
    family, contact = _link_target(session, actor, course_id, family_id, contact_id)
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} is withdrawn; no link can be sent.")
    if course_over(family.course, now):
        raise Conflict("The course is over; its family links are no longer sent.")
    revoked = _revoke_links(session, contact, now, "resent")
    contact.link_owed_since = now
    if revoked:
        _audit_revoked(session, family, contact, actor, reason="resent", links=revoked)
    if link_blocker(family, now) is None:
        _issue_link(session, family, contact, now=now, actor=actor, reason="resent")
        return "sent"
    audit(
        session,
        "family.link_queued",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        waiting_for=link_blocker(family, now),
    )
    session.flush()
    return "queued"


def revoke_link(
    session: Session,
    *,
    actor: User,
    course_id: int,
    family_id: int,
    contact_id: int,
    now: dt.datetime,
) -> int:
    """Stop one parent's link (and every browser it signed in) now; nothing new is sent."""
    family, contact = _link_target(session, actor, course_id, family_id, contact_id)
    owed = contact.link_owed_since is not None
    revoked = _revoke_links(session, contact, now, "revoked")
    contact.link_owed_since = None
    if not revoked and not owed:
        raise Conflict("This parent has no working link to revoke.")
    _audit_revoked(session, family, contact, actor, reason="revoked", links=revoked)
    session.flush()
    return revoked


def _audit_revoked(
    session: Session,
    family: Family,
    contact: FamilyContact,
    actor: User | None,
    *,
    reason: str,
    links: int,
) -> None:
    audit(
        session,
        "family.link_revoked",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        reason=reason,
        links=links,
    )


def save_contact(
    session: Session,
    *,
    actor: User,
    course_id: int,
    family_id: int,
    position: int,
    name: Any,
    email: Any,
    now: dt.datetime,
) -> tuple[FamilyContact, str]:
    """Correct a parent's name or address, or add the second parent/carer.

    A new address gets a new link and the old link dies at once (a mistyped address may have
    reached someone else). Returns the contact and "unchanged", "saved" or "link sent"/"link
    queued".
    """
    course = _changeable(session, actor, course_id)
    family = get_family(session, actor, course.id, family_id)
    if not family.enrolled:
        raise Conflict(f"{display_name(family)} is withdrawn; their contacts can no longer change.")
    if position not in (1, 2):
        raise NotFound("A family has a first and a second parent/carer only.")
    existing = {c.position: c for c in family.contacts}
    if position == 2 and 1 not in existing:  # pragma: no cover - every family has a first
        raise Conflict("Add the first parent/carer first.")
    try:
        (person,) = clean_contacts([ContactInput(str(name or ""), str(email or ""))])
    except ValidationError as exc:
        # The form has one person's fields: "name" and "email".
        raise ValidationError(exc.message, field=(exc.field or "").split("_")[-1]) from None
    other = existing.get(2 if position == 1 else 1)
    if other is not None and other.email == person.email:
        raise ValidationError(
            "The two parents/carers need different email addresses: each gets a personal link.",
            field="email",
        )
    contact = existing.get(position)
    if contact is not None and (contact.name, contact.email) == (person.name, person.email):
        return contact, "unchanged"
    new_address = contact is None or contact.email != person.email
    if contact is None:
        contact = FamilyContact(position=2, name=person.name, email=person.email, created_at=now)
        family.contacts.append(contact)
        session.flush()
    else:
        if new_address:
            revoked = _revoke_links(session, contact, now, "revoked")
            if revoked:
                _audit_revoked(
                    session, family, contact, actor, reason="address changed", links=revoked
                )
        contact.name, contact.email = person.name, person.email
    audit(
        session,
        "family.contact_saved",
        actor=actor,
        organisation_id=family.organisation_id,
        subject=("family_contact", contact.id),
        course_id=family.course_id,
        family_id=family.id,
        position=position,
        new_address=new_address,
    )
    if not new_address:
        session.flush()
        return contact, "saved"
    contact.link_owed_since = now
    session.flush()
    if course_over(family.course, now):
        contact.link_owed_since = None
        return contact, "saved"
    sent = deliver_owed_links(session, family, now=now, actor=actor)
    return contact, "link sent" if sent else "link queued"


@dataclass(frozen=True)
class LinkState:
    state: str  # "active", "queued", "revoked", "none"
    label: str
    sent_at: dt.datetime | None
    last_used_at: dt.datetime | None


def link_state(session: Session, contact: FamilyContact, now: dt.datetime) -> LinkState:
    return link_states(session, [contact], now)[contact.id]


def link_states(
    session: Session, contacts: Sequence[FamilyContact], now: dt.datetime
) -> dict[int, LinkState]:
    """Contact id -> the state of that parent's link, for many parents in one query (a page
    of families asks for all of them at once)."""
    if not contacts:
        return {}
    latest: dict[int, FamilyLink] = {}
    # Newest first, so the first link seen for a contact is its latest.
    for link in session.scalars(
        select(FamilyLink)
        .where(FamilyLink.contact_id.in_({c.id for c in contacts}))
        .order_by(FamilyLink.created_at.desc(), FamilyLink.id.desc())
    ):
        latest.setdefault(link.contact_id, link)
    return {c.id: _link_state_of(c, latest.get(c.id), now) for c in contacts}


def _link_state_of(
    contact: FamilyContact, latest: FamilyLink | None, now: dt.datetime
) -> LinkState:
    if contact.link_owed_since is not None:
        why = link_blocker(contact.family, now) or "About to be sent."
        return LinkState("queued", f"Waiting to be sent: {why}", None, None)
    if latest is not None and latest.revoked_at is None:
        return LinkState("active", "Sent", latest.created_at, latest.last_used_at)
    if latest is not None:
        return LinkState("revoked", "Revoked", latest.created_at, latest.last_used_at)
    return LinkState("none", "Not sent", None, None)


# --- family sessions ------------------------------------------------------------------------------


@dataclass
class FamilyPrincipal:
    """Who is on a family page: the session, its family and the one parent it belongs to."""

    session_row: FamilySession
    family: Family
    contact: FamilyContact
    # The session's expiry moved on with this request, so the cookie's should too.
    extended: bool = False

    @property
    def organisation_id(self) -> int:
        return self.family.organisation_id


def _session_expiry(course: Course, now: dt.datetime) -> dt.datetime:
    expiry = now + SESSION_IDLE
    ends = link_expires_at(course)
    return min(expiry, ends) if ends is not None else expiry


def open_link(
    session: Session, raw_token: str, *, now: dt.datetime, ip: str = ""
) -> tuple[FamilySession, str]:
    """Exchange a family link's token for a new family session; returns it and its raw id.

    A token that matches nothing raises :class:`LinkInvalid` (404); a replaced, revoked or
    expired one :class:`LinkGone` (410, and recorded). Neither says anything about a family.
    """
    if not raw_token or len(raw_token) > 200:
        raise LinkInvalid(_INVALID)
    link = session.scalars(
        select(FamilyLink).where(FamilyLink.token_hash == hash_token(raw_token))
    ).first()
    if link is None:
        raise LinkInvalid(_INVALID)
    family = link.family
    course = family.course
    expires = link_expires_at(course)
    problem = None
    if link.revoked_at is not None:
        problem = (
            "This link has been replaced by a newer one: please use the link in the most recent "
            "email from your teacher."
            if link.revoked_reason == "resent"
            else "This link has been withdrawn. If you think this is a mistake, please contact "
            "the teacher."
        )
    elif expires is not None and expires <= now:
        problem = "This link has expired: the course it was for ended some time ago."
    if problem is not None:
        audit(
            session,
            "family.link_refused",
            actor_label=f"parent (contact {link.contact_id})",
            organisation_id=family.organisation_id,
            subject=("family_contact", link.contact_id),
            course_id=family.course_id,
            family_id=family.id,
            ip=ip,
            reason="revoked" if link.revoked_at is not None else "expired",
        )
        raise LinkGone(problem)
    link.last_used_at = now
    raw_sid = secrets.token_urlsafe(32)
    row = FamilySession(
        link_id=link.id,
        family_id=family.id,
        contact_id=link.contact_id,
        token_hash=hash_token(raw_sid),
        created_at=now,
        last_seen_at=now,
        expires_at=_session_expiry(course, now),
    )
    session.add(row)
    session.flush()
    audit(
        session,
        "family.link_opened",
        actor_label=f"parent (contact {link.contact_id})",
        organisation_id=family.organisation_id,
        subject=("family_contact", link.contact_id),
        course_id=family.course_id,
        family_id=family.id,
        ip=ip,
    )
    return row, raw_sid


_INVALID = (
    "This link is not valid. Check that you opened the whole link from your email; if it still "
    "does not work, ask the teacher to send you a new one."
)


def resolve_session(session: Session, raw_sid: str, *, now: dt.datetime) -> FamilyPrincipal | None:
    """The family session a cookie names, if it is still good."""
    if not raw_sid or len(raw_sid) > 200:
        return None
    # Every family page needs the link, the family with its course and organisation, and the
    # parent: one query with the session row rather than one after another. Joined by hand, not
    # with joinedload: an object keeps the loader options it was loaded with, and the
    # ``refresh(family, with_for_update=True)`` of a change would then lock through outer joins,
    # which PostgreSQL refuses.
    found = session.execute(
        select(FamilySession, FamilyLink, Family, FamilyContact, Course, Organisation)
        .join(FamilyLink, FamilyLink.id == FamilySession.link_id)
        .join(Family, Family.id == FamilySession.family_id)
        .join(FamilyContact, FamilyContact.id == FamilySession.contact_id)
        .join(Course, Course.id == Family.course_id)
        .join(Organisation, Organisation.id == Family.organisation_id)
        .where(FamilySession.token_hash == hash_token(raw_sid))
    ).first()
    if found is None:
        return None
    row, link, family, contact, course, org = found
    for obj, name, value in (
        (row, "link", link),
        (row, "family", family),
        (row, "contact", contact),
        (family, "course", course),
        (family, "organisation", org),
    ):
        set_committed_value(obj, name, value)
    if row.ended_at is not None or row.expires_at <= now:
        return None
    if row.link.revoked_at is not None:
        return None
    course = row.family.course
    expires = link_expires_at(course)
    if expires is not None and expires <= now:
        return None
    extended = False
    if now - row.last_seen_at >= SESSION_TOUCH:
        row.last_seen_at = now
        row.expires_at = _session_expiry(course, now)
        extended = True
        session.flush()
    return FamilyPrincipal(row, row.family, row.contact, extended)


def end_session(session: Session, principal: FamilyPrincipal, *, now: dt.datetime) -> None:
    principal.session_row.ended_at = now
    session.flush()


def form_token(principal: FamilyPrincipal, secret_key: str) -> str:
    """The CSRF token of a family session's forms: tied to that session, useless elsewhere."""
    return hmac.new(
        secret_key.encode(),
        b"family-form:" + principal.session_row.token_hash.encode(),
        hashlib.sha256,
    ).hexdigest()


def check_form_token(principal: FamilyPrincipal, secret_key: str, given: Any) -> bool:
    return isinstance(given, str) and hmac.compare_digest(form_token(principal, secret_key), given)


# --- audio-only --------------------------------------------------------------------------------


def cutoff_of(org: Organisation, cls: ClassSession) -> dt.datetime:
    """Until when a parent may ask for (or withdraw) audio-only for this class."""
    return cls.starts_at - dt.timedelta(minutes=org.audio_only_cutoff_minutes or 0)


def _events(session: Session, family_ids: Iterable[int]) -> dict[int, list[AudioOnlyEvent]]:
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
    events = _events(session, [f.id for f in families])
    return {f.id: audio_only_state(events[f.id], cls, cutoff) for f in families}


def audio_only_by_class(
    session: Session, course: Course, families: Sequence[Family], classes: Sequence[ClassSession]
) -> dict[int, dict[int, bool]]:
    """Class id -> {family id -> audio-only} for the families expected in each class, as
    :func:`audio_only_for_class` gives, for many classes of one course: ``families`` are all the
    course's families (already loaded); their requests are read once, not once per class."""
    org = course.organisation
    events = _events(session, [f.id for f in families]) if classes else {}
    # Plain values read once: the loop below runs for every class and family.
    facts = [(f.id, f.course_id, f.created_at, f.withdrawn_at, events[f.id]) for f in families]
    found = {}
    for cls in classes:
        cutoff = cutoff_of(org, cls)
        starts, ends = cls.starts_at, cls.ends_at
        found[cls.id] = {
            family_id: audio_only_state(family_events, cls, cutoff)
            for family_id, course_id, created, withdrawn, family_events in facts
            if course_id == cls.course_id and _expected(created, withdrawn, starts, ends)
        }
    return found


@dataclass(frozen=True)
class AudioOnlyResult:
    changed: bool
    message: str


def _when(course: Course, at: dt.datetime) -> str:
    local = courses.local_time(course, at)
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
        f"by {courses.local_time(course, cutoff_of(org, cls)):%H:%M}. Please tell the teacher "
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
    events = _events(session, [family.id])[family.id]
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
        touched = [c for c in courses.upcoming_classes(course, now) if now < cutoff_of(org, c)]
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
    audit(
        session,
        "family.audio_only_requested" if want else "family.audio_only_withdrawn",
        actor_label=f"parent (contact {principal.contact.id})",
        organisation_id=family.organisation_id,
        subject=("family", family.id),
        course_id=course.id,
        family_id=family.id,
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
        how = "by audio only (camera off)" if want else "with video (audio-only withdrawn)"
        mail.send(
            session,
            to_address=teacher.email,
            to_name=teacher.name,
            subject=f"Change for {course.title} at {_when(course, cls.starts_at)}",
            body=(
                f"Hello {teacher.name},\n\n"
                f"Since your summary for the class on {_when(course, cls.starts_at)}, a parent "
                f"told us that {display_name(family)} will join {how}.\n\n"
                f"The up-to-date list to admit: {admit_url(course, cls)}\n"
            ),
            kind="family.audio_only_change",
            organisation_id=course.organisation_id,
        )


# --- the teacher's admit list and summaries ------------------------------------------------------


def expected_families(session: Session, cls: ClassSession) -> list[Family]:
    """Families expected in this class: enrolled before it ended and not withdrawn before it
    started (so the list of a past class stays what it was)."""
    families = session.scalars(
        select(Family).where(
            Family.course_id == cls.course_id,
            Family.created_at < cls.ends_at,
            or_(Family.withdrawn_at.is_(None), Family.withdrawn_at > cls.starts_at),
        )
    )
    return sorted(families, key=lambda f: (display_name(f).casefold(), f.id))


def expected_among(families: Iterable[Family], cls: ClassSession) -> list[Family]:
    """:func:`expected_families` picked from a course's families already loaded (the same rule,
    the same order), so a page about many classes reads the families once."""
    starts, ends = cls.starts_at, cls.ends_at
    found = [
        f
        for f in families
        if f.course_id == cls.course_id and _expected(f.created_at, f.withdrawn_at, starts, ends)
    ]
    return sorted(found, key=lambda f: (display_name(f).casefold(), f.id))


def _expected(
    created: dt.datetime, withdrawn: dt.datetime | None, starts: dt.datetime, ends: dt.datetime
) -> bool:
    """The rule of :func:`expected_families` for one family and one class."""
    return created < ends and (withdrawn is None or withdrawn > starts)


@dataclass
class AdmitRow:
    family: Family
    child_name: str
    zoom_name: str
    audio_only: bool
    registered: bool
    agreement_accepted: bool
    # Columns other packages add (see admit_columns), by key.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdmitColumn:
    key: str
    label: str
    # (session, class, families) -> {family_id: value shown in the column}
    values: Callable[[Session, ClassSession, list[Family]], dict[int, Any]]


def admit_columns() -> list[AdmitColumn]:
    """The columns other packages add to every admit list (e.g. "adult present" confirmations
    per class): each receiver of ``signals.admit_columns`` gives one, in the order of their keys.
    """
    return _by_key(signals.admit_columns)


def _by_key(signal: Any) -> list[Any]:
    # Receivers are called in no set order; the page's order must not change between requests.
    found = {item.key: item for _, item in signal.send(None) if item is not None}
    return [found[key] for key in sorted(found)]


def accepted_families(
    session: Session, org: Organisation, families: Sequence[Family], *, now: dt.datetime
) -> set[int]:
    """Families at least one of whose parents accepted the current agreement."""
    if not families:
        return set()
    version = agreement.current(session, org, now=now)
    return set(
        session.scalars(
            select(AgreementAcceptance.family_id).where(
                AgreementAcceptance.agreement_id == version.id,
                AgreementAcceptance.family_id.in_([f.id for f in families]),
            )
        )
    )


def admit_list(session: Session, cls: ClassSession, *, now: dt.datetime) -> list[AdmitRow]:
    """The children the teacher should admit from the waiting room, audio-only ones flagged."""
    families = expected_families(session, cls)
    events = _events(session, [f.id for f in families])
    return _admit_rows(session, cls, families, events, now=now)


def _admit_rows(
    session: Session,
    cls: ClassSession,
    families: list[Family],
    events: dict[int, list[AudioOnlyEvent]],
    *,
    now: dt.datetime,
) -> list[AdmitRow]:
    org = cls.course.organisation
    cutoff = cutoff_of(org, cls)
    accepted = accepted_families(session, org, families, now=now)
    rows = [
        AdmitRow(
            family=f,
            child_name=display_name(f),
            zoom_name=zoom_name(f),
            audio_only=audio_only_state(events[f.id], cls, cutoff),
            registered=f.zoom_state == "registered",
            agreement_accepted=f.id in accepted,
        )
        for f in families
    ]
    for column in admit_columns():
        values = column.values(session, cls, families)
        for row in rows:
            row.extras[column.key] = values.get(row.family.id)
    return rows


def get_class_for(session: Session, user: User, course_id: int, class_id: int) -> ClassSession:
    course = get_course(session, user, course_id)
    cls = courses.get_class(course, class_id)
    # Loading the course's classes does not point each class back at the course: without this
    # ``cls.course`` reads the course again once this function's reference to it is gone.
    set_committed_value(cls, "course", course)
    return cls


def audio_only_events_for_class(session: Session, cls: ClassSession) -> list[AudioOnlyEvent]:
    """Every request and withdrawal that concerns this class, in the order made."""
    families = expected_families(session, cls)
    return _class_events(cls, _events(session, [f.id for f in families]))


def _class_events(
    cls: ClassSession, events: dict[int, list[AudioOnlyEvent]]
) -> list[AudioOnlyEvent]:
    cutoff = cutoff_of(cls.course.organisation, cls)
    found = []
    for family_events in events.values():
        found += [
            e
            for e in family_events
            if e.class_id == cls.id or (e.class_id is None and e.at < cutoff)
        ]
    return sorted(found, key=lambda e: (e.at, e.id))


@dataclass
class AdmitPage:
    """Everything the admit list page shows, read once: its rows, the requests for the class,
    and the names those requests are shown with."""

    rows: list[AdmitRow]
    events: list[AudioOnlyEvent]
    # Family id -> the child's name; contact id -> the parent's name.
    names: dict[int, str]
    contact_names: dict[int, str]


def admit_page(session: Session, cls: ClassSession, *, now: dt.datetime) -> AdmitPage:
    """:func:`admit_list` and :func:`audio_only_events_for_class` of one class, with the
    families and their requests read once for both."""
    families = expected_families(session, cls)
    events = _events(session, [f.id for f in families])
    rows = _admit_rows(session, cls, families, events, now=now)
    class_events = _class_events(cls, events)
    contact_ids = {e.contact_id for e in class_events}
    contact_names = (
        {
            c.id: c.name
            for c in session.scalars(select(FamilyContact).where(FamilyContact.id.in_(contact_ids)))
        }
        if contact_ids
        else {}
    )
    return AdmitPage(
        rows=rows,
        events=class_events,
        names={r.family.id: r.child_name for r in rows},
        contact_names=contact_names,
    )


def admit_url(course: Course, cls: ClassSession) -> str:
    return f"{base_url()}/courses/{course.id}/classes/{cls.id}/admit"


def due_summaries(session: Session, now: dt.datetime, limit: int = 200) -> list[int]:
    """Classes starting within SUMMARY_BEFORE whose summary has not gone out."""
    return list(
        session.scalars(
            select(ClassSession.id)
            .join(Course, Course.id == ClassSession.course_id)
            .outerjoin(ClassSummary, ClassSummary.class_id == ClassSession.id)
            .where(
                ClassSummary.id.is_(None),
                ClassSession.status != "cancelled",
                ClassSession.starts_at > now,
                ClassSession.starts_at <= now + SUMMARY_BEFORE,
                Course.zoom_state == "created",
            )
            .order_by(ClassSession.starts_at, ClassSession.id)
            .limit(limit)
        )
    )


def send_summary(session: Session, *, class_id: int, now: dt.datetime) -> bool:
    """Mail the teacher the admit list of one class, once; False if it went out already (or
    the class no longer needs one)."""
    cls = session.get(ClassSession, class_id)
    if cls is None or not cls.takes_place or cls.starts_at <= now:
        return False
    if session.scalars(select(ClassSummary.id).where(ClassSummary.class_id == cls.id)).first():
        return False
    course = cls.course
    rows = admit_list(session, cls, now=now)
    audio = [r for r in rows if r.audio_only]
    # Written first: a second run (or a second worker) fails on the unique class_id and sends
    # nothing, because the message is queued in the same transaction.
    session.add(
        ClassSummary(class_id=cls.id, sent_at=now, expected=len(rows), audio_only=len(audio))
    )
    session.flush()
    subject, body = _summary_text(course, cls, rows, now)
    teacher = course.teacher
    mail.send(
        session,
        to_address=teacher.email,
        to_name=teacher.name,
        subject=subject,
        body=body,
        kind="family.class_summary",
        organisation_id=course.organisation_id,
    )
    return True


def _summary_text(
    course: Course, cls: ClassSession, rows: Sequence[AdmitRow], now: dt.datetime
) -> tuple[str, str]:
    org = course.organisation
    start = courses.local_time(course, cls.starts_at)
    audio = [r for r in rows if r.audio_only]
    lines = []
    for row in rows:
        flags = []
        if row.audio_only:
            flags.append("AUDIO ONLY - camera off")
        if not row.agreement_accepted:
            flags.append("agreement not accepted yet")
        lines.append(f"  - {row.zoom_name}" + (f"  [{'; '.join(flags)}]" if flags else ""))
    listing = "\n".join(lines) if lines else "  (no children are enrolled)"
    cutoff = cutoff_of(org, cls)
    later = (
        f"Parents can still change audio-only until {courses.local_time(course, cutoff):%H:%M}; "
        "you will get an email for any change after this one."
        if cutoff > now
        else "The audio-only cut-off has passed; this list is final."
    )
    body = (
        f"Hello {course.teacher.name},\n\n"
        f'Your class "{course.title}" starts on {start:%A %-d %B %Y at %H:%M} ({course.timezone}).'
        f"\n\nAdmit these children from the waiting room ({len(rows)}):\n{listing}\n\n"
        f"Audio-only ({len(audio)}): "
        + (", ".join(r.child_name for r in audio) if audio else "nobody")
        + f".\n\n{later}\n\n"
        "Anyone in the waiting room who is not on this list did not use a family's link: check "
        "with the safeguarding lead before admitting them.\n\n"
        f"The live list: {admit_url(course, cls)}\n"
    )
    subject = (
        f"{course.title} at {start:%H:%M} {start:%a %-d %b}: {len(rows)} expected, "
        f"{len(audio)} audio-only"
    )
    return subject, body


# --- the family page ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class ClassPanel:
    """Something another package shows (and lets a parent do) in a class's row of the family
    page, e.g. "an adult is in the room" for the class about to start.

    ``values(session, principal, classes, now)`` returns {class_id: value} for the classes the
    panel appears in; ``template`` is included there with ``row``, ``page`` and ``value`` (its
    forms post to the package's own @family routes, carrying ``family_csrf_token()``; such a
    route checks it with :func:`companion.families.family_views.check_form_token`).
    """

    key: str
    template: str
    values: Callable[[Session, FamilyPrincipal, list[ClassSession], dt.datetime], dict[int, Any]]


def family_class_panels() -> list[ClassPanel]:
    """The panels other packages show in each class's row of the family page: each receiver of
    ``signals.family_class_panels`` gives one, in the order of their keys."""
    return _by_key(signals.family_class_panels)


def _join_url(family: Family) -> str | None:
    """The family's join link, unsealed; None while there is none or it cannot be read (after a
    sealing key was lost: the family's own page then has it read from Zoom again, with no
    transaction open, see :func:`join_url_lost`). The page never calls Zoom itself."""
    if family.zoom_state != "registered" or not family.join_url_encrypted:
        return None
    try:
        return sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted)
    except sealing.Unreadable:
        return None


def family_page(session: Session, principal: FamilyPrincipal, *, now: dt.datetime) -> FamilyPage:
    family = principal.family
    contact = principal.contact
    course = family.course
    org = family.organisation
    version = agreement.current(session, org, now=now)
    accepted = agreement.acceptance(session, contact.id, version.id)
    events = _events(session, [family.id])[family.id]
    withdrawn = not family.enrolled
    over = course_over(course, now)
    rows = []
    number = 0
    for cls in courses.class_sessions(course):
        if cls.takes_place:
            number += 1
        cutoff = cutoff_of(org, cls)
        rows.append(
            FamilyClass(
                cls=cls,
                number=number if cls.takes_place else 0,
                start=courses.local_time(course, cls.starts_at),
                end=courses.local_time(course, cls.ends_at),
                original=courses.local_time(course, cls.original_starts_at)
                if cls.original_starts_at
                else None,
                audio_only=cls.takes_place and audio_only_state(events, cls, cutoff),
                cutoff=courses.local_time(course, cutoff),
                changeable=cls.takes_place and not withdrawn and not over and now < cutoff,
                past=cls.ends_at <= now,
            )
        )
    open_rows = [r for r in rows if r.changeable]
    paused = not courses.course_is_safe(course)
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
        join_url = _join_url(family)
        if join_url is None:
            join_problem = "pending"
        else:
            try:
                passcode = courses.passcode_of(course)
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
        cancelled=course.zoom_state == "cancelled",
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
    from . import ics

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


# --- reacting to course events -------------------------------------------------------------------


# Receivers of the course signals (companion.signals), connected by companion.families.init_app.
# Each gets the Course as sender and the change's session.


def _on_safety_changed(
    course: Course, *, session: Session, after: str | None = None, **_details: Any
) -> None:
    """The course became safe: send every link that was waiting for it."""
    if after != "safe":
        return
    # The check that found the course safe stamped its time; links carry that time.
    now = course.last_verified_at or utcnow()
    for family in families_of(session, course.id, enrolled_only=True):
        if any(c.link_owed_since is not None for c in family.contacts):
            deliver_owed_links(session, family, now=now)


def _parents_with_links(session: Session, course: Course) -> list[tuple[Family, FamilyContact]]:
    """Parents of enrolled families who hold a working link (the others have nothing to open)."""
    rows = session.execute(
        select(Family, FamilyContact)
        .join(FamilyContact, FamilyContact.family_id == Family.id)
        .join(FamilyLink, FamilyLink.contact_id == FamilyContact.id)
        .where(
            Family.course_id == course.id,
            Family.status == "enrolled",
            FamilyLink.revoked_at.is_(None),
        )
        .distinct()
        .order_by(Family.id, FamilyContact.position)
    ).all()
    return [(family, contact) for family, contact in rows]


def _tell_parents(session: Session, course: Course, subject: str, news: str, kind: str) -> None:
    for family, contact in _parents_with_links(session, course):
        mail.send(
            session,
            to_address=contact.email,
            to_name=contact.name,
            subject=subject,
            body=(
                f"Dear {contact.name},\n\n{news}\n\n"
                f"This concerns {display_name(family)}. Your family page, opened from the link in "
                "our earlier email, always shows the current classes and join details; if you "
                "added the classes to your calendar, download the calendar file again.\n\n"
                f"{agreement.lead_contact_line(family.organisation)}\n"
            ),
            kind=kind,
            organisation_id=course.organisation_id,
        )


def _class_line(course: Course, cls: ClassSession) -> str:
    start = courses.local_time(course, cls.starts_at)
    line = f"  - {start:%A %-d %B}, {start:%H:%M}-{courses.local_time(course, cls.ends_at):%H:%M}"
    if not cls.takes_place:
        return line + ": CANCELLED"
    if cls.original_starts_at is not None:
        was = courses.local_time(course, cls.original_starts_at)
        line += f" (moved from {was:%A %-d %B, %H:%M})"
    return line


def _on_schedule_changed(
    course: Course,
    *,
    session: Session,
    classes: Sequence[ClassSession] = (),
    **_details: Any,
) -> None:
    """A class was moved or cancelled (or the series changed): parents are told."""
    now = utcnow()
    changed = [c for c in classes if c.ends_at > now]
    if not changed:
        return
    lines = "\n".join(_class_line(course, c) for c in sorted(changed, key=lambda c: c.starts_at))
    _tell_parents(
        session,
        course,
        f"Class times changed: {course.title}",
        f'The teacher has changed classes of "{course.title}" (times in {course.timezone}):\n\n'
        f"{lines}",
        "family.schedule_changed",
    )


def _on_course_cancelled(course: Course, *, session: Session, **_details: Any) -> None:
    _tell_parents(
        session,
        course,
        f"Cancelled: {course.title}",
        f'The course "{course.title}" has been cancelled; there are no more classes, and its Zoom '
        "link no longer works.",
        "family.course_cancelled",
    )


def _on_passcode_rotated(course: Course, *, session: Session, **_details: Any) -> None:
    _tell_parents(
        session,
        course,
        f"New passcode: {course.title}",
        f'The passcode of "{course.title}" has changed. The new one is on your family page.',
        "family.passcode_changed",
    )
