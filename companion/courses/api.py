"""Courses in the JSON API (/api/v1): the same operations as the teacher pages.

Bearer tokens only (no cookies), so CSRF does not apply. Bodies are JSON objects; a Zoom outage
while creating answers 503 with the course kept "pending in Zoom" (its id is in the error).

A change is committed before Zoom is asked (:func:`_send_to_zoom`); the Zoom work then runs in
the request with no transaction open, so the answer says what Zoom did. When Zoom did not
answer, the change is kept and ``zoom.work`` says what companion will still send.

Each route declares its operation for the OpenAPI document; the bodies and answers are the
models of :mod:`.shapes`.
"""

from __future__ import annotations

from flask import Response, current_app

from ..access import ADMIN, STAFF, TEACHER, allow, current_user
from ..api.shapes import given
from ..api.views import Routes, api_blueprint
from ..db import get_session, utcnow
from ..errors import CompanionError, error_response
from ..zoom import ZoomRefused, ZoomUnavailable
from . import access, changes, provisioning, shapes, timetable, verification, zoomwork
from .models import Course

bp = api_blueprint("courses_api", __name__)
api = Routes(bp, tag="courses")

# What an operation that changes a course in Zoom can answer besides success (and 401/403,
# which every operation can).
CHANGE_ERRORS = (404, 409, 415, 502, 503)


# --- answering with what Zoom did ---------------------------------------------------------


def _send_to_zoom(course_id: int) -> Course:
    """Commit the change, do its Zoom work with no transaction open, and read the course again.

    The API answers with what Zoom did, so its client waits for Zoom; nothing else does.
    """
    session = get_session()
    session.commit()
    zoomwork.run_now(current_app._get_current_object(), course_id)  # type: ignore[attr-defined]
    session.expire_all()
    course = session.get(Course, course_id)
    assert course is not None
    return course


def _class_answer(course_id: int, class_id: int) -> shapes.ClassSession:
    course = _send_to_zoom(course_id)
    return shapes.ClassSession.of(course, access.get_class(course, class_id))


def _zoom_problem(course: Course) -> CompanionError | None:
    """Why the course is not in Zoom after its attempt, as the error the answer carries."""
    if course.zoom_state == "failed":
        return ZoomRefused(course.zoom_error or "Zoom refused the meeting.")
    if course.zoom_state == "pending":
        wait = 60
        if course.zoom_next_attempt_at is not None:
            wait = max(1, int((course.zoom_next_attempt_at - utcnow()).total_seconds()))
        reason = course.zoom_error or "Zoom did not answer yet; companion will try again."
        return ZoomUnavailable(
            "The course is saved but is still pending in Zoom: " + reason, retry_after=wait
        )
    return None


def _zoom_unavailable(course: Course, problem: CompanionError) -> Response:
    """The course was kept (committed before its Zoom work); say so with 503 (or 502 when Zoom
    refused)."""
    resp = error_response(problem.status, problem.code, problem.message, course_id=course.id)
    retry_after = getattr(problem, "retry_after", None)
    if retry_after:
        resp.headers["Retry-After"] = str(int(retry_after))
    return resp


def _outcome(outcome: provisioning.Outcome) -> shapes.Course | Response:
    course = _send_to_zoom(outcome.course.id)
    problem = _zoom_problem(course)
    if problem is not None:
        return _zoom_unavailable(course, problem)
    return shapes.Course.of(course, warnings=list(outcome.warnings))


# --- routes -----------------------------------------------------------------------------------


@api.route(
    "GET",
    "/courses",
    operation_id="listCourses",
    summary="Courses you may see (a teacher: their own; admin and lead: all)",
    ok=(200, "The courses", shapes.CourseList),
)
@allow(*STAFF)
def list_courses() -> shapes.CourseList:
    courses = access.list_courses(get_session(), current_user())
    return shapes.CourseList(courses=[shapes.CourseSummary.of(c) for c in courses])


@api.route(
    "POST",
    "/courses",
    operation_id="createCourse",
    summary="Schedule a course: one Zoom meeting, created, read back and verified",
    description="Bad input is refused with 422 before Zoom is called. When Zoom is down, slow "
    "or rate limiting the course is kept as `pending` and created automatically later: the "
    "answer is 503 with the course's id in `error.course_id`.",
    body=shapes.CourseCreate,
    ok=(201, "Created in Zoom (see `safety` for the verification)", shapes.Course),
    errors=(400, 415, 422, 502, 503),
)
@allow(TEACHER, ADMIN)
def create_course(body: shapes.CourseCreate) -> shapes.Course | Response:
    user = current_user()
    outcome = provisioning.create_course(
        get_session(),
        actor=user,
        title=body.title,
        series=body.series(user.organisation.timezone),
        now=utcnow(),
        teacher_id=body.teacher_id,
        zoom_user_id=current_app.config["ZOOM_USER_ID"],
    )
    return _outcome(outcome)


@api.route(
    "GET",
    "/courses/<int:course_id>",
    operation_id="getCourse",
    summary="One course, with its safety panel and passcode",
    ok=(200, "The course", shapes.Course),
    errors=(404,),
)
@allow(*STAFF)
def get_course(course_id: int) -> shapes.Course:
    return shapes.Course.of(access.get_course(get_session(), current_user(), course_id))


