"""Two-factor pages: the code step of sign-in, set-up, recovery codes, step-up, admin reset.

Other packages protect an action with a fresh second factor like this::

    from companion.accounts.twofactor_views import require_recent_second_factor

    @bp.post("/recordings/<int:recording_id>/retrieve")
    @allow(LEAD, ADMIN)
    @require_recent_second_factor()          # a code entered within the last 5 minutes
    def retrieve(recording_id: int): ...

or check inside a view with ``has_recent_second_factor()``, or in a service with
``twofactor.check_recent_second_factor(staff_session, now=..., max_age=...)``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ..access import ADMIN, STAFF, allow, current_user, public, signed_in_user
from ..db import get_session, kept_transaction, utcnow
from ..errors import CompanionError, Throttled, wants_json
from . import auth, twofactor
from .forms import ActionForm
from .views import _safe_next, form_failed

bp = Blueprint("twofactor", __name__)

F = TypeVar("F", bound=Callable[..., Any])


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=64)])


def _next() -> str:
    return _safe_next(request.values.get("next"))


def _no_store(response: Any) -> Any:
    # A half-signed-in page has no current_user, so the general rule would let it be cached.
    response = make_response(response)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# --- step-up -------------------------------------------------------------------------------


def has_recent_second_factor(max_age: dt.timedelta = twofactor.DEFAULT_STEP_UP_AGE) -> bool:
    """Did this browser enter a code from the app within ``max_age``? False for API tokens."""
    row = auth.current_staff_session()
    user = signed_in_user()
    if row is None or user is None or row.user_id != user.id:
        return False
    return twofactor.has_recent_second_factor(row, now=utcnow(), max_age=max_age)


def _back_to() -> str:
    """Where to return after the step-up page: this page for a GET; for a form, the page the
    form was on (a POST cannot be replayed through a redirect, so the person sends it again)."""
    if request.method == "GET":
        return _safe_next(request.full_path.rstrip("?"))
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc and referrer.netloc != request.host:
        return _safe_next(None)
    path = referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return _safe_next(path or None)


def require_recent_second_factor(
    max_age: dt.timedelta = twofactor.DEFAULT_STEP_UP_AGE,
) -> Callable[[F], F]:
    """Decorator: without a code entered within ``max_age``, pages go to the step-up page and
    back, and the JSON API answers 403 ``step_up_required`` (API tokens never pass)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if has_recent_second_factor(max_age):
                return view(*args, **kwargs)
            if wants_json():
                twofactor.check_recent_second_factor(None, now=utcnow(), max_age=max_age)
            flash("Enter a fresh code from your authenticator app to continue.", "warning")
            return redirect(url_for("twofactor.confirm", next=_back_to()))

        return wrapper  # type: ignore[return-value]

    return decorator


# --- the second sign-in step ---------------------------------------------------------------


@bp.route("/login/code", methods=["GET", "POST"])
@public
def verify() -> Any:
    user = auth.pending_user()
    if user is None:
        if signed_in_user() is not None:
            return redirect(_next())
        return redirect(url_for("accounts.login"))
    form = CodeForm()
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        now = utcnow()
        try:
            # A wrong code is counted towards throttling and kept on the record, like a wrong
            # password.
            with kept_transaction() as db:
                method = twofactor.verify_sign_in(
                    db,
                    user,
                    form.code.data,
                    ip=auth.client_ip(),
                    now=now,
                    policy=auth.throttle_policy(),
                )
        except CompanionError as exc:
            form_failed(form, exc)
            status = exc.status
            if isinstance(exc, Throttled):
                headers["Retry-After"] = str(exc.retry_after)
        else:
            # A new session id for the fully signed-in browser (the half-way one is ended).
            auth.begin_browser_session(user, second_factor_at=now)
            if method == "recovery":
                left = twofactor.remaining_recovery_codes(get_session(), user)
                flash(
                    f"You used a recovery code; {left} left. If you lost your phone, set up "
                    "two-factor again on your two-factor page.",
                    "warning",
                )
            return redirect(_next())
    elif request.method == "POST":
        status = 400
    page = render_template("accounts/twofactor_verify.html", form=form, person=user)
    return _no_store((page, status, headers))


@bp.post("/login/code/cancel")
@public
def cancel() -> Any:
    if ActionForm().validate_on_submit():
        auth.end_browser_session()
    return redirect(url_for("accounts.login"))


# --- set-up and management -----------------------------------------------------------------


