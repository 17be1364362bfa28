"""The parents' side, under /f/: the personal link, the family page, the agreement, audio-only.

    GET   /f/<token>                      exchange the link for a family session, go to /f/
    GET   /f/                             the family page
    GET   /f/calendar.ics                 every class, with the join details once accepted
    POST  /f/agreement                    accept the current e-safety agreement
    POST  /f/classes/<class_id>/audio-only  ask for (or withdraw) audio-only for one class
    POST  /f/audio-only                   the same for every remaining class
    POST  /f/sign-out                     forget this browser

A family session is its own cookie (``companion_family``: a random id whose hash is a row in
family_sessions; HttpOnly, SameSite=Lax, Secure per config, sent only to /f/). It never touches
the staff session cookie: forms carry a token tied to the family session instead of Flask-WTF's,
and messages after an action are kept on the session row instead of Flask's flash.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from ..access import family, public
from ..accounts.auth import client_ip
from ..courses.timetable import local_time
from ..db import get_session, kept_transaction, utcnow
from ..errors import CompanionError, Forbidden
from ..security import csrf
from . import agreement, audio_only, errors, family_page, family_sessions, jobs, registrants

bp = Blueprint("family", __name__, url_prefix="/f")
# Family forms carry their own token (see check_form_token); Flask-WTF's lives in the staff
# session cookie, which the family side never sets.
csrf.exempt(bp)

COOKIE = "companion_family"
COOKIE_PATH = "/f/"


def load_family(_app: Flask | None = None) -> family_sessions.FamilyPrincipal | None:
    """The family session of this request: the receiver of ``signals.family_for_request``, by
    which the access layer finds the family of an @family route (connected in
    companion.families.init_app)."""
    raw = request.cookies.get(COOKIE, "")
    if not raw:
        return None
    return family_sessions.resolve_session(get_session(), raw, now=utcnow())


def signed_in_family() -> family_sessions.FamilyPrincipal | None:
    """The family session of this request (put there by the access layer), or None."""
    found: family_sessions.FamilyPrincipal | None = g.get("family")
    return found


def principal() -> family_sessions.FamilyPrincipal:
    """The family of an @family route, which the access layer let in."""
    found = signed_in_family()
    if found is None:  # pragma: no cover - the access layer refuses first
        raise Forbidden("Please open the personal link from your email again.")
    return found


def init_app(app: Flask) -> None:
    @app.context_processor
    def _family_globals() -> dict[str, Any]:
        found = signed_in_family()
        if found is None:
            return {}
        token = family_sessions.form_token(found, current_app.config["SECRET_KEY"])
        return {"family_csrf_token": lambda: token}


def check_form_token() -> None:
    """Refuse a family-side POST without its session's form token. Runs for every route here;
    another package's @family route (exempt from Flask-WTF like this blueprint) calls it."""
    found = signed_in_family()
    if request.method != "POST" or found is None:
        return
    given = request.form.get("csrf_token")
    if not family_sessions.check_form_token(found, current_app.config["SECRET_KEY"], given):
        raise _FormExpired("This form has expired. Reload the page and try again.")


# Runs after the access check, so g.family is the caller's session (or the route is public).
bp.before_request(check_form_token)


@bp.after_request
def _keep_cookie_with_session(response: Response) -> Response:
    # The session lives on while it is used; the browser's cookie must not run out before it.
    found = signed_in_family()
    if found is not None and found.extended and found.session_row.ended_at is None:
        remaining = found.session_row.expires_at - utcnow()
        _set_cookie(response, request.cookies.get(COOKIE, ""), int(remaining.total_seconds()))
    return response


class _FormExpired(CompanionError):
    code = "csrf"
    status = 400


def _set_cookie(response: BaseResponse, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=current_app.config["SECURE_COOKIES"],
        httponly=True,
        samesite="Lax",
    )


def _link_problem(exc: CompanionError) -> Response:
    return Response(
        render_template(
            "families/link_problem.html",
            status=exc.status,
            message=exc.message,
            signed_in=signed_in_family() is not None,
        ),
        status=exc.status,
    )


