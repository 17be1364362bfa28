"""Injected faults: rate limits, server errors and slow answers, for companion's fault tests."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from companion.zoom.sandbox.app import AnswerDropped

from .conftest import Api


def test_429_with_retry_after_then_normal(api: Api, zoom_client: FlaskClient) -> None:
    r = zoom_client.post(
        "/_sandbox/faults",
        json={
            "path": "/v2/users/*/meetings",
            "method": "post",
            "status": 429,
            "count": 2,
            "retry_after": 3,
        },
    )
    assert r.status_code == 201
    assert r.get_json()["remaining"] == 2
    assert api.get("/v2/users/me/meetings").status_code == 200  # another method: untouched
    for _ in range(2):
        r = api.post("/v2/users/me/meetings", json={"topic": "x", "type": 2})
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "3"
        assert r.headers["X-RateLimit-Category"] == "Light"
        assert r.headers["X-Companion-Sandbox"] == "1"
        assert r.get_json()["code"] == 429
    assert zoom_client.get("/_sandbox/faults").get_json() == []
    r = api.post("/v2/users/me/meetings", json={"topic": "x", "type": 2})
    assert r.status_code == 201
    # Nothing was created by the refused calls.
    assert api.get("/v2/users/me/meetings").get_json()["total_records"] == 1


def test_retry_after_as_an_http_date_and_custom_body(api: Api, zoom_client: FlaskClient) -> None:
    zoom_client.post(
        "/_sandbox/faults",
        json={
            "path": "/v2/meetings/*",
            "status": 429,
            "retry_after": "Sun, 31 Oct 2027 00:00:00 GMT",
            "body": {
                "code": 429,
                "message": "You have exceeded the daily rate limit (100) of Meeting Create/Update "
                "API requests permitted for this particular user.",
            },
        },
    )
    r = api.get("/v2/meetings/1")
    assert r.headers["Retry-After"] == "Sun, 31 Oct 2027 00:00:00 GMT"
    assert "daily rate limit (100)" in r.get_json()["message"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(api: Api, zoom_client: FlaskClient, status: int) -> None:
    zoom_client.post("/_sandbox/faults", json={"path": "/v2/*", "status": status})
    r = api.get("/v2/users/me/meetings")
    assert r.status_code == status
    assert r.get_json()["code"] == status
    assert api.get("/v2/users/me/meetings").status_code == 200


def test_fault_on_the_token_endpoint(zoom_client: FlaskClient) -> None:
    zoom_client.post("/_sandbox/faults", json={"path": "/oauth/token", "status": 503})
    from .conftest import BASIC, TOKEN_URL

    assert zoom_client.post(TOKEN_URL, headers={"Authorization": BASIC}).status_code == 503
    assert zoom_client.post(TOKEN_URL, headers={"Authorization": BASIC}).status_code == 200


def test_always_failing_and_clearing(api: Api, zoom_client: FlaskClient) -> None:
    zoom_client.post(
        "/_sandbox/faults", json={"path": "/v2/users/me/meetings", "status": 500, "count": -1}
    )
    for _ in range(3):
        assert api.get("/v2/users/me/meetings").status_code == 500
    assert zoom_client.delete("/_sandbox/faults").status_code == 204
    assert api.get("/v2/users/me/meetings").status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"path": 5},
        {"path": "/v2/*", "count": 0},
        {"path": "/v2/*", "status": 200},
        {"path": "/v2/*", "delay": 500},
        {"path": "/v2/*", "drop": True, "status": 502},
        {"path": "/v2/*", "after": True},
        {"route": 7},
    ],
)
def test_bad_fault_specs(zoom_client: FlaskClient, spec: dict[str, Any]) -> None:
    assert zoom_client.post("/_sandbox/faults", json=spec).status_code == 400


def test_slow_answer_times_out_a_client(sandbox_app: Flask, api: Api, live: Any) -> None:
    base = live(sandbox_app)
    api.client.post("/_sandbox/faults", json={"path": "/v2/users/me/meetings", "delay": 2.0})
    headers = {"Authorization": f"Bearer {api.token}"}
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{base}/v2/users/me/meetings", headers=headers, timeout=0.3)
    assert time.monotonic() - started < 1.8  # the client gave up; it did not wait 2 s
    # Without a status, the slow request still succeeds for a patient client.
    api.client.post("/_sandbox/faults", json={"path": "/v2/users/me/meetings", "delay": 0.3})
    r = requests.get(f"{base}/v2/users/me/meetings", headers=headers, timeout=5)
    assert r.status_code == 200


def test_faults_list_is_shown_in_state(zoom_client: FlaskClient) -> None:
    zoom_client.post(
        "/_sandbox/faults",
        json=[{"path": "/v2/a", "status": 500}, {"path": "/v2/b", "status": 429, "count": 3}],
    )
    state = zoom_client.get("/_sandbox/state").get_json()
    assert [(f["path"], f["remaining"]) for f in state["faults"]] == [("/v2/a", 1), ("/v2/b", 3)]
    assert state["sandbox"] is True


def test_call_statistics(api: Api, zoom_client: FlaskClient) -> None:
    zoom_client.delete("/_sandbox/stats")
    meeting = api.create_meeting()
    api.get(f"/v2/meetings/{meeting['id']}")
    api.get(f"/v2/meetings/{meeting['id']}")
    api.get("/v2/meetings/1")
    stats = zoom_client.get("/_sandbox/stats").get_json()
    assert stats["calls"] == {
        "POST /v2/users/{userId}/meetings": 1,
        "GET /v2/meetings/{meetingId}": 3,
    }
    assert stats["by_status"]["GET /v2/meetings/{meetingId} 404"] == 1
    assert stats["total"] == 4


# --- answers lost: no answer at all, or one that comes after Zoom acted -----------------------


def meeting_count(api: Api) -> int:
    return api.get("/v2/users/me/meetings").get_json()["total_records"]


def test_a_dropped_request_is_not_carried_out(api: Api, zoom_client: FlaskClient) -> None:
    zoom_client.post(
        "/_sandbox/faults", json={"path": "/v2/users/*/meetings", "method": "POST", "drop": True}
    )
    # In process the WSGI app raises instead of answering: a ConnectionError, as from a socket.
    with pytest.raises(AnswerDropped):
        api.create_meeting()
    assert meeting_count(api) == 0
    stats = zoom_client.get("/_sandbox/stats").get_json()
    assert stats["by_status"]["POST /v2/users/{userId}/meetings dropped"] == 1


@pytest.mark.parametrize("lost", [{"drop": True}, {"status": 504}], ids=["no-answer", "gateway"])
def test_an_answer_lost_after_zoom_acted_leaves_the_change_made(
    api: Api, zoom_client: FlaskClient, lost: dict[str, Any]
) -> None:
    zoom_client.post(
        "/_sandbox/faults",
        json={"path": "/v2/users/*/meetings", "method": "POST", "after": True, **lost},
    )
    if lost.get("drop"):
        with pytest.raises(AnswerDropped):
            api.create_meeting()
    else:
        r = api.post("/v2/users/me/meetings", json={"topic": "x", "type": 2})
        assert r.status_code == 504
        assert r.get_json()["code"] == 504
    assert meeting_count(api) == 1  # made, though the caller never heard


def test_a_dropped_answer_over_http_is_a_closed_connection(
    sandbox_app: Flask, api: Api, live: Any
) -> None:
    base = live(sandbox_app)
    api.client.post(
        "/_sandbox/faults",
        json={"path": "/v2/users/*/meetings", "method": "POST", "after": True, "drop": True},
    )
    headers = {"Authorization": f"Bearer {api.token}"}
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{base}/v2/users/me/meetings", json={"topic": "x"}, headers=headers, timeout=5
        )
    assert meeting_count(api) == 1
    # The server goes on answering the next request.
    assert (
        requests.get(f"{base}/v2/users/me/meetings", headers=headers, timeout=5).status_code == 200
    )


def test_a_route_fault_tells_a_meeting_from_its_registrants(
    api: Api, zoom_client: FlaskClient
) -> None:
    meeting = api.create_meeting()
    zoom_client.post(
        "/_sandbox/faults",
        json={"route": "/v2/meetings/{meetingId}", "method": "GET", "status": 503},
    )
    # A glob "/v2/meetings/*" would match this too; the route does not.
    assert api.get(f"/v2/meetings/{meeting['id']}/registrants").status_code == 200
    assert api.get(f"/v2/meetings/{meeting['id']}").status_code == 503
    assert api.get(f"/v2/meetings/{meeting['id']}").status_code == 200