@bp.get("/account/two-factor")
@allow(*STAFF)
def status() -> Any:
    user = current_user()
    return render_template(
        "accounts/twofactor_status.html",
        enabled=twofactor.is_enabled(user),
        required=twofactor.is_required(user),
        remaining=twofactor.remaining_recovery_codes(get_session(), user),
        action_form=ActionForm(),
    )


@bp.route("/account/two-factor/setup", methods=["GET", "POST"])
@allow(*STAFF)
def setup() -> Any:
    user = current_user()
    if twofactor.is_enabled(user):
        flash("Two-factor sign-in is already on.")
        return redirect(url_for("twofactor.status"))
    session = get_session()
    form = CodeForm()
    if form.validate_on_submit():
        now = utcnow()
        try:
            codes = twofactor.confirm_enrolment(
                session,
                user,
                form.code.data,
                now=now,
                staff_session=auth.current_staff_session(),
            )
        except CompanionError as exc:
            form_failed(form, exc)
        else:
            # Signed in with both factors now: a fresh session id for the stronger session.
            auth.begin_browser_session(user, second_factor_at=now)
            page = render_template(
                "accounts/twofactor_codes.html", codes=codes, next=_next(), first=True
            )
            return _no_store(page)
    seed = twofactor.begin_enrolment(session, user)
    uri = twofactor.provisioning_uri(user, seed)
    page = render_template(
        "accounts/twofactor_setup.html",
        form=form,
        required=twofactor.must_enrol(user),
        qr=Markup(twofactor.qr_svg(uri)),  # noqa: S704 - SVG drawn here from our own URI
        secret=" ".join(seed[i : i + 4] for i in range(0, len(seed), 4)),
        next=request.args.get("next", ""),
    )
    # A failed confirmation keeps the waiting secret (it was saved when the page was shown).
    return _no_store((page, 422 if request.method == "POST" else 200))


@bp.post("/account/two-factor/recovery-codes")
@allow(*STAFF)
@require_recent_second_factor()
def regenerate() -> Any:
    if not ActionForm().validate_on_submit():
        return redirect(url_for("twofactor.status"))
    codes = twofactor.regenerate_recovery_codes(get_session(), current_user(), now=utcnow())
    page = render_template(
        "accounts/twofactor_codes.html",
        codes=codes,
        next=url_for("twofactor.status"),
        first=False,
    )
    return _no_store(page)


@bp.post("/account/two-factor/disable")
@allow(*STAFF)
@require_recent_second_factor()
def disable() -> Any:
    if ActionForm().validate_on_submit():
        user = current_user()
        twofactor.disable(
            get_session(), user, now=utcnow(), staff_session=auth.current_staff_session()
        )
        if twofactor.is_required(user):
            flash("Set up two-factor sign-in again with your new authenticator app.")
            return redirect(url_for("twofactor.setup"))
        flash("Two-factor sign-in is off.")
    return redirect(url_for("twofactor.status"))


@bp.route("/account/two-factor/confirm", methods=["GET", "POST"])
@allow(*STAFF)
def confirm() -> Any:
    """Step-up: a fresh code before a sensitive action, then back to it."""
    user = current_user()
    if not twofactor.is_enabled(user):
        flash("This needs two-factor sign-in. Set it up first.", "warning")
        return redirect(url_for("twofactor.setup", next=request.args.get("next") or None))
    form = CodeForm()
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            with kept_transaction() as db:  # a wrong code counts, as at sign-in
                twofactor.step_up(
                    db,
                    user,
                    g.staff_session,
                    form.code.data,
                    ip=auth.client_ip(),
                    now=utcnow(),
                    policy=auth.throttle_policy(),
                )
        except CompanionError as exc:
            form_failed(form, exc)
            status = exc.status
            if isinstance(exc, Throttled):
                headers["Retry-After"] = str(exc.retry_after)
        else:
            return redirect(_next())
    elif request.method == "POST":
        status = 400
    page = render_template("accounts/twofactor_confirm.html", form=form)
    return _no_store((page, status, headers))


@bp.post("/admin/security/staff/<int:user_id>/reset-two-factor")
@allow(ADMIN)
@require_recent_second_factor()
def reset(user_id: int) -> Any:
    if ActionForm().validate_on_submit():
        try:
            person = twofactor.reset(
                get_session(), actor=current_user(), user_id=user_id, now=utcnow()
            )
        except CompanionError as exc:
            flash(exc.message, "error")
        else:
            again = (
                " and must set it up again when they next sign in"
                if twofactor.is_required(person)
                else ""
            )
            flash(
                f"Two-factor sign-in of {person.name} is reset; "
                f"they are signed out everywhere{again}."
            )
    return redirect(url_for("security_review.index"))
