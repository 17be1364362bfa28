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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from wtforms import SelectChoice

from ..access import ADMIN, LEAD, STAFF, TEACHER, allow, current_user
from ..accounts.forms import ActionForm
from ..accounts.views import form_failed
from ..db import get_session, keep_changes, utcnow
from ..errors import CompanionError
from . import schedule as sched
from . import services
from .forms import CourseForm, MoveClassForm
from .models import SAFETY_LABELS, ZOOM_STATE_LABELS, ClassSession, Course
from .zoomclient import zoom_for

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
    can_change = services.may_change(user, course) and course.zoom_state == "created"
    for cls in services.class_sessions(course):
        if cls.takes_place:
            number += 1
        rows.append(
            ClassRow(
                number=number if cls.takes_place else 0,
                cls=cls,
                start=services.local_time(course, cls.starts_at),
                end=services.local_time(course, cls.ends_at),
                changeable=can_change and cls.takes_place and cls.starts_at > now,
                original=services.local_time(course, cls.original_starts_at)
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


def _template_globals() -> dict[str, Any]:
    return {
        "zoom_labels": ZOOM_STATE_LABELS,
        "safety_labels": SAFETY_LABELS,
        "describe": describe,
        "local_time": services.local_time,
    }


def _flash_outcome(outcome: services.Outcome, done: str) -> None:
    for warning in outcome.warnings:
        flash(warning, "warning")
    if outcome.zoom_problem is not None:
        flash(outcome.zoom_problem.message, "error")
    else:
        flash(done)
    course = outcome.course
    if course.safety_state == "not_safe":
        flash(
            "Zoom is not applying every safety setting to this course; see the safety panel. "
            "The safeguarding lead has been told.",
            "error",
        )


def _prepare(form: CourseForm, user: Any, course: Course | None = None) -> None:
    if user.role == ADMIN:
        choices = [
            SelectChoice(t.id, f"{t.name} ({t.email})")
            for t in services.teachers(get_session(), user.organisation_id)
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
    return services.get_course(get_session(), current_user(), course_id)


@bp.get("/")
@allow(*STAFF)
def index() -> Any:
    user = current_user()
    now = utcnow()
    courses = services.list_courses(get_session(), user)
    services.preload_for_lists(get_session(), courses)
    next_class = {c.id: next(iter(services.upcoming_classes(c, now)), None) for c in courses}
    return render_template(
        "courses/index.html",
        courses=courses,
        next_class=next_class,
        can_create=user.role in (TEACHER, ADMIN),
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
            outcome = services.create_course(
                session,
                zoom_for(),
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
            _flash_outcome(outcome, "The course is in Zoom and its settings were verified.")
            return redirect(url_for("courses.detail", course_id=outcome.course.id))
    elif request.method == "POST":
        status = 422
    return render_template("courses/form.html", form=form, course=None), status


@bp.get("/<int:course_id>")
@allow(*STAFF)
def detail(course_id: int) -> Any:
    user = current_user()
    course = _course(course_id)
    now = utcnow()
    return render_template(
        "courses/detail.html",
        course=course,
        rows=_rows(course, now, user),
        panel=services.safety_panel(course),
        passcode=services.passcode_preview(course) if course.is_open else None,
        can_change=services.may_change(user, course) and course.is_open,
        can_rotate=course.is_open and (services.may_change(user, course) or user.role == LEAD),
        can_start=course.teacher_id == user.id and course.zoom_state == "created",
        is_safe=services.course_is_safe(course),
        action_form=ActionForm(),
        **_template_globals(),
    )


@bp.route("/<int:course_id>/edit", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def edit(course_id: int) -> Any:
    user = current_user()
    session = get_session()
    course = _course(course_id)
    now = utcnow()
    initial = services.edit_defaults(course, now)
    form = CourseForm(obj=course if request.method == "GET" else None)
    _prepare(form, user, course)
    if request.method == "GET":
        _fill(form, initial)
    status = 200
    if form.validate_on_submit():
        try:
            series = form.series()
            outcome = services.update_course(
                session,
                zoom_for(),
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
            _flash_outcome(outcome, "Saved; Zoom has the change and it was verified.")
            return redirect(url_for("courses.detail", course_id=course.id))
    elif request.method == "POST":
        status = 422
    return render_template("courses/form.html", form=form, course=course), status


@bp.route("/<int:course_id>/classes/<int:class_id>/move", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def move_class(course_id: int, class_id: int) -> Any:
    user = current_user()
    course = _course(course_id)
    cls = services.get_class(course, class_id)
    form = MoveClassForm()
    start = services.local_time(course, cls.starts_at)
    if request.method == "GET":
        form.date.data = start.date()
        form.start_time.data = start.time().replace(tzinfo=None)
        form.duration_minutes.data = cls.duration_minutes
    status = 200
    if form.validate_on_submit():
        try:
            services.move_class(
                get_session(),
                zoom_for(),
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
            flash("The class was moved in Zoom.")
            return redirect(url_for("courses.detail", course_id=course.id))
    elif request.method == "POST":
        status = 422
    return render_template(
        "courses/move.html", form=form, course=course, cls=cls, start=start
    ), status


def _action(course_id: int, run: Any, done: str) -> Any:
    """Run a one-button change; a domain error is flashed and the course page shown again."""
    if not ActionForm().validate_on_submit():
        flash("This form has expired. Reload the page and try again.", "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    try:
        message = run()
    except CompanionError as exc:
        if exc.status in (403, 404):
            raise
        flash(exc.message, "error")
    else:
        if isinstance(message, tuple):
            flash(*message)
        else:
            flash(message or done)
    return redirect(url_for("courses.detail", course_id=course_id))


@bp.post("/<int:course_id>/classes/<int:class_id>/cancel")
@allow(TEACHER, ADMIN)
def cancel_class(course_id: int, class_id: int) -> Any:
    return _action(
        course_id,
        lambda: (
            services.cancel_class(
                get_session(),
                zoom_for(),
                actor=current_user(),
                course_id=course_id,
                class_id=class_id,
                now=utcnow(),
            )
            and None
        ),
        "The class was cancelled; its Zoom occurrence is deleted.",
    )


@bp.route("/<int:course_id>/cancel", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def cancel_course(course_id: int) -> Any:
    course = _course(course_id)
    if request.method == "GET":
        return render_template("courses/cancel.html", course=course, action_form=ActionForm())
    return _action(
        course_id,
        lambda: (
            services.cancel_course(
                get_session(), zoom_for(), actor=current_user(), course_id=course_id, now=utcnow()
            )
            and None
        ),
        "The course is cancelled and its meeting deleted in Zoom; its links no longer work.",
    )


@bp.post("/<int:course_id>/passcode")
@allow(*STAFF)
def rotate_passcode(course_id: int) -> Any:
    return _action(
        course_id,
        lambda: (
            services.rotate_passcode(
                get_session(), zoom_for(), actor=current_user(), course_id=course_id, now=utcnow()
            )
            and None
        ),
        "The passcode was changed in Zoom. The old one no longer works.",
    )


@bp.post("/<int:course_id>/verify")
@allow(*STAFF)
def verify(course_id: int) -> Any:
    def run() -> tuple[str, str]:
        problems = services.verify_now(
            get_session(), zoom_for(), actor=current_user(), course_id=course_id, now=utcnow()
        )
        if problems:
            reasons = "; ".join(p.describe() for p in problems)
            return f"Checked: the course is NOT safe: {reasons}.", "error"
        return "Checked: every safety setting is on in Zoom.", "message"

    return _action(course_id, run, "")


@bp.post("/<int:course_id>/retry")
@allow(TEACHER, ADMIN)
def retry(course_id: int) -> Any:
    def run() -> str:
        outcome = services.retry_create(
            get_session(), zoom_for(), actor=current_user(), course_id=course_id, now=utcnow()
        )
        if outcome.zoom_problem is not None:
            raise outcome.zoom_problem
        return "The course is in Zoom now."

    return _action(course_id, run, "")


@bp.post("/<int:course_id>/start")
@allow(TEACHER)
def start(course_id: int) -> Any:
    if not ActionForm().validate_on_submit():
        flash("This form has expired. Reload the page and try again.", "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    try:
        url = services.start_link(
            get_session(), zoom_for(), actor=current_user(), course_id=course_id, now=utcnow()
        )
    except services.NotSafeToStart as exc:
        keep_changes()  # the course is marked not safe and people are told, even so
        flash(exc.message, "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    except CompanionError as exc:
        if exc.status in (403, 404):
            raise
        flash(exc.message, "error")
        return redirect(url_for("courses.detail", course_id=course_id))
    # Straight to Zoom; the link is in this answer only, never stored or logged.
    return redirect(url, code=303)
