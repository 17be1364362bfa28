"""Zoom webhook signing and checking, against worked vectors (zoom-api-notes.md section 6)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.zoom.webhooks import (
    WebhookRejected,
    dedupe_key,
    sandbox_webhook_secret,
    sign,
    signed_headers,
    url_validation_response,
    verify,
)

# Computed with Python hmac and Node crypto (identical); see the notes' worked example.
SECRET = "example_webhook_secret_token"
TIMESTAMP = "1700000000"
BODY = (
    b'{"event":"meeting.started","payload":{"account_id":"AAAA","object":{"id":"85746065",'
    b'"uuid":"4444AAAiAAAAAiAiAiiAii==","host_id":"z8yCxjabcdEFGHfp8uQ","topic":"Class",'
    b'"type":8}},"event_ts":1700000000123}'
)
SIGNATURE = "v0=34c23afcae16fcc455390526476dc314e4042a7b3c4246ee4f285b38423bbcd8"


def headers(signature: str = SIGNATURE, timestamp: str = TIMESTAMP) -> dict[str, str]:
    return {"x-zm-signature": signature, "x-zm-request-timestamp": timestamp}


def test_sign_matches_worked_example() -> None:
    assert sign(SECRET, TIMESTAMP, BODY) == SIGNATURE


def test_url_validation_vectors() -> None:
    assert url_validation_response(SECRET, "qgg8vlvZRS6UYooatFL8Aw") == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": "42da25992e4a9f06f8a70d315f5551f27b1119918fd77d80fc8456bf76019e83",
    }
    # Cross-check vector from elastic/beats' Zoom CRC test.
    assert (
        url_validation_response("secretValueTest", "qgg8vlvZRS6UYooatFL8Aw")["encryptedToken"]
        == "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff"
    )


def test_verify_accepts_the_worked_example() -> None:
    verify(SECRET, headers(), BODY, now=1700000000 + 10)


def test_header_names_are_case_insensitive_for_plain_dicts() -> None:
    verify(
        SECRET,
        {"X-Zm-Signature": SIGNATURE, "X-ZM-Request-Timestamp": TIMESTAMP},
        BODY,
        now=1700000000,
    )


def test_reserialised_json_does_not_verify() -> None:
    # json.dumps adds spaces after separators: other bytes, other signature.
    reserialised = json.dumps(json.loads(BODY)).encode()
    with pytest.raises(WebhookRejected, match="signature"):
        verify(SECRET, headers(), reserialised, now=1700000000)


@pytest.mark.parametrize(
    ("hdrs", "reason"),
    [
        ({"x-zm-request-timestamp": TIMESTAMP}, "missing x-zm-signature"),
        ({"x-zm-signature": SIGNATURE}, "missing x-zm-request-timestamp"),
        (headers(signature=""), "missing x-zm-signature"),
        (headers(timestamp="17e8"), "not a whole number"),
        (headers(timestamp="-1700000000"), "not a whole number"),
        (headers(timestamp="1700000000.5"), "not a whole number"),
        (headers(timestamp="٣٣"), "not a whole number"),  # Arabic-Indic digits are digits too
        (headers(signature=SIGNATURE[:-1] + "0"), "signature does not match"),
        (headers(signature=SIGNATURE[3:]), "signature does not match"),  # no "v0=" prefix
        (headers(signature=SIGNATURE.upper()), "signature does not match"),
    ],
)
def test_verify_refuses(hdrs: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        verify(SECRET, hdrs, BODY, now=1700000000)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookRejected, match="signature does not match"):
        verify("another-secret", headers(), BODY, now=1700000000)


def test_no_secret_is_refused_not_accepted() -> None:
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        verify("", headers(), BODY, now=1700000000)
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        verify([], headers(), BODY, now=1700000000)


def test_timestamp_window_both_directions() -> None:
    ts = 1700000000
    verify(SECRET, headers(), BODY, now=ts + 300)
    verify(SECRET, headers(), BODY, now=ts - 300)
    with pytest.raises(WebhookRejected, match="old"):
        verify(SECRET, headers(), BODY, now=ts + 301)
    with pytest.raises(WebhookRejected, match="future"):
        verify(SECRET, headers(), BODY, now=ts - 301)
    verify(SECRET, headers(), BODY, now=ts + 1000, tolerance=1000)


def test_rotation_accepts_old_and_new_secret() -> None:
    new_signature = sign("new-secret", TIMESTAMP, BODY)
    both = ["new-secret", SECRET]
    verify(both, headers(), BODY, now=1700000000)
    verify(both, headers(signature=new_signature), BODY, now=1700000000)
    with pytest.raises(WebhookRejected):
        verify(["new-secret"], headers(), BODY, now=1700000000)


def test_signed_headers_roundtrip_with_fresh_timestamp() -> None:
    first = signed_headers(SECRET, BODY, now=1700000000.9)
    later = signed_headers(SECRET, BODY, now=1700000300.2)
    assert first["x-zm-request-timestamp"] == "1700000000"
    assert first["x-zm-signature"] == SIGNATURE
    assert later["x-zm-signature"] != first["x-zm-signature"]
    verify(SECRET, later, BODY, now=1700000301)


@settings(deadline=None)  # a busy CI machine must not turn slowness into a failure
@given(st.binary(max_size=512), st.integers(min_value=0, max_value=10**11))
def test_any_body_roundtrips_and_any_flipped_byte_fails(body: bytes, now: int) -> None:
    hdrs = signed_headers(SECRET, body, now=now)
    verify(SECRET, hdrs, body, now=now)
    tampered = body + b" "
    with pytest.raises(WebhookRejected):
        verify(SECRET, hdrs, tampered, now=now)


# --- dedupe keys -------------------------------------------------------------------------------


def participant_event(name: str, **participant: str) -> dict:
    return {
        "event": name,
        "event_ts": 1700000000123,
        "payload": {
            "account_id": "AAAA",
            "object": {"id": "85746065", "uuid": "abc==", "participant": participant},
        },
    }


def recording_event(*file_ids: str, event_ts: int = 1) -> dict:
    return {
        "event": "recording.completed",
        "event_ts": event_ts,
        "download_token": f"token-{event_ts}",
        "payload": {
            "account_id": "AAAA",
            "object": {
                "id": 85746065,
                "uuid": "abc==",
                "recording_files": [{"id": f} for f in file_ids],
            },
        },
    }


def test_dedupe_key_ignores_delivery_details() -> None:
    # A retry may carry another event_ts or download token; it is still the same event.
    assert dedupe_key(recording_event("f1", "f2", event_ts=1)) == dedupe_key(
        recording_event("f2", "f1", event_ts=2)
    )


def test_dedupe_key_separates_different_events() -> None:
    joined = participant_event(
        "meeting.participant_joined",
        participant_uuid="P1",
        registrant_id="R1",
        join_time="2026-01-07T16:01:00Z",
    )
    rejoined = participant_event(
        "meeting.participant_joined",
        participant_uuid="P1",
        registrant_id="R1",
        join_time="2026-01-07T16:20:00Z",
    )
    left = participant_event(
        "meeting.participant_left",
        participant_uuid="P1",
        registrant_id="R1",
        leave_time="2026-01-07T16:20:00Z",
    )
    other = participant_event(
        "meeting.participant_joined",
        participant_uuid="P2",
        join_time="2026-01-07T16:01:00Z",
    )
    keys = {dedupe_key(e) for e in (joined, rejoined, left, other)}
    assert len(keys) == 4
    assert dedupe_key(recording_event("f1")) != dedupe_key(recording_event("f1", "f2"))
    started = {"event": "meeting.started", "payload": {"object": {"id": "1", "uuid": "u1"}}}
    ended = {"event": "meeting.ended", "payload": {"object": {"id": "1", "uuid": "u1"}}}
    next_class = {"event": "meeting.started", "payload": {"object": {"id": "1", "uuid": "u2"}}}
    assert len({dedupe_key(started), dedupe_key(ended), dedupe_key(next_class)}) == 3


def test_dedupe_key_of_unknown_or_odd_shapes() -> None:
    assert dedupe_key({}) == dedupe_key({})
    odd = {"event": "x.y", "payload": {"thing": 1}}
    assert dedupe_key(odd) != dedupe_key({"event": "x.y", "payload": {"thing": 2}})
    assert dedupe_key({"event": "x", "payload": "not an object"})
    many = recording_event(*[f"file-{i:04d}-{'x' * 30}" for i in range(20)])
    key = dedupe_key(many)
    assert len(key) <= 255 and key.startswith("recording.completed|sha256:")
    assert key == dedupe_key(many)


def test_sandbox_secret_is_configured_or_derived() -> None:
    assert sandbox_webhook_secret({"ZOOM_WEBHOOK_SECRET": "given", "ZOOM_MODE": "zoom"}) == "given"
    key = "k" * 40
    derived = sandbox_webhook_secret({"ZOOM_MODE": "sandbox", "SECRET_KEY": key})
    assert derived == sandbox_webhook_secret(
        {"ZOOM_MODE": "sandbox", "SECRET_KEY": key, "ZOOM_WEBHOOK_SECRET": ""}
    )
    assert len(derived) == 22 and key not in derived
    assert derived != sandbox_webhook_secret({"ZOOM_MODE": "sandbox", "SECRET_KEY": "j" * 40})
    with pytest.raises(ValueError):
        sandbox_webhook_secret({"ZOOM_MODE": "zoom", "SECRET_KEY": key})
