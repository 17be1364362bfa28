"""Class evidence pages.

URL map:

    GET   /courses/<id>/classes/<class_id>/record         the class record (staff; a teacher
                                                           only their own, without recordings)
    POST  /courses/<id>/classes/<class_id>/evidence-pack  the signed zip (the lead)
    GET   /evidence/                                      warnings, unknown meetings, classes
                                                           that never started (the lead)
    GET   /evidence/meetings/<id>                         one meeting's events (the lead)
    GET POST /evidence/verify                             check an evidence pack (the lead)
    GET POST /evidence/settings                           the organisation's options (admin)
    GET   /evidence/families/                             families, to export or erase (admin)
    GET   /evidence/families/<fid>                        one family's data (admin)
    POST  /evidence/families/<fid>/export                 subject access: JSON or zip (admin)
    POST  /evidence/families/<fid>/erase                  erase a family that has left (admin)
    POST  /f/classes/<class_id>/adult-present             a parent: an adult is in the room
"""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from ..access import ADMIN, LEAD, STAFF, allow, current_user, family
from ..accounts.auth import client_ip
from ..courses.timetable import local_time
from ..db import get_session, utcnow
from ..errors import CompanionError, ValidationError
from ..families import family_views
from ..families.extensions import AdmitColumn, ClassPanel
from ..families.people import display_name
from ..recordings.models import FILE_STATE_LABELS
from ..recordings.views import human_size
from ..security import csrf
from . import pack, services, subject_access
from .models import EVENT_LABELS, WARNING_LABELS, ClassWarning, WarningStatus

bp = Blueprint("evidence", __name__)
family_bp = Blueprint("evidence_family", __name__, url_prefix="/f")
# Like the family blueprint: the family session's own form token instead of Flask-WTF's.
csrf.exempt(family_bp)
family_bp.before_request(family_views.check_form_token)


def init_app(app: Flask) -> None:
    """Blueprints and the warning banner (the admit column and family panel below are connected
    by companion.evidence.init_app)."""
    app.register_blueprint(bp)
    app.register_blueprint(family_bp)

    @app.context_processor
    def _evidence_globals() -> dict[str, Any]:
        return {"evidence_warnings": _warnings_for_class}


def admit_column(_sender: Any = None) -> AdmitColumn:
    """The admit list's "Adult present" column (receiver of ``signals.admit_columns``)."""
    return AdmitColumn("adult", "Adult present", services.admit_column_values)


def family_class_panel(_sender: Any = None) -> ClassPanel:
    """The family page's "an adult is in the room" panel (``signals.family_class_panels``)."""
    return ClassPanel("adult", "evidence/_adult_panel.html", services.family_panel_values)


def _warnings_for_class(cls: Any) -> list[Any]:
    """Warnings still standing for a class (the banner other class pages include)."""
    if cls is None or getattr(cls, "id", None) is None:
        return []
    return list(
        get_session().scalars(
            select(ClassWarning)
            .where(
                ClassWarning.class_session_id == cls.id,
                ClassWarning.status != WarningStatus.RETRACTED,
            )
            .order_by(ClassWarning.period_start)
        )
    )


def _globals() -> dict[str, Any]:
    return {
        "labels": EVENT_LABELS,
        "warning_labels": WARNING_LABELS,
        "state_labels": FILE_STATE_LABELS,
        "human_size": human_size,
        "local_time": local_time,
    }


@bp.get("/courses/<int:course_id>/classes/<int:class_id>/record")
@allow(*STAFF)
def class_record(course_id: int, class_id: int) -> Any:
    record = services.class_record(get_session(), current_user(), course_id, class_id, now=utcnow())
    return render_template("evidence/record.html", record=record, **_globals())


@bp.post("/courses/<int:course_id>/classes/<int:class_id>/evidence-pack")
@allow(LEAD)
def export_pack(course_id: int, class_id: int) -> Any:
    built = pack.build_pack(
        get_session(),
        current_user(),
        course_id,
        class_id,
        now=utcnow(),
    )
    return Response(
        built.data,
        mimetype="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{built.filename}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/evidence/")
@allow(LEAD)
def index() -> Any:
    session, actor, now = get_session(), current_user(), utcnow()
    return render_template(
        "evidence/index.html",
        warnings=services.recent_warnings(session, actor),
        unmatched=services.unmatched_meetings(session, actor),
        never_started=services.classes_never_started(session, actor, now=now),
        key=pack.public_key_info(actor.organisation_id),
        earlier_keys=pack.earlier_keys(session, actor.organisation_id),
        **_globals(),
    )


@bp.get("/evidence/meetings/<int:meeting_id>")
@allow(LEAD)
def meeting(meeting_id: int) -> Any:
    view = services.get_meeting(get_session(), current_user(), meeting_id)
    return render_template("evidence/meeting.html", mv=view, **_globals())


