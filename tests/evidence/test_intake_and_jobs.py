"""Meeting events through the real intake (signed HTTP) and the worker's jobs."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.evidence import attendance
from companion.evidence import jobs as evidence_jobs
from companion.evidence.models import AttendanceEvent, ClassWarning, ZoomMeeting
from companion.webhooks import jobs as webhook_jobs
from companion.webhooks.models import WebhookEvent
from companion.zoom.webhooks import sandbox_webhook_secret, signed_headers

from .. import factories
from ..factories import Meeting, class_of

M = dt.timedelta(minutes=1)


def _post(client: FlaskClient, app: Flask, doc: dict[str, Any]) -> int:
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = signed_headers(sandbox_webhook_secret(app.config), body, now=time.time())
    headers["Content-Type"] = "application/json"
    return client.post("/zoom/webhook", data=body, headers=headers).status_code


def test_events_delivered_backwards_and_twice_make_one_ordered_timeline(
    app: Flask, client: FlaskClient, db_session: Session, teacher: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = class_of(course)
    fams = [factories.family(db_session, course, first=n) for n in ("Amira", "Ben")]
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    host = z.host()
    docs = [z.started(), z.participant("meeting.participant_joined", host, z.start)]
    for i, fam in enumerate(fams):
        docs += z.attend(Meeting.child(fam), cls.starts_at + i * M, cls.ends_at - M)
    docs += [z.participant("meeting.participant_left", host, cls.ends_at), z.ended(cls.ends_at)]
    for doc in reversed(docs):
        assert _post(client, app, doc) == 200
    for doc in docs[:3]:
        assert _post(client, app, doc) == 200  # redelivered
    outcome = webhook_jobs.process_pending(app)
    assert outcome == {"done": len(docs)}
    db_session.expire_all()
    events = attendance.ordered(db_session.scalars(select(AttendanceEvent)))
    assert len(events) == len(docs)
    assert events[0].kind == "meeting_started" and events[-1].kind == "meeting_ended"
    assert all(e.webhook_event_id for e in events)
    assert {e.status for e in db_session.scalars(select(WebhookEvent))} == {"done"}
    # Whatever the backwards delivery suggested on the way was retracted.
    assert all(
        w.status == "retracted"
        for w in db_session.scalars(
            select(ClassWarning).where(ClassWarning.kind == "one_child_alone")
        )
    )


def test_an_unknown_meeting_through_the_intake_is_kept(
    app: Flask, client: FlaskClient, db_session: Session, teacher: Any
) -> None:
    start = factories.class_start(1)
    z = Meeting(123456789, start)
    assert _post(client, app, z.started()) == 200
    assert webhook_jobs.process_pending(app) == {"done": 1}
    db_session.expire_all()
    (meeting,) = db_session.scalars(select(ZoomMeeting)).all()
    assert meeting.unmatched and meeting.zoom_meeting_id == 123456789


def test_the_live_job_warns_while_a_child_is_alone(
    app: Flask, db_session: Session, teacher: Any, lead: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher, starts=[factories.class_start(0)])
    cls = class_of(course)
    z = Meeting(course.zoom_meeting_id, cls.starts_at - 2 * M)
    child = Meeting.child(factories.family(db_session, course))
    factories.feed(
        db_session,
        [
            z.started(),
            z.participant("meeting.participant_joined", z.host(), z.start),
            z.participant("meeting.participant_joined", child, cls.starts_at),
        ],
        now=cls.starts_at,
    )
    db_session.commit()
    assert evidence_jobs.watch_live_meetings(app, now=cls.starts_at + M)["warnings"] == 0
    result = evidence_jobs.watch_live_meetings(app, now=cls.starts_at + 5 * M)
    assert result["meetings"] == 1 and result["warnings"] >= 1
    db_session.expire_all()
    (warning,) = db_session.scalars(
        select(ClassWarning).where(ClassWarning.kind == "one_child_alone")
    ).all()
    assert warning.status == "open" and warning.notified_at is not None
