"""Who may use each route: declared on the view, enforced before it runs, denied by default.

Every view carries exactly one declaration:

* ``@allow("teacher", "admin")`` - signed-in staff with one of these roles (or a staff API token
  for ``/api/`` routes);
* ``@public`` - anyone, for sign-in pages, health checks, the webhook (which checks its own
  signature) and static files;
* ``@family`` - a parent holding a valid family session (issued by the family link).

A route without a declaration answers 403 to everybody, and a test walks the URL map so none can
ship that way. Object-level checks (is this the teacher's course?) happen in the services.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, g, redirect, request, url_for

from . import signals
from .errors import Forbidden, Unauthorized, wants_json

if TYPE_CHECKING:
    # accounts.models imports the roles from here.
    from .accounts.models import User

log = logging.getLogger(__name__)


class Role(StrEnum):
    """A staff member's one role (parents are not users: they hold a family link). The values are
    the strings stored in ``users.role`` and named in ``@allow``."""

    TEACHER = "teacher"
    LEAD = "safeguarding_lead"
    ADMIN = "admin"


TEACHER = Role.TEACHER
LEAD = Role.LEAD
ADMIN = Role.ADMIN
ROLES = tuple(Role)
ROLE_LABELS = {TEACHER: "Teacher", LEAD: "Safeguarding lead", ADMIN: "Admin"}
STAFF = ROLES

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Rule:
    kind: str  # "public" | "staff" | "family"
    roles: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.kind if self.kind != "staff" else "staff:" + ",".join(self.roles)


def _declare(rule: Rule) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        if getattr(view, "companion_access", None) is not None:
            raise RuntimeError(f"{view.__name__} declares access twice")
        view.companion_access = rule  # type: ignore[attr-defined]
        return view

    return decorator


def allow(*roles: str) -> Callable[[F], F]:
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"allow() needs roles from {ROLES}, got {roles}")
    return _declare(Rule("staff", tuple(roles)))


def public(view: F) -> F:
    return _declare(Rule("public"))(view)


def family(view: F) -> F:
    return _declare(Rule("family"))(view)


def rule_for(app: Flask, endpoint: str | None) -> Rule | None:
    if endpoint is None:
        return None
    if endpoint == "static":
        return Rule("public")
    view = app.view_functions.get(endpoint)
    return getattr(view, "companion_access", None)


def current_user() -> User:
    """The signed-in staff user of a staff view (``@allow``), who the gate found before it ran.

    Pages that anyone may open (``@public``, templates, context processors) ask
    :func:`signed_in_user` instead.
    """
    user = signed_in_user()
    if user is None:
        # Only a staff view may ask, and the gate lets none run without its user.
        raise Unauthorized("Sign in, or send a valid staff API token.")
    return user


def signed_in_user() -> User | None:
    """The signed-in staff user of this request, or None (nobody, or a family)."""
    user: User | None = g.get("user")
    return user


def _family_of_request() -> Any:
    """The family of this request, from the receiver the families package connects (see
    companion.signals.family_for_request), so this module does not import it; None without."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for _receiver, found in signals.family_for_request.send(app):
        if found is not None:
            return found
    return None


def init_app(app: Flask) -> None:
    from .accounts import auth as accounts

    @app.before_request
    def _enforce_access() -> Any:
        g.user = None
        g.family = None
        if request.endpoint is None:
            return None  # 404/405 are answered by the error handlers
        rule = rule_for(current_app, request.endpoint)
        if rule is None:
            log.error("route %s declares no access rule; denied", request.endpoint)
            raise Forbidden("This page is not available.")
        if rule.kind == "public":
            # Pages such as sign-in still want to know who is signed in.
            if not request.path.startswith("/api/"):
                g.user = accounts.user_from_browser_session()
            return accounts.home_gate(request.endpoint)
        if rule.kind == "family":
            g.family = _family_of_request()
            if g.family is None:
                raise Unauthorized("Please open the personal link from your email again.")
            return None
        if request.path.startswith("/api/"):
            user = accounts.user_from_bearer_token()
        else:
            user = accounts.user_from_browser_session()
        if user is None:
            if wants_json():
                raise Unauthorized("Sign in, or send a valid staff API token.")
            if accounts.pending_user() is not None:
                # Password given, code not yet: back to the code, nowhere else.
                target = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("twofactor.verify", next=target))
            return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
        g.user = user
        if user.role not in rule.roles:
            accounts.record_denied(user, request.method, request.path)
            raise Forbidden("Your role does not allow this.")
        # A lead or admin without two-factor may only set it up (or sign out).
        return accounts.enrolment_gate(user, request.endpoint, api=request.path.startswith("/api/"))
