"""Web glue: who is calling this request (browser session or bearer token)."""

from __future__ import annotations

import datetime as dt

from flask import current_app, g, request, session

from ..audit.services import record as audit
from ..db import get_session, keep_changes, utcnow
from . import services
from .models import User

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
    row = services.resolve_session(get_session(), raw, now=utcnow(), policy=session_policy())
    if row is None:
        session.pop(SESSION_KEY, None)
        return None
    g.staff_session = row
    return row.user


def user_from_bearer_token() -> User | None:
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return services.user_for_token(get_session(), raw.strip(), now=utcnow())


def record_denied(user: User, method: str, path: str) -> None:
    audit(
        get_session(), "access.denied", actor=user, ip=client_ip(), method=method, path=path[:300]
    )
    keep_changes()


def begin_browser_session(user: User) -> None:
    """Sign the browser in with a fresh session id, so a planted cookie is never reused."""
    old = session.get(SESSION_KEY)
    if isinstance(old, str):
        services.end_session(get_session(), old, now=utcnow(), reason="replaced")
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = services.start_session(
        get_session(),
        user,
        now=utcnow(),
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent", ""),
    )


def end_browser_session() -> None:
    raw = session.get(SESSION_KEY)
    if isinstance(raw, str):
        services.end_session(get_session(), raw, now=utcnow())
    session.clear()
