"""Issue 6, item 6: a fuzz of POST /zoom/webhook through the Flask test client.

Random bodies, headers and signatures: never a 5xx, never accepted (2xx) without a valid
signature, nothing stored. A valid signature over random JSON: never a crash, and never more
than one stored event per dedupe key however often it is delivered.
(The signature functions themselves: tests/webhooks/test_signatures.py; the encrypted-format
reader: tests/recordings/test_fuzz_format.py.)
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.webhooks.models import WebhookEvent
from companion.zoom.webhooks import sandbox_webhook_secret, sign

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)
documents = st.fixed_dictionaries(
    {"event": st.sampled_from(["meeting.started", "meeting.ended", "recording.completed",
                               "meeting.participant_joined", "endpoint.url_validation"])
     | st.text(max_size=30)},
    optional={"payload": json_values, "event_ts": st.integers() | st.text(max_size=10)},
)  # fmt: skip


def stored(db_session: Session) -> int:
    db_session.expire_all()
    return db_session.scalar(select(func.count(WebhookEvent.id))) or 0


@FUZZ
@given(
    body=st.binary(max_size=2000),
    timestamp=st.one_of(st.none(), header_text, st.integers(0, 2**40).map(str)),
    signature=st.one_of(st.none(), header_text, st.just("v0=" + "0" * 64)),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]
    ),
)
def test_anything_unsigned_is_refused_and_nothing_crashes(
    app: Flask, db_session: Session, body: bytes, timestamp: Any, signature: Any, content_type: str
) -> None:
    headers = {}
    if timestamp is not None:
        headers["x-zm-request-timestamp"] = timestamp
    if signature is not None:
        headers["x-zm-signature"] = signature
    if content_type:
        headers["Content-Type"] = content_type
    before = stored(db_session)
    response = app.test_client().post("/zoom/webhook", data=body, headers=headers)
    assert response.status_code < 500
    assert not 200 <= response.status_code < 300, response.status_code
    assert stored(db_session) == before


@FUZZ
@given(document=documents, stale=st.booleans(), flip=st.integers(0, 10_000))
def test_a_forged_signature_over_real_looking_json_is_refused(
    app: Flask, db_session: Session, document: dict[str, Any], stale: bool, flip: int
) -> None:
    secret = sandbox_webhook_secret(app.config)
    body = json.dumps(document).encode()
    now = int(time.time())
    timestamp = str(now - 3600 if stale else now)
    good = sign(secret, timestamp, body)
    # One changed character of the signature, or a signature made with another secret.
    index = 3 + flip % (len(good) - 3)
    forged = good[:index] + ("0" if good[index] != "0" else "1") + good[index + 1 :]
    before = stored(db_session)
    for signature in (forged, sign(secret + "x", timestamp, body)) + ((good,) if stale else ()):
        response = app.test_client().post(
            "/zoom/webhook",
            data=body,
            headers={
                "x-zm-request-timestamp": timestamp,
                "x-zm-signature": signature,
                "Content-Type": "application/json",
            },
        )
        assert response.status_code < 500
        assert not 200 <= response.status_code < 300
    assert stored(db_session) == before


@FUZZ
@given(document=documents, deliveries=st.integers(1, 3))
def test_validly_signed_random_json_never_crashes_and_is_kept_once(
    app: Flask, db_session: Session, document: dict[str, Any], deliveries: int
) -> None:
    secret = sandbox_webhook_secret(app.config)
    body = json.dumps(document).encode()
    before = stored(db_session)
    answers = []
    for _ in range(deliveries):
        timestamp = str(int(time.time()))
        response = app.test_client().post(
            "/zoom/webhook",
            data=body,
            headers={
                "x-zm-request-timestamp": timestamp,
                "x-zm-signature": sign(secret, timestamp, body),
                "Content-Type": "application/json",
            },
        )
        assert response.status_code < 500, response.get_data(as_text=True)[:300]
        answers.append(response.status_code)
    added = stored(db_session) - before
    assert added <= 1
    if added:
        db_session.expire_all()
        row = db_session.scalars(select(WebhookEvent).order_by(WebhookEvent.id.desc())).first()
        assert row is not None and row.body == body
        # Same key, so a later delivery is a duplicate, never a second row.
        assert (
            db_session.scalar(
                select(func.count(WebhookEvent.id)).where(WebhookEvent.dedupe_key == row.dedupe_key)
            )
            == 1
        )
