"""Deliver pending mail. Safe to run twice: each message is claimed by its status."""

from __future__ import annotations

import logging

from flask import Flask

from ..db import job_session, utcnow
from . import services
from .transport import sender_from_config

log = logging.getLogger(__name__)


def deliver_pending(app: Flask, limit: int = 100) -> int:
    """Send what is due; returns how many were accepted by the SMTP server."""
    make_sender = sender_from_config(app.config)
    if make_sender is None:
        return 0
    sent = 0
    with job_session(app) as session, make_sender() as sender:
        for msg in services.due(session, utcnow(), limit=limit):
            if services.deliver(
                session, msg, sender.send, sender=app.config["MAIL_FROM"], now=utcnow()
            ):
                sent += 1
            # Commit after each message so a crash never re-sends one already accepted.
            session.commit()
    return sent
