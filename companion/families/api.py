"""Families in the JSON API (/api/v1): the same operations as the staff pages.

Bearer tokens only (no cookies), so CSRF does not apply. An enrolment is saved even when Zoom
is down: it is committed before Zoom is called, and the answer is 201 at once with
``zoom.state`` "pending" (Zoom is called right after the answer: read the family again to see
it registered, or ``zoom.error`` saying why not yet; the worker keeps trying). Links are
never returned: they go to each parent by email only.

Each route declares its operation for the OpenAPI document; the bodies and answers are the
models of :mod:`.shapes`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..access import ADMIN, STAFF, TEACHER, allow, current_user
from ..api.views import Routes, api_blueprint
from ..courses.shapes import ClassSession
from ..db import get_session, utcnow
from . import access, admit, audio_only, enrolment, jobs, links, registrants, shapes
from .models import Family
from .people import ContactInput

bp = api_blueprint("families_api", __name__)
api = Routes(bp, tag="families")


@api.route(
    "GET",
    "/families",
    operation_id="listFamilies",
    summary="The families of a course (a teacher: only their own courses)",
    query=shapes.FamiliesOfCourse,
    ok=(200, "The families, enrolled first", shapes.FamilyList),
    errors=(404, 422),
)
@allow(*STAFF)
def list_families(query: shapes.FamiliesOfCourse) -> shapes.FamilyList:
    session = get_session()
    now = utcnow()
    families = access.list_families(session, current_user(), query.course_id)
    return shapes.FamilyList(families=[shapes.Family.of(session, f, now) for f in families])


@api.route(
    "POST",
    "/families",
    operation_id="enrolFamily",
    summary="Enrol a child with one or two parents/carers; registered in Zoom",
    description="Bad input is refused with 422 (409 for a child already enrolled) before "
    "anything is saved. The answer comes before Zoom is asked: 201 with `zoom.state` "
    "`pending` (and `warnings` saying so); companion registers the family right after, so "
    "read it again to see `registered`, or `zoom.error` when Zoom did not answer (retried "
    "automatically). Each parent gets their own link by email once the family is registered "
    "and the course is safe.",
    body=shapes.FamilyEnrol,
    ok=(201, "Enrolled (see `zoom` for the registration)", shapes.Family),
    errors=(400, 404, 409, 415, 422),
)
@allow(TEACHER, ADMIN)
def enrol(body: shapes.FamilyEnrol) -> shapes.Family:
    session = get_session()
    now = utcnow()
    family = enrolment.enrol(
        session,
        actor=current_user(),
        course_id=body.course_id,
        child_first_name=body.child_first_name,
        child_last_name=body.child_last_name,
        contacts=[ContactInput(c.name, c.email) for c in body.contacts],
        now=now,
    )
    # Zoom is called once this is committed and answered; read the family again to see it.
    jobs.after_request(family, actor_id=current_user().id)
    return shapes.Family.of(session, family, now, warnings=_warnings(family))


@api.route(
    "GET",
    "/families/<int:family_id>",
    operation_id="getFamily",
    summary="One family, with its parents' link and agreement states",
    ok=(200, "The family", shapes.Family),
    errors=(404,),
)
@allow(*STAFF)
def get_family(family_id: int) -> shapes.Family:
    session = get_session()
    family = access.find_family(session, current_user(), family_id)
    return shapes.Family.of(session, family, utcnow())


@api.route(
    "POST",
    "/families/<int:family_id>/withdraw",
    operation_id="withdrawFamily",
    summary="Withdraw a family: its Zoom registrant is cancelled, its page says so",
    description="The family is withdrawn at once, with `zoom.state` `cancelling` while "
    "companion cancels its registrant right after the answer (retried automatically when Zoom "
    "does not answer), then `cancelled`.",
    ok=(200, "Withdrawn", shapes.Family),
    errors=(404, 409, 415),
)
@allow(TEACHER, ADMIN)
def withdraw(family_id: int) -> shapes.Family:
    session = get_session()
    user = current_user()
    family = access.find_family(session, user, family_id)
    now = utcnow()
    registrants.withdraw(
        session, actor=user, course_id=family.course_id, family_id=family.id, now=now
    )
    if family.zoom_state == "cancelling":
        jobs.after_request(family, actor_id=user.id)
    return shapes.Family.of(session, family, now, warnings=_warnings(family))


def _warnings(family: Family) -> list[str]:
    """What the answer should say about Zoom work that is still to come."""
    if family.zoom_state == "pending" and family.zoom_error:
        return [f"Saved; the family is pending in Zoom: {family.zoom_error}"]
    if family.zoom_state == "pending":
        return [
            "Saved; the family is pending in Zoom until companion has registered it, right "
            "after this answer (see zoom.state)."
        ]
    if family.zoom_state == "cancelling":
        return ["Saved; companion is cancelling the family's Zoom registration now."]
    return []


def _link_change(
    family_id: int, contact_id: int, change: Callable[..., object]
) -> shapes.LinkResult:
    session = get_session()
    user = current_user()
    family = access.find_family(session, user, family_id)
    now = utcnow()
    result = change(
        session,
        actor=user,
        course_id=family.course_id,
        family_id=family.id,
        contact_id=contact_id,
        now=now,
    )
    return shapes.LinkResult(
        result=result if isinstance(result, str) else "revoked",
        family=shapes.Family.of(session, family, now),
    )


@api.route(
    "POST",
    "/families/<int:family_id>/contacts/<int:contact_id>/resend-link",
    operation_id="resendFamilyLink",
    summary="Send one parent a new personal link; the old one stops working",
    ok=(200, "Sent, or queued until the course is safe", shapes.LinkResult),
    errors=(404, 409, 415),
)
@allow(*STAFF)
def resend_link(family_id: int, contact_id: int) -> shapes.LinkResult:
    return _link_change(family_id, contact_id, links.resend_link)


@api.route(
    "POST",
    "/families/<int:family_id>/contacts/<int:contact_id>/revoke-link",
    operation_id="revokeFamilyLink",
    summary="Stop one parent's link (and sign out every browser it opened)",
    ok=(200, "Revoked", shapes.LinkResult),
    errors=(404, 409, 415),
)
@allow(*STAFF)
def revoke_link(family_id: int, contact_id: int) -> shapes.LinkResult:
    return _link_change(family_id, contact_id, links.revoke_link)


@api.route(
    "GET",
    "/classes/<int:class_id>/audio-only",
    operation_id="listClassAudioOnly",
    summary="The children expected in a class with audio-only flagged, and every request and "
    "withdrawal for it",
    ok=(200, "The admit list and the requests", shapes.ClassAudioOnly),
    errors=(404,),
)
@allow(*STAFF)
def class_audio_only(class_id: int) -> shapes.ClassAudioOnly:
    session = get_session()
    cls = access.find_class(session, current_user(), class_id)
    return shapes.ClassAudioOnly(
        class_=ClassSession.of(cls.course, cls),
        cutoff_at=audio_only.cutoff_of(cls.course.organisation, cls),
        families=[shapes.AdmitRow.of(row) for row in admit.admit_list(session, cls, now=utcnow())],
        events=[
            shapes.AudioOnlyRequest.of(e) for e in admit.audio_only_events_for_class(session, cls)
        ],
    )
