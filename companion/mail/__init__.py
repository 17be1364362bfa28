"""Mail: every message is written to the outbox first, then sent by the worker over SMTP."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from ..db import utcnow


def send(
    session: Session,
    *,
    kind: str,
    to_address: str,
    to_name: str = "",
    organisation_id: int | None = None,
    subject: str | None = None,
    body: str | None = None,
    **facts: Any,
) -> Any:
    """Queue one message of ``kind`` for one person, worded by its template
    (``templates/email/<kind>.txt``, see ``messages``) from ``facts``; ``to_name`` is among them.

    ``subject`` and ``body`` given together are sent as they are instead (the delivery tests
    use that; every message companion itself writes has its template). The app's mail mode
    decides whether it goes out over SMTP or is held in the outbox.
    """
    from . import messages, services

    if subject is None or body is None:
        message = messages.render(kind, to_name=to_name, **facts)
        subject, body = message.subject, message.body
    return services.queue(
        session,
        to_address=to_address,
        to_name=to_name,
        organisation_id=organisation_id,
        subject=subject,
        body=body,
        kind=kind,
        smtp_enabled=bool(current_app.config["SMTP_HOST"]),
        now=utcnow(),
    )