@bp.get("/<token>")
@public
def open_link(token: str) -> Any:
    """The emailed link: a session cookie for it, then the page at an address without it."""
    now = utcnow()
    try:
        # A refused attempt with a link that existed stays on the record.
        with kept_transaction(keep=(errors.LinkGone,)) as db:
            row, raw = family_sessions.open_link(db, token, now=now, ip=client_ip())
    except errors.LinkGone as exc:
        return _no_store(_link_problem(exc))
    except errors.LinkInvalid as exc:
        return _no_store(_link_problem(exc))
    response = redirect(url_for("family.home"), code=303)
    _set_cookie(response, raw, int((row.expires_at - now).total_seconds()))
    return _no_store(response)


def _no_store(response: BaseResponse) -> BaseResponse:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(CompanionError)
def _family_error(exc: CompanionError) -> Any:
    # The family side's own error page: nothing of staff pages, a way back to the family page.
    return _link_problem(exc)


def _notice(message: str, kind: str = "message") -> None:
    row = principal().session_row
    row.notice = message[:500]
    row.notice_kind = kind


def _take_notice() -> tuple[str, str] | None:
    row = principal().session_row
    if not row.notice:
        return None
    found = (row.notice, row.notice_kind or "message")
    row.notice = ""
    row.notice_kind = ""
    return found


def _home() -> Any:
    return redirect(url_for("family.home"), code=303)


@bp.get("/")
@family
def home() -> Any:
    now = utcnow()
    _recover_join_url()
    page = family_page.family_page(get_session(), principal(), now=now)
    return render_template(
        "families/family_page.html",
        page=page,
        notice=_take_notice(),
        lead=page.organisation,
        lead_line=agreement.lead_contact_line(page.organisation),
        now=now,
        local_time=local_time,
    )


def _recover_join_url() -> None:
    """A join link sealed under a key now lost is read from Zoom again before the page is
    built, with the request's transaction committed first: the page never waits on Zoom while
    holding the database (and works without Zoom: the link then shows as pending)."""
    family = principal().family
    if not registrants.join_url_lost(family):
        return
    session = get_session()
    session.commit()
    jobs.reread_join_url(current_app, family.id)
    session.expire_all()


@bp.get("/calendar.ics")
@family
def calendar() -> Any:
    _recover_join_url()
    body = family_page.calendar_file(get_session(), principal(), now=utcnow())
    return Response(
        body,
        mimetype="text/calendar",
        headers={"Content-Disposition": 'attachment; filename="classes.ics"'},
    )


def _int_field(name: str) -> int | None:
    raw = request.form.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


@bp.post("/agreement")
@family
def accept_agreement() -> Any:
    who = principal()
    agreement_id = _int_field("agreement_id")
    if agreement_id is None:
        _notice("Tick the box to accept the agreement, then press the button.", "error")
        return _home()
    if request.form.get("accept") != "yes":
        _notice("Tick the box to say you agree, then press the button again.", "error")
        return _home()
    try:
        _row, new = agreement.accept(
            get_session(),
            contact=who.contact,
            agreement_id=agreement_id,
            now=utcnow(),
            ip=client_ip(),
        )
    except CompanionError as exc:
        if exc.status == 404:
            raise
        _notice(exc.message, "error")
        return _home()
    _notice(
        "Thank you. The Zoom link and passcode are below."
        if new
        else "You had already accepted this agreement."
    )
    return _home()


def _audio_only(class_id: int | None) -> Any:
    action = request.form.get("action", "")
    try:
        result = audio_only.request_audio_only(
            get_session(), principal(), class_id=class_id, action=action, now=utcnow()
        )
    except CompanionError as exc:
        if exc.status == 404:
            raise
        _notice(exc.message, "error")
        return _home()
    _notice(result.message, "message" if result.changed else "warning")
    return _home()


@bp.post("/classes/<int:class_id>/audio-only")
@family
def audio_only_class(class_id: int) -> Any:
    return _audio_only(class_id)


@bp.post("/audio-only")
@family
def audio_only_remaining() -> Any:
    return _audio_only(None)


@bp.post("/sign-out")
@family
def sign_out() -> Any:
    family_sessions.end_session(get_session(), principal(), now=utcnow())
    response = Response(
        render_template(
            "families/link_problem.html",
            status=200,
            message="This browser has forgotten your family page. Open the link in your email "
            "to see it again.",
        )
    )
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
