"""Teacher pages: courses, their classes, the safety panel, and every change to them.

URL map (all under /courses):

    GET       /                                   list
    GET POST  /new                                create
    GET       /<id>                               one course: safety panel and classes
    GET POST  /<id>/edit                          title, teacher, the whole series
    GET POST  /<id>/classes/<class_id>/move       move one class
    POST      /<id>/classes/<class_id>/cancel     cancel one class
    GET POST  /<id>/cancel                        cancel the course
    POST      /<id>/passcode                      rotate the passcode
    POST      /<id>/verify                        re-check now (and repair)
    POST      /<id>/retry                         try Zoom again for a pending course
    POST      /<id>/start                         fetch a fresh start link and go there
    GET       /<id>/zoom-state                    its Zoom state as JSON (the page polls it)

No view calls Zoom while the request's transaction is open: a change is saved with what Zoom
must be told and committed (:func:`_send_to_zoom`), and the Zoom work then runs on its own
(:func:`.zoomwork.soon`); the course page shows its state and refreshes when it is done.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from wtforms import SelectChoice

from .. import policy
from ..access import ADMIN, STAFF, TEACHER, allow, current_user
from ..accounts.forms import ActionForm
from ..accounts.views import form_failed
from ..db import get_session, utcnow
from ..errors import CompanionError
from ..security import csp_allowing_forms_to
from ..zoom import zoom_for
from ..zoom.accessor import start_origins
from . import (
    access,
    changes,
    lifecycle,
    presentation,
    provisioning,
    timetable,
    verification,
    zoomwork,
)
from . import schedule as sched
from .forms import CourseForm, MoveClassForm
from .models import (
    SAFETY_LABELS,
    ZOOM_STATE_LABELS,
    ZOOM_WORK_LABELS,
    ClassSession,
    Course,
    ZoomState,
)

bp = Blueprint("courses", __name__, url_prefix="/courses")


@dataclass(frozen=True)
class ClassRow:
    number: int
    cls: ClassSession
    start: dt.datetime
    end: dt.datetime
    changeable: bool
    original: dt.datetime | None


def _rows(course: Course, now: dt.datetime, user: Any) -> list[ClassRow]:
    rows = []
    number = 0
    can_change = policy.may_change_course(user, course) and course.zoom_state == ZoomState.CREATED
    for cls in timetable.class_sessions(course):
        if cls.takes_place:
            number += 1
        rows.append(
            ClassRow(
                number=number if cls.takes_place else 0,
                cls=cls,
                start=timetable.local_time(course, cls.starts_at),
                end=timetable.local_time(course, cls.ends_at),
                changeable=can_change and cls.takes_place and cls.starts_at > now,
                original=timetable.local_time(course, cls.original_starts_at)
                if cls.original_starts_at
                else None,
            )
        )
    return rows


def describe(course: Course) -> str:
    days = sched.describe_days(course.weekday_list)
    end = (
        f"until {course.end_date:%-d %B %Y}"
        if course.end_date
        else f"{course.class_count} class{'es' if course.class_count != 1 else ''}"
    )
    return (
        f"{days} at {course.start_time:%H:%M} ({course.timezone}), "
        f"{course.duration_minutes} minutes, from {course.first_date:%-d %B %Y}, {end}"
    )


def zoom_version(course: Course) -> str:
    """Changes whenever anything the course page shows about Zoom changes (the page polls it)."""
    return "|".join(
        str(v)
        for v in (
            course.zoom_state,
            course.zoom_work,
            course.zoom_error,
            course.safety_state,
            course.last_verified_at and course.last_verified_at.isoformat(),
            course.zoom_next_attempt_at and course.zoom_next_attempt_at.isoformat(),
        )
    )


def _template_globals() -> dict[str, Any]:
    return {
        "zoom_labels": ZOOM_STATE_LABELS,
        "zoom_work_labels": ZOOM_WORK_LABELS,
        "safety_labels": SAFETY_LABELS,
        "describe": describe,
        "local_time": timetable.local_time,
        "zoom_version": zoom_version,
    }


def _send_to_zoom(course_id: int) -> None:
    """Commit the request's change now, then let the work engine tell Zoom.

    The commit comes first so that nothing waits on Zoom while the database is locked; the work
    runs with no transaction open and records Zoom's answer in a transaction of its own.
    """
    get_session().commit()
    zoomwork.soon(current_app._get_current_object(), course_id)  # type: ignore[attr-defined]


def _flash_outcome(outcome: provisioning.Outcome, done: str) -> None:
    for warning in outcome.warnings:
        flash(warning, "warning")
    flash(done)


def _prepare(form: CourseForm, user: Any, course: Course | None = None) -> None:
    if user.role == ADMIN:
        choices = [
            SelectChoice(t.id, f"{t.name} ({t.email})")
            for t in access.teachers(get_session(), user.organisation_id)
        ]
        if course is not None and course.teacher_id not in {c.value for c in choices}:
            choices.insert(0, SelectChoice(course.teacher_id, course.teacher.name))
        form.teacher_id.choices = choices
    else:
        del form.teacher_id


def _fill(form: CourseForm, series: sched.Series) -> None:
    form.first_date.data = series.first_date
    form.weekdays.data = list(series.weekdays)
    form.start_time.data = series.start_time
    form.duration_minutes.data = series.duration_minutes
    form.timezone.data = series.timezone
    form.end_mode.data = "date" if series.end_date else "count"
    form.class_count.data = series.class_count
    form.end_date.data = series.end_date


def _course(course_id: int) -> Course:
    return access.get_course(get_session(), current_user(), course_id)


@bp.get("/")
@allow(*STAFF)
def index() -> Any:
    user = current_user()
    now = utcnow()
    courses = access.list_courses(get_session(), user)
    presentation.preload_for_lists(get_session(), courses)
    next_class = {c.id: next(iter(timetable.upcoming_classes(c, now)), None) for c in courses}
    return render_template(
        "courses/index.html",
        courses=courses,
        next_class=next_class,
        can_create=policy.may_create_course(user),
        **_template_globals(),
    )


@bp.route("/new", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def new() -> Any:
    user = current_user()
    session = get_session()
    form = CourseForm()
    _prepare(form, user)
    if request.method == "GET":
        form.timezone.data = user.organisation.timezone
        form.duration_minutes.data = 45
        form.end_mode.data = "count"
    status = 200
    if form.validate_on_submit():
        try:
            outcome = provisioning.create_course(
                session,
                actor=user,
                title=form.title.data,
                series=form.series(),
                now=utcnow(),
                teacher_id=form.teacher_id.data if "teacher_id" in form else None,
                zoom_user_id=current_app.config["ZOOM_USER_ID"],
            )
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422
        else:
            course_id = outcome.course.id
            _send_to_zoom(course_id)
            _flash_outcome(
                outcome,
                "The course is saved. companion is putting it into Zoom and verifying its "
                "settings; this page shows how that goes.",
            )
            return redirect(url_for("courses.detail", course_id=course_id))
    elif request.method == "POST":
        status = 422
    return render_template("courses/form.html", form=form, course=None), status


@bp.get("/<int:course_id>")
@allow(*STAFF)
def detail(course_id: int) -> Any:
    user = current_user()
    course = _course(course_id)
    now = utcnow()
    can_start = course.teacher_id == user.id and course.zoom_state == ZoomState.CREATED
    page = render_template(
        "courses/detail.html",
        course=course,
        rows=_rows(course, now, user),
        panel=presentation.safety_panel(course),
        passcode=presentation.passcode_preview(course) if course.is_open else None,
        can_change=policy.may_change_course(user, course) and course.is_open,
        can_rotate=course.is_open and policy.may_rotate_passcode(user, course),
        can_start=can_start,
        is_safe=verification.course_is_safe(course),
        action_form=ActionForm(),
        **_template_globals(),
    )
    headers = {}
    if can_start:
        # "Start class" posts here and is redirected to Zoom's start link.
        origins = start_origins(current_app.config)
        headers["Content-Security-Policy"] = csp_allowing_forms_to(*origins)
    return page, 200, headers


@bp.route("/<int:course_id>/edit", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def edit(course_id: int) -> Any:
    user = current_user()
    session = get_session()
    course = _course(course_id)
    now = utcnow()
    initial = timetable.edit_defaults(course, now)
    form = CourseForm(obj=course if request.method == "GET" else None)
    _prepare(form, user, course)
    if request.method == "GET":
        _fill(form, initial)
    status = 200
    if form.validate_on_submit():
        try:
            series = form.series()
            outcome = changes.update_course(
                session,
                actor=user,
                course_id=course.id,
                now=now,
                title=form.title.data,
                teacher_id=form.teacher_id.data if "teacher_id" in form else None,
                series=None if series == initial else series,
            )
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422 if exc.status < 500 else exc.status
        else:
            _send_to_zoom(course.id)
            _flash_outcome(
                outcome,
                "Saved. companion is sending the change to Zoom and verifying it; this page "
                "shows how that goes.",
            )
            return redirect(url_for("courses.detail", course_id=course.id))
    elif request.method == "POST":
        status = 422
    return render_template("courses/form.html", form=form, course=course), status


@bp.route("/<int:course_id>/classes/<int:class_id>/move", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def move_class(course_id: int, class_id: int) -> Any:
    user = current_user()
    course = _course(course_id)
    cls = access.get_class(course, class_id)
    form = MoveClassForm()
    start = timetable.local_time(course, cls.starts_at)
    if request.method == "GET":
        form.date.data = start.date()
        form.start_time.data = start.time().replace(tzinfo=None)
        form.duration_minutes.data = cls.duration_minutes
    status = 200
    if form.validate_on_submit():
        try:
            changes.move_class(
                get_session(),
                actor=user,
                course_id=course.id,
                class_id=cls.id,
                day=form.date.data,
                at=form.start_time.data.replace(second=0, microsecond=0),
                duration_minutes=form.duration_minutes.data,
                now=utcnow(),
            )
        except CompanionError as exc:
            form_failed(form, exc)
            status = exc.status
        else:
            _send_to_zoom(course.id)
            flash("The class was moved; companion is moving it in Zoom.")
            return redirect(url_for("courses.detail", course_id=course.id))
    elif request.method == "POST":
        status = 422
    return render_template(
        "courses/move.html", form=form, course=course, cls=cls, start=start
    ), status


def _action(course_id: int, run: Any, done: str) -> Any:
    """Run a one-button change, commit it and hand its Zoom work on; a domain error is flashed
    and the course page shown again."""
    if not ActionForm().validate_on_submit():
        flash("This form has expired. Reload the page and try again.", "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    try:
        run()
    except CompanionError as exc:
        if exc.status in (403, 404):
            raise
        flash(exc.message, "error")
    else:
        _send_to_zoom(course_id)
        flash(done)
    return redirect(url_for("courses.detail", course_id=course_id))


@bp.post("/<int:course_id>/classes/<int:class_id>/cancel")
@allow(TEACHER, ADMIN)
def cancel_class(course_id: int, class_id: int) -> Any:
    return _action(
        course_id,
        lambda: changes.cancel_class(
            get_session(),
            actor=current_user(),
            course_id=course_id,
            class_id=class_id,
            now=utcnow(),
        ),
        "The class was cancelled; companion is deleting it in Zoom so its link stops working.",
    )


@bp.route("/<int:course_id>/cancel", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def cancel_course(course_id: int) -> Any:
    course = _course(course_id)
    if request.method == "GET":
        return render_template("courses/cancel.html", course=course, action_form=ActionForm())
    return _action(
        course_id,
        lambda: changes.cancel_course(
            get_session(), actor=current_user(), course_id=course_id, now=utcnow()
        ),
        "The course is cancelled; companion is deleting its meeting in Zoom so its links stop "
        "working.",
    )


@bp.post("/<int:course_id>/passcode")
@allow(*STAFF)
def rotate_passcode(course_id: int) -> Any:
    return _action(
        course_id,
        lambda: changes.rotate_passcode(
            get_session(), actor=current_user(), course_id=course_id, now=utcnow()
        ),
        "The passcode is changed; companion is changing it in Zoom, after which the old one no "
        "longer works.",
    )


@bp.post("/<int:course_id>/verify")
@allow(*STAFF)
def verify(course_id: int) -> Any:
    return _action(
        course_id,
        lambda: verification.verify_now(
            get_session(), actor=current_user(), course_id=course_id, now=utcnow()
        ),
        "companion is re-checking the meeting in Zoom; this page shows the result.",
    )


@bp.post("/<int:course_id>/retry")
@allow(TEACHER, ADMIN)
def retry(course_id: int) -> Any:
    return _action(
        course_id,
        lambda: provisioning.retry_create(
            get_session(), actor=current_user(), course_id=course_id, now=utcnow()
        ),
        "companion is trying Zoom again; this page shows how that goes.",
    )


@bp.post("/<int:course_id>/start")
@allow(TEACHER)
def start(course_id: int) -> Any:
    if not ActionForm().validate_on_submit():
        flash("This form has expired. Reload the page and try again.", "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    now = utcnow()
    try:
        plan = lifecycle.start_plan(
            get_session(), actor=current_user(), course_id=course_id, now=now
        )
        # Access checked and the start on the audit trail: commit before asking Zoom.
        get_session().commit()
        url = zoomwork.start_class(current_app._get_current_object(), zoom_for(), plan, now=now)  # type: ignore[attr-defined]
    except CompanionError as exc:
        if exc.status in (403, 404):
            raise
        flash(exc.message, "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    # Straight to Zoom; the link is in this answer only, never stored or logged.
    return redirect(url, code=303)


@bp.get("/<int:course_id>/zoom-state")
@allow(*STAFF)
def zoom_state(course_id: int) -> Any:
    """What the course page shows of Zoom, for the page to refresh itself when it changes."""
    course = _course(course_id)
    response = jsonify(
        {
            "state": course.zoom_state,
            "label": ZOOM_STATE_LABELS[course.zoom_state],
            "work": course.zoom_work or None,
            "work_label": ZOOM_WORK_LABELS.get(course.zoom_work),
            "error": course.zoom_error or None,
            "safety": course.safety_state,
            "busy": course.zoom_busy,
            "version": zoom_version(course),
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response
