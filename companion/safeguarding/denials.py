"""Refused access to an object is on the audit trail, whoever was refused and wherever.

The access layer records a staff member refused by role (``accounts.record_denied``). A refusal
one step later, in a service, is the interesting case for safeguarding: a teacher trying another
course's class, a parent trying another family's class, a lead with somebody else's recording
grant. Services answer those with 403 or "not found" (404, so ids reveal nothing); this hook
records every such answer given to a signed-in caller, after undoing whatever the refused request
had half-done, so only the refusal itself is kept.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request

from ..access import signed_in_user
from ..accounts.auth import client_ip
from ..audit.services import by_parent
from ..audit.services import record as audit
from ..db import get_session, kept_transaction

DENIED_STATUSES = (403, 404)


def _record(response: Any) -> Any:
    if response.status_code not in DENIED_STATUSES or request.endpoint in (None, "static"):
        return response
    if g.get("refusal_recorded"):
        return response  # the view already recorded its refusal (and keeps it)
    user = signed_in_user()
    who = g.get("family")
    if user is None and who is None:
        return response  # anonymous callers are answered by sign-in, not by the objects
    get_session().rollback()  # a refused request keeps nothing but its refusal
    detail: dict[str, Any] = {
        "method": request.method,
        "path": request.path[:300],
        "status": response.status_code,
        "endpoint": request.endpoint,
    }
    with kept_transaction() as session:
        if user is not None:
            audit(session, "access.denied", actor=user, ip=client_ip(), **detail)
        else:
            family = who.family
            by_parent(
                session,
                "access.denied",
                family=family,
                contact_id=who.contact.id,
                ip=client_ip(),
                **detail,
            )
    return response


def init_app(app: Flask) -> None:
    # Registered after the database's own hook, so it runs before the commit-or-roll-back.
    app.after_request(_record)
