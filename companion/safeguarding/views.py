"""The safeguarding lead's workspace.

URL map::

    GET       /safeguarding/                                  open concerns, holds, disclosures
    GET       /safeguarding/recordings                        by course, class, child, date
    GET       /safeguarding/concerns/<id>                     a concern's chronology
    POST      /safeguarding/concerns/<id>/notes               add a note
    POST      /safeguarding/concerns/<id>/outcome             close it (optionally release the hold)
    POST      /safeguarding/concerns/<id>/disclosures         a recording shared outside
    POST      /safeguarding/concerns/<id>/tell-family         a message to a family's parents
    GET POST  /safeguarding/disclosures                       every disclosure; record one

Only the safeguarding lead; the access layer refuses (403) and records everybody else.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for

from ..access import LEAD, allow, current_user
from ..courses.timetable import local_time
from ..db import get_session, utcnow
from ..errors import CompanionError, ValidationError
from . import services
from .models import OUTCOMES

bp = Blueprint("safeguarding", __name__, url_prefix="/safeguarding")


def _tz() -> ZoneInfo:
    return ZoneInfo(current_user().organisation.timezone)


def _today() -> dt.date:
    return utcnow().astimezone(_tz()).date()


def _number(raw: str | None, name: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise ValidationError(f"{name} must be a number.", field=name)
    return int(raw)


def _day(raw: str | None, name: str) -> dt.date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{raw[:20]!r} is not a date (YYYY-MM-DD).", field=name) from None


def _helpers() -> dict[str, Any]:
    tz = _tz()
    return {
        "tz": tz,
        "local": lambda moment: moment.astimezone(tz) if moment else None,
        "outcomes": OUTCOMES,
        "course_time": local_time,
    }


@bp.get("/")
@allow(LEAD)
def index() -> Any:
    session = get_session()
    user = current_user()
    return render_template(
        "safeguarding/index.html",
        concerns=services.open_concerns(session, user),
        closed=services.closed_concerns(session, user),
        holds=services.open_holds(session, user),
        disclosures=services.disclosures(session, user)[:20],
        **_helpers(),
    )


@bp.get("/recordings")
@allow(LEAD)
def recordings() -> Any:
    session = get_session()
    user = current_user()
    args = request.args
    error = ""
    found: list[Any] = []
    course_id = None
    try:
        course_id = _number(args.get("course_id"), "course_id")
        since = _day(args.get("since"), "since")
        until = _day(args.get("until"), "until")
        tz = _tz()
        f = services.RecordingFilter(
            course_id=course_id,
            class_id=_number(args.get("class_id"), "class_id"),
            child=(args.get("child") or "").strip()[:130],
            since=dt.datetime.combine(since, dt.time(), tz) if since else None,
            until=dt.datetime.combine(until, dt.time(), tz) + dt.timedelta(days=1)
            if until
            else None,
            include_deleted=args.get("deleted") == "1",
        )
        if f.since and f.until and f.until <= f.since:
            raise ValidationError("The end date is before the start date.", field="until")
        found = services.find_recordings(session, user, f)
        classes = services.class_choices(session, user, course_id)
    except CompanionError as exc:
        if exc.status == 404:
            error, classes = "No such course.", []
        else:
            error, classes = exc.message, []
    return render_template(
        "safeguarding/recordings.html",
        recordings=found,
        error=error,
        args=args,
        course_list=services.courses_for_filter(session, user),
        classes=classes,
        **_helpers(),
    ), (422 if error else 200)


def _concern_page(concern_id: int, errors: dict[str, str] | None = None, status: int = 200):
    chron = services.chronology(get_session(), current_user(), concern_id)
    return render_template(
        "safeguarding/concern.html",
        c=chron,
        concern=chron.concern,
        errors=errors or {},
        form=request.form if request.method == "POST" else {},
        today=_today(),
        **_helpers(),
    ), status


@bp.get("/concerns/<int:concern_id>")
@allow(LEAD)
def concern(concern_id: int) -> Any:
    return _concern_page(concern_id)


def _failed(concern_id: int, which: str, exc: CompanionError) -> Any:
    if exc.status == 404 and not exc.details.get("field"):
        raise exc
    return _concern_page(concern_id, {which: exc.message}, 422 if exc.status < 409 else exc.status)


@bp.post("/concerns/<int:concern_id>/notes")
@allow(LEAD)
def add_note(concern_id: int) -> Any:
    try:
        services.add_note(
            get_session(),
            current_user(),
            concern_id=concern_id,
            body=request.form.get("body", ""),
            now=utcnow(),
        )
    except CompanionError as exc:
        return _failed(concern_id, "note", exc)
    flash("The note is added to the chronology.")
    return redirect(url_for("safeguarding.concern", concern_id=concern_id), code=303)


@bp.post("/concerns/<int:concern_id>/outcome")
@allow(LEAD)
def outcome(concern_id: int) -> Any:
    try:
        services.record_outcome(
            get_session(),
            current_user(),
            concern_id=concern_id,
            outcome=request.form.get("outcome", ""),
            summary=request.form.get("summary", ""),
            release_hold=request.form.get("release_hold") == "yes",
            release_reason=request.form.get("release_reason", ""),
            now=utcnow(),
        )
    except CompanionError as exc:
        return _failed(concern_id, "outcome", exc)
    flash("The concern is closed and its outcome recorded.")
    return redirect(url_for("safeguarding.concern", concern_id=concern_id), code=303)


def _disclose(concern_id: int | None) -> None:
    raw = (request.form.get("recording_id") or "").strip()
    try:
        recording_id = uuid.UUID(raw)
    except ValueError:
        raise ValidationError(
            "Choose the recording that was shared.", field="recording_id"
        ) from None
    disclosed_on = _day(request.form.get("disclosed_on"), "disclosed_on")
    if disclosed_on is None:
        raise ValidationError("Give the date it was shared.", field="disclosed_on")
    services.record_disclosure(
        get_session(),
        current_user(),
        recording_id=recording_id,
        concern_id=concern_id,
        recipient_name=request.form.get("recipient_name", ""),
        recipient_organisation=request.form.get("recipient_organisation", ""),
        reason=request.form.get("reason", ""),
        what=request.form.get("what", ""),
        disclosed_on=disclosed_on,
        today=_today(),
        now=utcnow(),
    )


@bp.post("/concerns/<int:concern_id>/disclosures")
@allow(LEAD)
def disclose(concern_id: int) -> Any:
    try:
        _disclose(concern_id)
    except CompanionError as exc:
        return _failed(concern_id, "disclosure", exc)
    flash("The disclosure is recorded.")
    return redirect(url_for("safeguarding.concern", concern_id=concern_id), code=303)


@bp.post("/concerns/<int:concern_id>/tell-family")
@allow(LEAD)
def tell_family(concern_id: int) -> Any:
    try:
        family_id = _number(request.form.get("family_id"), "family_id")
        if family_id is None:
            raise ValidationError("Choose the family to tell.", field="family_id")
        notice = services.tell_family(
            get_session(),
            current_user(),
            concern_id=concern_id,
            family_id=family_id,
            subject=request.form.get("subject", ""),
            body=request.form.get("body", ""),
            now=utcnow(),
        )
    except CompanionError as exc:
        return _failed(concern_id, "notice", exc)
    flash(f"The message is on its way to {notice.recipients} parent(s).")
    return redirect(url_for("safeguarding.concern", concern_id=concern_id), code=303)


@bp.route("/disclosures", methods=["GET", "POST"])
@allow(LEAD)
def disclosures() -> Any:
    session = get_session()
    user = current_user()
    error = ""
    if request.method == "POST":
        try:
            _disclose(None)
        except CompanionError as exc:
            error = exc.message
        else:
            flash("The disclosure is recorded.")
            return redirect(url_for("safeguarding.disclosures"), code=303)
    return render_template(
        "safeguarding/disclosures.html",
        disclosures=services.disclosures(session, user),
        recordings=services.find_recordings(session, user, services.RecordingFilter()),
        error=error,
        form=request.form,
        today=_today(),
        **_helpers(),
    ), (422 if error else 200)
