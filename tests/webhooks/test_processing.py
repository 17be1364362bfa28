"""Stored events on the work engine: claimed, handed to their handler as the stored event, and
handled exactly once whatever point the worker dies at."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion import work
from companion.db import utcnow
from companion.evidence import attendance
from companion.evidence.models import AttendanceEvent
from companion.webhooks import jobs, services
from companion.webhooks.models import WebhookEvent

from ..crashes import Crash, crash_fixture


def started(uuid: str = "proc-uuid-1") -> dict[str, Any]:
    return {
        "event": "meeting.started",
        "payload": {
            "account_id": "AAAA",
            "object": {"id": "85746065", "uuid": uuid, "topic": "Class", "type": 8},
        },
        "event_ts": 1700000000123,
    }


def store(session: Session, document: dict[str, Any]) -> WebhookEvent:
    body = json.dumps(document, separators=(",", ":")).encode()
    stored = services.store(session, document, body, now=utcnow())
    session.flush()
    return stored.event


def attendance_rows(session: Session) -> list[AttendanceEvent]:
    session.expire_all()
    return list(session.scalars(select(AttendanceEvent)))


crash_at = crash_fixture(services.QUEUE.name)


def test_the_handler_is_given_the_stored_event_not_a_lookup(
    app: Flask, db_session: Session
) -> None:
    row = store(db_session, started())
    assert jobs.process_pending(app) == {"done": 1}
    [event] = attendance_rows(db_session)
    assert event.webhook_event_id == row.id

    event_plan = jobs.HandleEvent().prepare(db_session, row.id, utcnow())
    assert event_plan is not None
    assert event_plan.id == row.id and event_plan.name == "meeting.started"
    assert event_plan.document == json.loads(row.body)
    assert event_plan.dedupe_key == row.dedupe_key


@pytest.mark.parametrize("point", ["after_claim", "after_call"])
def test_a_crash_between_phases_handles_the_event_once_after_the_claim_runs_out(
    point: str,
    app: Flask,
    db_session: Session,
    crash_at: Callable[[str], None],
    clock: Any,
) -> None:
    row = store(db_session, started())
    crash_at(point)
    with pytest.raises(Crash):
        jobs.process_pending(app)

    db_session.refresh(row)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.claimed_until is not None and row.claimed_until > utcnow()
    assert attendance_rows(db_session) == []
    assert jobs.process_pending(app) == {}  # the dead worker's claim still holds it

    clock.advance(services.QUEUE.claim_for + dt.timedelta(seconds=1))
    assert jobs.process_pending(app) == {"done": 1}
    assert jobs.process_pending(app) == {}
    clock.advance(hours=3)
    assert jobs.process_pending(app) == {}
    assert len(attendance_rows(db_session)) == 1
    db_session.refresh(row)
    assert (row.status, row.attempts, row.claimed_until) == ("done", 2, None)


def test_a_crash_inside_the_handler_undoes_its_writes_and_it_runs_again_once(
    app: Flask, db_session: Session, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = store(db_session, started())
    real = attendance.record_event
    calls: list[int] = []

    def dies_after_writing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise Crash("killed after the handler wrote, before the commit")
        return result

    monkeypatch.setattr(attendance, "record_event", dies_after_writing)
    with pytest.raises(Crash):
        jobs.process_pending(app)
    assert attendance_rows(db_session) == []
    db_session.refresh(row)
    assert row.status == "pending"

    clock.advance(services.QUEUE.claim_for + dt.timedelta(seconds=1))
    assert jobs.process_pending(app) == {"done": 1}
    assert len(attendance_rows(db_session)) == 1


def test_a_failing_handler_keeps_none_of_its_writes_and_waits_with_the_one_backoff(
    app: Flask, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = store(db_session, started())
    real = attendance.record_event

    def writes_then_fails(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise RuntimeError("attendance is broken today")

    monkeypatch.setattr(attendance, "record_event", writes_then_fails)
    before = utcnow()
    assert jobs.process_pending(app) == {"failed": 1}
    assert attendance_rows(db_session) == []
    db_session.refresh(row)
    assert row.status == "failed" and "attendance is broken today" in row.error
    assert row.claimed_until is None
    wait = work.backoff(1, base=services.QUEUE.backoff_base, cap=services.QUEUE.backoff_cap)
    assert wait == dt.timedelta(seconds=30)
    assert row.next_attempt_at is not None
    assert before + wait <= row.next_attempt_at <= utcnow() + wait
    assert not hasattr(services, "backoff") and not hasattr(services, "claim")


def test_two_runners_never_both_take_an_event(app: Flask, db_session: Session) -> None:
    row = store(db_session, started())
    now = utcnow()
    assert work.claim(db_session, services.QUEUE, row.id, now)
    assert not work.claim(db_session, services.QUEUE, row.id, now)
    assert jobs.process_pending(app) == {}
    assert db_session.scalar(select(func.count(AttendanceEvent.id))) == 0
