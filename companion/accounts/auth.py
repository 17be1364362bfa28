"""Web glue: who is calling this request (browser session or bearer token)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy import select

from ..access import signed_in_user
from ..audit.services import record as audit
from ..db import get_session, kept_transaction, refusal_recorded, utcnow
from ..errors import Forbidden
from . import services, twofactor
from .models import StaffSession, User

SESSION_KEY = "sid"


def client_ip() -> str:
    # Behind a proxy, configure ProxyFix in the WSGI server; we trust only what Werkzeug gives.
    return (request.remote_addr or "")[:64]


def session_policy() -> services.SessionPolicy:
    cfg = current_app.config
    return services.SessionPolicy(
        idle=dt.timedelta(minutes=cfg["SESSION_IDLE_MINUTES"]),
        absolute=dt.timedelta(hours=cfg["SESSION_ABSOLUTE_HOURS"]),
    )


def throttle_policy() -> services.ThrottlePolicy:
    cfg = current_app.config
    return services.ThrottlePolicy(
        max_failures=cfg["LOGIN_MAX_FAILURES"],
        window=dt.timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"]),
    )


def user_from_browser_session() -> User | None:
    raw = session.get(SESSION_KEY)
    if not raw or not isinstance(raw, str):
        return None
    now = utcnow()
    # The idle-time touch (at most once a minute) and the end of a timed-out session are the
    # only writes: a short transaction of their own, kept whatever the request answers, so a
    # page view takes no write lock and a refused change does not undo them.
    with kept_transaction() as db:
        row = services.resolve_session(db, raw, now=now, policy=session_policy())
        if (
            row is not None
            and twofactor.needs_second_factor(row)
            and now - row.created_at > twofactor.PENDING_SIGN_IN_TTL
        ):
            # Password checked, but the code was never entered in time.
            services.end_session(db, raw, now=now, reason="second_factor_timeout")
            row = None
    if row is not None and twofactor.needs_second_factor(row):
        g.pending_staff_session = row
        return None
    if row is None:
        session.pop(SESSION_KEY, None)
        return None
    g.staff_session = row
    return row.user


def current_staff_session() -> StaffSession | None:
    """The browser session this request was signed in with; None for API tokens and nobody."""
    row: StaffSession | None = g.get("staff_session")
    return row


def pending_user() -> User | None:
    """The person who passed the password step in this browser and must still enter a code."""
    row: StaffSession | None = g.get("pending_staff_session")
    return row.user if row is not None else None


def enrolment_gate(user: User, endpoint: str, *, api: bool) -> Any:
    """A lead or admin without two-factor reaches only enrolment and sign-out; API tokens of
    such a person are refused until then (the token is no second factor of its own)."""
    if not twofactor.must_enrol(user) or endpoint in twofactor.OPEN_BEFORE_ENROLMENT:
        return None
    if api:
        raise Forbidden(
            "Two-factor sign-in is required for your role: set it up in the browser first.",
            code="two_factor_required",
        )
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("twofactor.setup", next=target))


def home_gate(endpoint: str | None) -> Any:
    """The public home page sends a half-signed-in browser on to the step it has left."""
    if endpoint != "web.home":
        return None
    if pending_user() is not None:
        return redirect(url_for("twofactor.verify"))
    user = signed_in_user()
    if user is not None and twofactor.must_enrol(user):
        return redirect(url_for("twofactor.setup"))
    return None


def user_from_bearer_token() -> User | None:
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    # Token use is recorded (at most once a minute): its own short write, kept whatever the
    # request answers.
    with kept_transaction() as db:
        return services.user_for_token(db, raw.strip(), now=utcnow())


def record_denied(user: User, method: str, path: str) -> None:
    with kept_transaction() as db:
        audit(db, "access.denied", actor=user, ip=client_ip(), method=method, path=path[:300])
    refusal_recorded()


def begin_browser_session(user: User, *, second_factor_at: dt.datetime | None = None) -> None:
    """Sign the browser in with a fresh session id, so a planted cookie is never reused.

    ``second_factor_at`` is when a code was entered; after the password step alone it is None
    and, for a person with two-factor on, the session counts only on the code page.
    """
    old = session.get(SESSION_KEY)
    if isinstance(old, str):
        services.end_session(get_session(), old, now=utcnow(), reason="replaced")
    session.clear()
    session.permanent = True
    raw = services.start_session(
        get_session(),
        user,
        now=utcnow(),
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent", ""),
    )
    if second_factor_at is not None:
        row = (
            get_session()
            .scalars(
                select(StaffSession).where(StaffSession.token_hash == services.hash_token(raw))
            )
            .one()
        )
        row.second_factor_at = second_factor_at
    session[SESSION_KEY] = raw


def end_browser_session() -> None:
    raw = session.get(SESSION_KEY)
    if isinstance(raw, str):
        services.end_session(get_session(), raw, now=utcnow())
    session.clear()
