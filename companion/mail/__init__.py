"""Mail: every message is written to the outbox first, then sent by the worker over SMTP."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from ..db import utcnow


def send(session: Session, **message: Any) -> Any:
    """Queue a message with the app's mail mode (SMTP, or held in the outbox)."""
    from . import services

    return services.queue(
        session, smtp_enabled=bool(current_app.config["SMTP_HOST"]), now=utcnow(), **message
    )
