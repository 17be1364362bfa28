"""Stoplight Prism serves Zoom's OpenAPI spec and judges requests against it.

These prove the contract-test set-up works: a request reaches Prism, a valid type-8 (recurring,
fixed time) create passes its validation, and an invalid one is reported in `sl-violations`.
"""

from __future__ import annotations

import json

import pytest
import requests

pytestmark = pytest.mark.prism

AUTH = {"Authorization": "Bearer test-token"}

VALID_CREATE = {
    "topic": "Year 4 violin",
    "type": 8,
    "start_time": "2030-01-07T16:00:00Z",
    "duration": 45,
    "timezone": "Europe/London",
    "password": "k7Qm2pX9",
    "recurrence": {"type": 2, "repeat_interval": 1, "weekly_days": "2,4", "end_times": 10},
    "settings": {
        "waiting_room": True,
        "join_before_host": False,
        "mute_upon_entry": True,
        "auto_recording": "cloud",
        "approval_type": 1,
        "registrants_email_notification": False,
    },
}


def create(
    prism_url: str, body: object, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{prism_url}/users/me/meetings",
        json=body,
        headers=AUTH if headers is None else headers,
        timeout=30,
    )


def test_valid_recurring_create_has_no_violations(prism_url: str) -> None:
    r = create(prism_url, VALID_CREATE)
    assert r.status_code == 201, r.headers.get("sl-violations")
    assert "sl-violations" not in r.headers
    body = r.json()
    # Prism answers with the spec's example meeting.
    assert isinstance(body["id"], int)
    assert "join_url" in body


def test_invalid_create_is_reported_in_sl_violations(prism_url: str) -> None:
    bad = dict(VALID_CREATE, type="eight", duration="long")
    r = create(prism_url, bad)
    assert r.status_code == 400
    violations = json.loads(r.headers["sl-violations"])
    where = {".".join(v["location"]) for v in violations}
    assert "request.body.type" in where
    assert "request.body.duration" in where


def test_missing_authorization_is_refused(prism_url: str) -> None:
    r = create(prism_url, VALID_CREATE, headers={})
    assert r.status_code == 401


def test_paths_have_no_version_prefix(prism_url: str) -> None:
    # Prism ignores the spec's server path, so clients pointed at Prism use no /v2.
    r = requests.post(
        f"{prism_url}/v2/users/me/meetings", json=VALID_CREATE, headers=AUTH, timeout=30
    )
    assert r.status_code == 404
