"""Evidence jobs: watch running classes for a child alone (or a class running over) between
events, since nothing arrives from Zoom while nobody joins or leaves."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from ..db import job_session, utcnow
from . import attendance
from .models import ZoomMeeting


def watch_live_meetings(app: Flask, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-read the warnings of every meeting that may still be running, one transaction each."""
    with app.app_context():
        now = now or utcnow()
        with job_session(app) as session:
            ids = attendance.live_meetings(session, now)
        warned = 0
        for meeting_id in ids:
            with job_session(app) as session:
                meeting = session.get(ZoomMeeting, meeting_id)
                if meeting is not None:
                    warned += len(attendance.evaluate(session, meeting, now=now, live=True))
        return {"meetings": len(ids), "warnings": warned}