@bp.route("/evidence/verify", methods=["GET", "POST"])
@allow(LEAD)
def verify() -> Any:
    actor = current_user()
    result = None
    error = ""
    status = 200
    if request.method == "POST":
        upload = request.files.get("pack")
        data = upload.read(pack.MAX_PACK_BYTES + 1) if upload is not None else b""
        try:
            if not data:
                raise ValidationError("Choose the evidence pack (.zip) to check.", field="pack")
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            result = pack.verify_pack(
                get_session(), app, data, organisation_id=actor.organisation_id
            )
            # Read only so far: end the transaction before the blobs are read from the store.
            get_session().commit()
            pack.rehash_stored(app, result)
            pack.record_verification(get_session(), actor, result)
        except CompanionError as exc:
            error = exc.message
            status = 400
    return (
        render_template("evidence/verify.html", result=result, error=error, **_globals()),
        status,
    )


@bp.route("/evidence/settings", methods=["GET", "POST"])
@allow(ADMIN)
def settings() -> Any:
    session, actor = get_session(), current_user()
    error = ""
    if request.method == "POST":
        try:
            grace = _int(request.form.get("alone_grace_minutes", ""), "alone_grace_minutes")
            window = _int(request.form.get("confirm_from_minutes", ""), "confirm_from_minutes")
            services.update_settings(
                session,
                actor,
                list_unconfirmed=request.form.get("list_unconfirmed") == "yes",
                one_child_rule=request.form.get("one_child_rule") == "yes",
                alone_grace_minutes=grace,
                confirm_from_minutes=window,
                now=utcnow(),
            )
        except CompanionError as exc:
            error = exc.message
        else:
            flash("Saved.", "message")
            return redirect(url_for("evidence.settings"), code=303)
    row = services.settings_for(session, actor.organisation_id)
    return (
        render_template("evidence/settings.html", settings=row, error=error),
        400 if error else 200,
    )


def _int(raw: str, field: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 5:
        raise ValidationError("Give a whole number of minutes.", field=field)
    return int(raw)


@bp.get("/evidence/families/")
@allow(ADMIN)
def family_list() -> Any:
    rows = subject_access.list_families(get_session(), current_user())
    return render_template("evidence/families.html", rows=rows, display_name=display_name)


@bp.get("/evidence/families/<int:family_id>")
@allow(ADMIN)
def family_data(family_id: int) -> Any:
    session = get_session()
    fam = subject_access.get_family(session, current_user(), family_id)
    return render_template(
        "evidence/family.html",
        fam=fam,
        name=display_name(fam),
        held=subject_access.holds_keeping(session, fam),
        attended=subject_access.attended_classes(session, fam),
        local_time=local_time,
    )


@bp.post("/evidence/families/<int:family_id>/export")
@allow(ADMIN)
def family_export(family_id: int) -> Any:
    data = subject_access.export_family(get_session(), current_user(), family_id, now=utcnow())
    fmt = request.form.get("format", "json")
    if fmt == "zip":
        body, mimetype, ext = subject_access.export_zip(data), "application/zip", "zip"
    else:
        body = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
        mimetype, ext = "application/json", "json"
    return Response(
        body,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="family-{family_id}.{ext}"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/evidence/families/<int:family_id>/erase")
@allow(ADMIN)
def family_erase(family_id: int) -> Any:
    if request.form.get("confirm") != "erase":
        flash("Type erase to confirm. Nothing was erased.", "error")
        return redirect(url_for("evidence.family_data", family_id=family_id), code=303)
    try:
        result = subject_access.erase_family(get_session(), current_user(), family_id, now=utcnow())
    except CompanionError as exc:
        if exc.status == 404:
            raise
        # Redirected (not an error status), so a refusal's audit row is kept.
        flash(exc.message, "error")
        return redirect(url_for("evidence.family_data", family_id=family_id), code=303)
    flash(
        f"The family's data was erased ({result.counts.get('contacts', 0)} contact(s); "
        f"{result.counts.get('attendance_anonymised', 0)} attendance rows kept anonymously).",
        "message",
    )
    return redirect(url_for("evidence.family_list"), code=303)


# --- the parents' side -----------------------------------------------------------------------


@family_bp.post("/classes/<int:class_id>/adult-present")
@family
def adult_present(class_id: int) -> Any:
    who = g.family
    row = who.session_row
    try:
        result = services.confirm_adult(
            get_session(), who, class_id=class_id, now=utcnow(), ip=client_ip()
        )
    except CompanionError as exc:
        if exc.status == 404:
            raise
        row.notice, row.notice_kind = exc.message[:500], "error"
    else:
        if result.created:
            row.notice = "Thank you: the teacher can see that an adult is in the room."
            row.notice_kind = "message"
        else:
            row.notice = "An adult's presence was already confirmed for this class."
            row.notice_kind = "warning"
    return redirect(url_for("family.home"), code=303)
