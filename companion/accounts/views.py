from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from .. import mail
from ..access import ADMIN, STAFF, allow, current_user, public
from ..db import get_session, kept_transaction, utcnow
from ..errors import CompanionError, Throttled
from . import auth, services, twofactor
from .forms import ActionForm, InviteForm, LoginForm, RoleForm, SetPasswordForm, TokenForm

bp = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site paths, so the sign-in page cannot be used to bounce people elsewhere."""
    if not target:
        return url_for("web.home")
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        # Browsers read "/\evil.example" as "//evil.example"; control characters are stripped.
        or "\\" in target
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
    ):
        return url_for("web.home")
    return target


def form_failed(form: Any, exc: CompanionError) -> None:
    """Show a domain error beside the field it concerns, or at the top of the form."""
    field = getattr(exc, "field", None) or exc.details.get("field")
    if field and hasattr(form, field):
        getattr(form, field).errors = [*getattr(form, field).errors, exc.message]
    else:
        form.form_errors.append(exc.message)


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    form = LoginForm()
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            # A failed attempt is kept: it counts towards throttling and is on the record.
            with kept_transaction() as db:
                user = services.sign_in(
                    db,
                    email=form.email.data,
                    password=form.password.data,
                    ip=auth.client_ip(),
                    now=utcnow(),
                    policy=auth.throttle_policy(),
                )
        except CompanionError as exc:
            form_failed(form, exc)
            status = 401
            if isinstance(exc, Throttled):
                status = 429
                headers["Retry-After"] = str(exc.retry_after)
        else:
            auth.begin_browser_session(user)
            target = _safe_next(request.args.get("next"))
            # With two-factor on, the session counts only once the code is entered; a lead or
            # admin without it is sent to set it up and can do nothing else until then.
            if twofactor.is_enabled(user):
                return redirect(url_for("twofactor.verify", next=target))
            if twofactor.must_enrol(user):
                return redirect(url_for("twofactor.setup", next=target))
            return redirect(target)
    elif request.method == "POST":
        status = 400
    return render_template("accounts/login.html", form=form), status, headers


@bp.post("/logout")
@allow(*STAFF)
def logout() -> Any:
    if ActionForm().validate_on_submit():
        auth.end_browser_session()
        flash("You are signed out.")
    return redirect(url_for("accounts.login"))


@bp.route("/invite/<token>", methods=["GET", "POST"])
@public
def accept_invite(token: str) -> Any:
    session = get_session()
    try:
        invitation = services.invitation_for(session, token, now=utcnow())
    except CompanionError as exc:
        return render_template("error.html", status=exc.status, message=exc.message), exc.status
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            user = services.accept_invitation(session, token, form.password.data, now=utcnow())
        except CompanionError as exc:
            form_failed(form, exc)
        else:
            flash("Your password is set. Sign in to continue.")
            auth.end_browser_session()
            return redirect(url_for("accounts.login", email=user.email))
    status = 422 if request.method == "POST" else 200
    return render_template("accounts/set_password.html", form=form, invited=invitation.user), status


@bp.get("/staff")
@allow(ADMIN)
def staff() -> Any:
    user = current_user()
    people = services.list_staff(get_session(), user.organisation_id)
    return render_template(
        "accounts/staff.html", people=people, role_form=RoleForm(), action_form=ActionForm()
    )


def _send_invite(person: Any, raw: str) -> None:
    link = current_app.config["BASE_URL"] + url_for("accounts.accept_invite", token=raw)
    hours = current_app.config["INVITE_TTL_HOURS"]
    org = person.organisation
    mail.send(
        get_session(),
        kind="staff_invite",
        to_address=person.email,
        to_name=person.name,
        organisation_id=person.organisation_id,
        organisation=org,
        hours=hours,
        link=link,
    )


@bp.route("/staff/invite", methods=["GET", "POST"])
@allow(ADMIN)
def invite() -> Any:
    form = InviteForm()
    if form.validate_on_submit():
        try:
            person, raw = services.invite(
                get_session(),
                actor=current_user(),
                email=form.email.data,
                name=form.name.data,
                role=form.role.data,
                now=utcnow(),
                ttl=dt.timedelta(hours=current_app.config["INVITE_TTL_HOURS"]),
            )
        except CompanionError as exc:
            form_failed(form, exc)
        else:
            _send_invite(person, raw)
            flash(f"Invitation sent to {person.email}.")
            return redirect(url_for("accounts.staff"))
    status = 422 if request.method == "POST" else 200
    return render_template("accounts/invite.html", form=form), status


@bp.post("/staff/<int:user_id>/reinvite")
@allow(ADMIN)
def reinvite(user_id: int) -> Any:
    if ActionForm().validate_on_submit():
        actor = current_user()
        person = services.get_user(get_session(), user_id, organisation_id=actor.organisation_id)
        raw = services.issue_invitation(
            get_session(),
            person,
            actor=actor,
            now=utcnow(),
            ttl=dt.timedelta(hours=current_app.config["INVITE_TTL_HOURS"]),
        )
        _send_invite(person, raw)
        flash(f"A new invitation was sent to {person.email}.")
    return redirect(url_for("accounts.staff"))


@bp.post("/staff/<int:user_id>/role")
@allow(ADMIN)
def change_role(user_id: int) -> Any:
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Choose one of the listed roles.", "error")
        return redirect(url_for("accounts.staff")), 303
    person = services.change_role(
        get_session(), actor=current_user(), user_id=user_id, role=form.role.data
    )
    flash(f"{person.name} is now {services.role_label(person.role)}.")
    return redirect(url_for("accounts.staff"))


@bp.post("/staff/<int:user_id>/deactivate")
@allow(ADMIN)
def deactivate(user_id: int) -> Any:
    if ActionForm().validate_on_submit():
        person = services.deactivate(
            get_session(), actor=current_user(), user_id=user_id, now=utcnow()
        )
        flash(f"{person.name} is deactivated; their sessions and API tokens no longer work.")
    return redirect(url_for("accounts.staff"))


@bp.post("/staff/<int:user_id>/reactivate")
@allow(ADMIN)
def reactivate(user_id: int) -> Any:
    if ActionForm().validate_on_submit():
        person = services.reactivate(get_session(), actor=current_user(), user_id=user_id)
        flash(f"{person.name} is active again.")
    return redirect(url_for("accounts.staff"))


@bp.route("/account/tokens", methods=["GET", "POST"])
@allow(*STAFF)
def tokens() -> Any:
    user = current_user()
    form = TokenForm()
    new_token = None
    if form.validate_on_submit():
        try:
            new_token = services.create_token(get_session(), user=user, name=form.name.data)
        except CompanionError as exc:
            form_failed(form, exc)
    return render_template(
        "accounts/tokens.html",
        form=form,
        action_form=ActionForm(),
        tokens=services.list_tokens(get_session(), user),
        new_token=new_token,
    )


@bp.post("/account/tokens/<int:token_id>/revoke")
@allow(*STAFF)
def revoke_token(token_id: int) -> Any:
    if ActionForm().validate_on_submit():
        services.revoke_token(get_session(), actor=current_user(), token_id=token_id, now=utcnow())
        flash("The token is revoked.")
    return redirect(url_for("accounts.tokens"))