@api.route(
    "PATCH",
    "/courses/<int:course_id>",
    operation_id="updateCourse",
    summary="Change the title, teacher or the whole series",
    body=shapes.CourseUpdate,
    ok=(200, "Changed in Zoom and verified", shapes.Course),
    errors=(400, *CHANGE_ERRORS, 422),
)
@allow(TEACHER, ADMIN)
def update_course(course_id: int, body: shapes.CourseUpdate) -> shapes.Course | Response:
    user = current_user()
    session = get_session()
    course = access.get_course(session, user, course_id)
    now = utcnow()
    outcome = changes.update_course(
        session,
        actor=user,
        course_id=course.id,
        now=now,
        title=given(body.title, None),
        teacher_id=body.teacher_id,
        series=body.series_over(timetable.edit_defaults(course, now)),
    )
    return _outcome(outcome)


@api.route(
    "GET",
    "/courses/<int:course_id>/classes",
    operation_id="listClasses",
    summary="Every class of the course, cancelled ones included",
    ok=(200, "The classes, oldest first", shapes.ClassList),
    errors=(404,),
)
@allow(*STAFF)
def list_classes(course_id: int) -> shapes.ClassList:
    course = access.get_course(get_session(), current_user(), course_id)
    return shapes.ClassList(
        classes=[shapes.ClassSession.of(course, c) for c in timetable.class_sessions(course)]
    )


@api.route(
    "POST",
    "/courses/<int:course_id>/classes/<int:class_id>/move",
    operation_id="moveClass",
    summary="Move one class to another local date and time",
    body=shapes.ClassMove,
    ok=(200, "Moved in Zoom", shapes.ClassSession),
    errors=(400, *CHANGE_ERRORS, 422),
)
@allow(TEACHER, ADMIN)
def move_class(course_id: int, class_id: int, body: shapes.ClassMove) -> shapes.ClassSession:
    cls = changes.move_class(
        get_session(),
        actor=current_user(),
        course_id=course_id,
        class_id=class_id,
        day=body.date,
        at=body.start_time,
        duration_minutes=body.duration_minutes,
        now=utcnow(),
    )
    return _class_answer(course_id, cls.id)


@api.route(
    "POST",
    "/courses/<int:course_id>/classes/<int:class_id>/cancel",
    operation_id="cancelClass",
    summary="Cancel one class (its Zoom occurrence is deleted)",
    ok=(200, "Cancelled", shapes.ClassSession),
    errors=CHANGE_ERRORS,
)
@allow(TEACHER, ADMIN)
def cancel_class(course_id: int, class_id: int) -> shapes.ClassSession:
    cls = changes.cancel_class(
        get_session(), actor=current_user(), course_id=course_id, class_id=class_id, now=utcnow()
    )
    return _class_answer(course_id, cls.id)


@api.route(
    "POST",
    "/courses/<int:course_id>/cancel",
    operation_id="cancelCourse",
    summary="Cancel the course: its Zoom meeting is deleted",
    ok=(200, "Cancelled", shapes.Course),
    errors=CHANGE_ERRORS,
)
@allow(TEACHER, ADMIN)
def cancel_course(course_id: int) -> shapes.Course:
    changes.cancel_course(get_session(), actor=current_user(), course_id=course_id, now=utcnow())
    return shapes.Course.of(_send_to_zoom(course_id))


@api.route(
    "POST",
    "/courses/<int:course_id>/passcode",
    operation_id="rotatePasscode",
    summary="Give the meeting a new passcode (the old one leaked)",
    ok=(200, "Changed in Zoom and verified", shapes.Course),
    errors=CHANGE_ERRORS,
)
@allow(*STAFF)
def rotate_passcode(course_id: int) -> shapes.Course:
    changes.rotate_passcode(get_session(), actor=current_user(), course_id=course_id, now=utcnow())
    return shapes.Course.of(_send_to_zoom(course_id))


@api.route(
    "POST",
    "/courses/<int:course_id>/verify",
    operation_id="verifyCourse",
    summary="Re-read the meeting from Zoom now, put drifted settings back, verify",
    ok=(200, "The result is in `safety`", shapes.Course),
    errors=(404, 409, 415, 503),
)
@allow(*STAFF)
def verify_course(course_id: int) -> shapes.Course:
    verification.verify_now(get_session(), actor=current_user(), course_id=course_id, now=utcnow())
    return shapes.Course.of(_send_to_zoom(course_id))


@api.route(
    "POST",
    "/courses/<int:course_id>/retry",
    operation_id="retryCourse",
    summary="Try Zoom again now for a pending or refused course",
    ok=(200, "Created in Zoom", shapes.Course),
    errors=CHANGE_ERRORS,
)
@allow(TEACHER, ADMIN)
def retry_course(course_id: int) -> shapes.Course | Response:
    outcome = provisioning.retry_create(
        get_session(), actor=current_user(), course_id=course_id, now=utcnow()
    )
    return _outcome(outcome)
