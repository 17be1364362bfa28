"""States are StrEnums stored as the same strings as ever; who is signed in reads through typed
accessors that say what a view may count on."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask, g
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from companion.access import current_user, signed_in_user
from companion.courses.models import CLASS_STATUSES, SAFETY_STATES, ZOOM_STATES, ZOOM_WORK
from companion.errors import Unauthorized
from companion.families import models as families
from companion.mail.models import STATUSES, MessageStatus, OutboxMessage
from companion.recordings.models import FILE_STATES, RECORDING_STATES
from companion.webhooks.models import EVENT_STATUSES

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _message(session: Session, **values: Any) -> OutboxMessage:
    msg = OutboxMessage(
        kind="test",
        to_address="parent@example.org",
        subject="Hello",
        body_text="Hello.",
        created_at=NOW,
        **values,
    )
    session.add(msg)
    session.flush()
    return msg


def _stored_status(session: Session, msg: OutboxMessage) -> str:
    return session.execute(
        text("SELECT status FROM outbox_messages WHERE id = :id"), {"id": msg.id}
    ).scalar_one()


def test_a_state_is_stored_as_its_string_and_read_back_as_a_member(db_session: Session):
    msg = _message(db_session, status=MessageStatus.HELD)
    assert _stored_status(db_session, msg) == "held"
    db_session.expire(msg)
    assert msg.status is MessageStatus.HELD
    assert msg.status == "held"  # comparisons with the old strings still hold


def test_a_plain_string_is_still_taken(db_session: Session):
    msg = _message(db_session, status="uncertain")
    db_session.expire(msg)
    assert msg.status is MessageStatus.UNCERTAIN


def test_an_unknown_state_is_still_refused_by_the_table(db_session: Session):
    with pytest.raises(IntegrityError):
        _message(db_session, status="lost")
    db_session.rollback()


@pytest.mark.parametrize(
    ("states", "stored"),
    [
        (ZOOM_STATES, ("pending", "created", "failed", "cancelled", "closed")),
        (ZOOM_WORK, ("", "create", "sync", "delete")),
        (SAFETY_STATES, ("unverified", "safe", "not_safe")),
        (CLASS_STATUSES, ("scheduled", "moved", "cancelled")),
        (families.STATUSES, ("enrolled", "withdrawn")),
        (families.ZOOM_STATES, ("pending", "registered", "failed", "cancelling", "cancelled")),
        (RECORDING_STATES, ("active", "deleting", "deleted")),
        (
            FILE_STATES,
            ("pending", "downloading", "stored", "verified", "zoom_deleted", "failed", "deleted"),
        ),
        (STATUSES, ("pending", "sending", "sent", "held", "uncertain")),
        (EVENT_STATUSES, ("pending", "processing", "done", "unhandled", "failed", "dead")),
    ],
)
def test_the_stored_values_are_the_ones_the_migrations_allow(states, stored):
    # The CHECK constraints of the migrations name these strings: no member may change them.
    assert tuple(str(s) for s in states) == stored


def test_current_user_is_for_staff_views_and_signed_in_user_for_any_page(app: Flask):
    with app.test_request_context("/"):
        g.user = None
        assert signed_in_user() is None
        with pytest.raises(Unauthorized):
            current_user()
