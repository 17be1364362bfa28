"""Recordings (safeguarding lead only) and concerns (teachers and the lead).

URL map::

    GET       /recordings/                                   list (lead)
    GET       /recordings/<id>                               one recording: files, hold (lead)
    POST      /recordings/<id>/files/<file_id>/access        state a reason -> a grant (lead)
    GET       /recordings/open/<token>                       player and download link (lead)
    GET       /recordings/open/<token>/file                  the decrypted file, with ranges (lead)
    POST      /recordings/<id>/hold                          keep one recording (lead)
    GET       /concerns/                                     concerns raised (teacher: own)
    GET POST  /concerns/new                                  raise a concern about a class
    GET       /concerns/<id>                                 one concern and its hold
    POST      /concerns/holds/<hold_id>/release              release a hold, with a reason (lead)

Everyone else gets 403 (staff, recorded by the access layer) or the sign-in page (anyone not
signed in, recorded here as a refused attempt).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
import zoneinfo
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from wtforms import SelectChoice

from .. import policy
from ..access import LEAD, TEACHER, allow, current_user, signed_in_user
from ..accounts.auth import client_ip, current_staff_session
from ..accounts.twofactor_views import require_recent_second_factor
from ..accounts.views import form_failed
from ..courses import timetable
from ..db import get_session, kept_transaction, refusal_recorded, utcnow
from ..errors import CompanionError, NotFound, error_response
from . import concerns, services, vault
from .crypto import CorruptedOrTampered, DecryptingReader
from .forms import AccessForm, ConcernForm, ReasonForm
from .models import FILE_STATE_LABELS, READABLE_STATES, Recording, RecordingFile

log = logging.getLogger(__name__)

bp = Blueprint("recordings", __name__, url_prefix="/recordings")
concerns_bp = Blueprint("concerns", __name__, url_prefix="/concerns")

# Served files must never be interpreted as a page of this site, whatever they contain.
FILE_CSP = "default-src 'none'; sandbox"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@bp.after_request
def _record_anonymous_attempts(response: Response) -> Response:
    # Staff with another role are refused (403) and recorded by the access layer. Somebody
    # not signed in as staff (a parent, a stranger) is sent to sign in; record the attempt too.
    if signed_in_user() is None:
        get_session().rollback()  # a refused request keeps nothing but its refusal
        with kept_transaction() as db:
            services.record_refused(
                db, path=request.path, method=request.method, ip=client_ip(), actor=None
            )
        refusal_recorded()
    return response


# --- helpers for templates -------------------------------------------------------------------


def local_time(rec: Recording, moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    if rec.course is not None:
        return timetable.local_time(rec.course, moment)
    tz = current_app.config.get("DEFAULT_TIMEZONE") or "UTC"
    return moment.astimezone(zoneinfo.ZoneInfo(tz))


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} bytes"  # pragma: no cover


def _template_helpers() -> dict[str, Any]:
    return {
        "local_time": local_time,
        "human_size": human_size,
        "state_labels": FILE_STATE_LABELS,
        "readable_states": READABLE_STATES,
    }


# --- recordings (lead) ---------------------------------------------------------------------------


@bp.get("/")
@allow(LEAD)
def index() -> Any:
    show_deleted = request.args.get("deleted") == "1"
    recordings = services.list_recordings(
        get_session(), current_user(), include_deleted=show_deleted
    )
    return render_template(
        "recordings/index.html",
        recordings=recordings,
        show_deleted=show_deleted,
        **_template_helpers(),
    )


@bp.get("/<uuid:recording_id>")
@allow(LEAD)
@require_recent_second_factor()
def detail(recording_id: uuid.UUID) -> Any:
    rec = services.get_recording(get_session(), current_user(), recording_id)
    return _detail_page(rec, AccessForm(), ReasonForm(), None)


def _detail_page(
    rec: Recording, form: AccessForm, hold_form: ReasonForm, failed_file: uuid.UUID | None
) -> Any:
    session = get_session()
    hold_list = [h for h in concerns.active_holds(session, current_user()) if _holds(h, rec)]
    return render_template(
        "recordings/detail.html",
        rec=rec,
        form=form,
        hold_form=hold_form,
        failed_file=failed_file,
        holds=hold_list,
        **_template_helpers(),
    )


def _holds(hold: Any, rec: Recording) -> bool:
    return hold.recording_id == rec.id or (
        rec.class_session_id is not None and hold.class_session_id == rec.class_session_id
    )


@bp.post("/<uuid:recording_id>/files/<uuid:file_id>/access")
@allow(LEAD)
@require_recent_second_factor()
def access(recording_id: uuid.UUID, file_id: uuid.UUID) -> Any:
    session = get_session()
    user = current_user()
    rec = services.get_recording(session, user, recording_id)
    form = AccessForm()
    if form.validate_on_submit():
        try:
            new = services.grant_access(
                session,
                user,
                current_staff_session(),
                recording_id=rec.id,
                file_id=file_id,
                reason=form.reason.data,
                incident_ref=form.incident_ref.data or "",
                ip=client_ip(),
                now=utcnow(),
            )
        except CompanionError as exc:
            if exc.status == 404:
                raise
            form_failed(form, exc)
        else:
            return redirect(url_for("recordings.open_grant", token=new.token))
    return _detail_page(rec, form, ReasonForm(formdata=None), file_id), 422


@bp.post("/<uuid:recording_id>/hold")
@allow(LEAD)
def hold(recording_id: uuid.UUID) -> Any:
    session = get_session()
    user = current_user()
    rec = services.get_recording(session, user, recording_id)
    form = ReasonForm()
    if form.validate_on_submit():
        try:
            concerns.place_hold(
                session, user, recording_id=rec.id, reason=form.reason.data, now=utcnow()
            )
        except CompanionError as exc:
            if exc.status == 404:
                raise
            form_failed(form, exc)
        else:
            flash("The recording is on hold: it will not be deleted until you release the hold.")
            return redirect(url_for("recordings.detail", recording_id=rec.id))
    return _detail_page(rec, AccessForm(formdata=None), form, None), 422


def _grant(token: str, *, use: bool) -> Any:
    refused: NotFound | None = None
    # Using a grant (and a refusal) is written at once, in its own short transaction: the file
    # then streams with no transaction open.
    with kept_transaction() as db:
        try:
            return services.use_grant(
                db,
                current_user(),
                current_staff_session(),
                token,
                ip=client_ip(),
                what=request.headers.get("Range", "whole file") if use else "",
                now=utcnow(),
                use=use,
            )
        except NotFound as exc:
            refused = exc  # the refusal is committed with the block and stays on the trail
    refusal_recorded()
    assert refused is not None
    raise refused


@bp.get("/open/<token>")
@allow(LEAD)
def open_grant(token: str) -> Any:
    grant = _grant(token, use=False)
    file = grant.file
    return render_template(
        "recordings/open.html",
        grant=grant,
        file=file,
        rec=file.recording,
        token=token,
        content_type=services.content_type(file),
        **_template_helpers(),
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range asked for, None for the whole file; ValueError if unsatisfiable.

    Several ranges in one request are answered with the whole file, which HTTP allows; a
    browser seeking in a video asks for one range per request.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # not a single byte range: ignored, as HTTP allows
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None  # syntactically invalid: ignored
    else:
        suffix = int(last)
        if suffix == 0:
            raise ValueError("empty suffix range")
        start, end = max(0, size - suffix), size - 1
    if start >= size or size == 0:
        raise ValueError("range outside the file")
    return start, end


# The largest piece handed to the WSGI server at once: the server's output buffer must hold it
# without spilling to a temporary file (companion/serving.py), whatever the segment size.
STREAM_CHUNK = 256 * 1024

DAMAGED_MESSAGE = (
    "This recording is damaged: its stored copy has changed since it was copied from Zoom, so "
    "none of it is shown. The safeguarding lead and the administrators have been told."
)


@bp.get("/open/<token>/file")
@allow(LEAD)
def stream(token: str) -> Any:
    grant = _grant(token, use=True)
    file: RecordingFile = grant.file
    assert file.kek_id is not None and file.wrapped_dek is not None and file.blob_key
    file_id = file.id
    what = request.headers.get("Range", "whole file")
    # Everything the answer needs from the database, read now; then the read transaction ends,
    # so none is open while the blob is read from the store (which may be across a network).
    mimetype = services.content_type(file)
    filename = services.download_name(file)
    recording_id, sha256, blob_key = file.recording_id, file.sha256, file.blob_key
    dek = vault.unwrap(current_app._get_current_object(), file.kek_id, file.id, file.wrapped_dek)  # type: ignore[attr-defined]
    get_session().commit()
    handle = vault.storage_for().open_reader(blob_key)
    try:
        # Opening verifies the header and the final segment, so the size below is authentic.
        reader = DecryptingReader(handle, dek, file_id, recording_id)
        size = reader.size
        etag = f'"{sha256[:32]}"' if sha256 else None
        wanted = request.headers.get("Range")
        if wanted and request.headers.get("If-Range") not in (None, etag):
            wanted = None  # the client's copy is of something else: send the whole file
        try:
            chosen = byte_range(wanted, size)
        except ValueError:
            handle.close()
            response = Response(status=416)
            response.headers["Content-Range"] = f"bytes */{size}"
            response.headers["Cache-Control"] = "no-store"
            return response
        start, end = chosen if chosen is not None else (0, size - 1)
        # Everything this response will send is authenticated before its status line goes out:
        # a damaged file is refused whole, never sent in part.
        reader.authenticate(start, end)
    except CorruptedOrTampered:
        handle.close()
        return _damaged(file_id, what)
    except BaseException:
        handle.close()
        raise

    def body() -> Any:
        try:
            if size:
                for piece in reader.iter_range(start, end):
                    for at in range(0, len(piece), STREAM_CHUNK):
                        yield piece[at : at + STREAM_CHUNK]
        except CorruptedOrTampered:
            # Checked before sending, so the file changed under us: cut, never send bad bytes.
            log.error("recording file %s changed while it was being served", file_id)
            raise
        finally:
            handle.close()

    response = Response(
        body(),
        status=206 if chosen is not None else 200,
        mimetype=mimetype,
        direct_passthrough=True,
    )
    response.call_on_close(handle.close)
    h = response.headers
    h["Content-Length"] = str(end - start + 1 if size else 0)
    h["Accept-Ranges"] = "bytes"
    if chosen is not None:
        h["Content-Range"] = f"bytes {start}-{end}/{size}"
    if etag:
        h["ETag"] = etag
    h["Cache-Control"] = "no-store"
    h["Content-Disposition"] = f'attachment; filename="{filename}"'
    h["Content-Security-Policy"] = FILE_CSP
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def _damaged(file_id: uuid.UUID, what: str) -> Any:
    """The answer for a stored copy that failed its integrity check: a clear page, not a 5xx."""
    log.error("recording file %s failed its integrity check; refused", file_id)
    with kept_transaction() as db:
        told = services.record_integrity_failure(
            db, current_user(), file_id, ip=client_ip(), what=what, now=utcnow()
        )
    if request.accept_mimetypes.best == "application/json":
        response = error_response(409, "recording_damaged", DAMAGED_MESSAGE)
    else:
        file = get_session().get(RecordingFile, file_id)
        response = Response(
            render_template(
                "recordings/damaged.html",
                file=file,
                rec=file.recording if file is not None else None,
                told=told,
                message=DAMAGED_MESSAGE,
                **_template_helpers(),
            ),
            status=409,
        )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- concerns (teachers and the lead) -----------------------------------------------------------


@concerns_bp.get("/")
@allow(TEACHER, LEAD)
def concerns_index() -> Any:
    user = current_user()
    session = get_session()
    holds = concerns.active_holds(session, user) if policy.may_hold_recordings(user) else []
    return render_template(
        "concerns/index.html",
        concerns=concerns.list_concerns(session, user),
        holds=holds,
        release_form=ReasonForm(formdata=None),
        local_time=timetable.local_time,
    )


def _class_choices(user: Any) -> list[SelectChoice]:
    choices = []
    for cls in concerns.classes_for_concerns(get_session(), user, utcnow()):
        start = timetable.local_time(cls.course, cls.starts_at)
        choices.append(SelectChoice(cls.id, f"{cls.course.title}: {start:%a %-d %b %Y, %H:%M}"))
    return choices


@concerns_bp.route("/new", methods=["GET", "POST"])
@allow(TEACHER, LEAD)
def new_concern() -> Any:
    user = current_user()
    form = ConcernForm()
    form.class_session_id.choices = _class_choices(user)
    if request.method == "GET" and request.args.get("class_id", "").isdigit():
        form.class_session_id.data = int(request.args["class_id"])
    status = 200
    if form.validate_on_submit():
        try:
            concern = concerns.raise_concern(
                get_session(),
                user,
                class_session_id=form.class_session_id.data,
                what_happened=form.what_happened.data,
                when=form.when.data,
                now=utcnow(),
            )
        except CompanionError as exc:
            form_failed(form, exc)
            status = exc.status if exc.status != 404 else 422
        else:
            flash(
                "Thank you. The concern is recorded, the class's recording is on hold, and the "
                "safeguarding lead has been told."
            )
            return redirect(url_for("concerns.concern_detail", concern_id=concern.id))
    elif request.method == "POST":
        status = 422
    return render_template("concerns/new.html", form=form), status


@concerns_bp.get("/<int:concern_id>")
@allow(TEACHER, LEAD)
def concern_detail(concern_id: int) -> Any:
    user = current_user()
    session = get_session()
    concern = concerns.get_concern(session, user, concern_id)
    return render_template(
        "concerns/detail.html",
        concern=concern,
        holds=concerns.holds_of_concern(session, concern),
        recordings=concerns.recordings_of_class(session, concern.class_session_id)
        if policy.is_lead(user)
        else [],
        release_form=ReasonForm(formdata=None),
        local_time=timetable.local_time,
    )


@concerns_bp.post("/holds/<int:hold_id>/release")
@allow(LEAD)
def release(hold_id: int) -> Any:
    form = ReasonForm()
    back = request.form.get("next", "")
    target = (
        back
        if back.startswith("/concerns/") and "//" not in back
        else url_for("concerns.concerns_index")
    )
    if not form.validate_on_submit():
        flash("Give a reason for releasing the hold (at least 10 characters).", "error")
        return redirect(target)
    try:
        concerns.release_hold(
            get_session(), current_user(), hold_id=hold_id, reason=form.reason.data, now=utcnow()
        )
    except CompanionError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    else:
        flash("The hold is released; the recording follows its deletion schedule again.")
    return redirect(target)
