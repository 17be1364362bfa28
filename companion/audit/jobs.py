"""Daily check of the audit chain; a break is reported to the admins and lead of the
organisation whose rows it touches."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import select

from .. import mail
from ..access import ADMIN, LEAD
from ..accounts.models import User
from ..db import job_session
from . import services

log = logging.getLogger(__name__)


def verify_chain(app: Flask) -> int:
    """Verify the whole chain; returns the number of problems found (0 when intact).

    Each organisation's admins and lead are told of the breaks in its own rows, and of those
    no row can be tied to (missing rows, a removed tail), which may be anyone's; never of
    another organisation's.
    """
    with job_session(app) as session:
        problems = list(services.verify(session))
        if not problems:
            log.info("audit chain verified: intact")
            return 0
        log.error("audit chain broken: %d problem(s)", len(problems))
        people = session.scalars(
            select(User)
            .where(User.role.in_((ADMIN, LEAD)), User.active.is_(True))
            .order_by(User.id)
        ).all()
        with app.app_context():
            for person in people:
                theirs = [
                    p
                    for p in problems
                    if p.organisation_id is None or p.organisation_id == person.organisation_id
                ]
                if not theirs:
                    continue
                mail.send(
                    session,
                    kind="audit_chain_broken",
                    to_address=person.email,
                    to_name=person.name,
                    organisation_id=person.organisation_id,
                    problems=theirs[:50],
                )
        return len(problems)
