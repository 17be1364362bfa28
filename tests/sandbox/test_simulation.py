"""Simulated classes: Zoom's meeting and recording webhooks, signed, in order, retried."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from companion.zoom.sandbox import HOST_USER_ID, DeliveryWorker, Sandbox, create_sandbox_app
from companion.zoom.sandbox.delivery import deliver_due, deliveries, validate_endpoint
from companion.zoom.webhooks import WebhookRejected, dedupe_key, verify

from ..polling import poll
from .conftest import PUBLIC_URL, WEBHOOK_SECRET, Api, FakeClock, Receiver, fetch_token

EXPECTED_ORDER = [
    "meeting.started",
    "meeting.participant_joined",  # the teacher (host)
    "meeting.participant_joined_waiting_room",
    "meeting.participant_joined_waiting_room",
    "meeting.participant_admitted",
    "meeting.participant_joined",
    "meeting.participant_admitted",
    "meeting.participant_joined",
    "meeting.participant_left",
    "meeting.participant_left",
    "meeting.participant_left",  # the teacher
    "meeting.ended",
    "recording.completed",
]


@pytest.fixture
def hooked(tmp_path: Path, clock: FakeClock, receiver: tuple[Receiver, str]) -> Any:
    """A sandbox whose webhooks go to the loopback receiver; returns (sandbox, api, receiver)."""
    target, url = receiver
    app = create_sandbox_app(
        str(tmp_path / "hooked.sqlite3"),
        webhook_url=url,
        webhook_secret=WEBHOOK_SECRET,
        public_url=PUBLIC_URL,
        clock=clock,
    )
    client = app.test_client()
    yield app.extensions["zoom_sandbox"], Api(client, fetch_token(client)), target
    app.extensions["zoom_sandbox"].close()


def approved(api: Api, meeting_id: int, name: str) -> str:
    r = api.post(
        f"/v2/meetings/{meeting_id}/registrants",
        json={"email": f"{name.lower()}@example.org", "first_name": name, "auto_approve": True},
    )
    return r.get_json()["registrant_id"]


def bodies(target: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in target.requests]


def test_a_class_sends_signed_events_in_order(hooked: Any, clock: FakeClock) -> None:
    sandbox, api, target = hooked
    meeting = api.create_meeting()
    child = approved(api, meeting["id"], "Alex")
    occurrence = meeting["occurrences"][0]
    summary = sandbox.simulate_class(
        meeting["id"],
        occurrence["occurrence_id"],
        participants=[child, "Mystery Guest"],
        teacher="Ms Teacher",
    )
    assert [e["event"] for e in summary["events"]] == EXPECTED_ORDER
    assert deliver_due(sandbox) == len(EXPECTED_ORDER)

    events = bodies(target)
    assert [e["event"] for e in events] == EXPECTED_ORDER
    for request in target.requests:
        headers = request["headers"]
        assert request["path"] == "/zoom/webhook"
        assert headers["User-Agent"] == "Zoom Marketplace/1.0a"
        assert headers["Content-Type"].startswith("application/json")
        assert headers["X-Zm-Signature"].startswith("v0=")
        # Signed exactly as Zoom signs: our own verifier (used by companion's intake) accepts it.
        verify(WEBHOOK_SECRET, headers, request["body"], now=clock())
        with pytest.raises(WebhookRejected):
            verify("another-secret", headers, request["body"], now=clock())
        assert b", " not in request["body"]  # compact JSON, like Zoom's

    # Zoom's envelope and field names.
    started = events[0]
    assert list(started) == ["event", "payload", "event_ts"]
    assert started["payload"]["account_id"] == "sandbox-account"
    obj = started["payload"]["object"]
    assert obj == {
        "id": str(meeting["id"]),
        "uuid": summary["uuid"],
        "host_id": HOST_USER_ID,
        "topic": meeting["topic"],
        "type": 8,
        "start_time": "2027-10-07T15:58:00Z",  # the teacher opens two minutes early
        "timezone": "Europe/London",
        "duration": 45,
    }
    assert started["event_ts"] == int(
        dt.datetime(2027, 10, 7, 15, 58, tzinfo=dt.UTC).timestamp() * 1000
    )

    host_joined = events[1]["payload"]["object"]["participant"]
    assert host_joined["user_name"] == "Ms Teacher"
    assert host_joined["id"] == HOST_USER_ID
    assert "registrant_id" not in host_joined

    waiting = [
        e["payload"]["object"]["participant"] for e in events if e["event"].endswith("waiting_room")
    ]
    assert {p["user_name"] for p in waiting} == {"Alex", "Mystery Guest"}
    for p in waiting:
        assert set(p) >= {"user_id", "user_name", "participant_uuid", "date_time", "email"}
    joined = [
        e["payload"]["object"]["participant"]
        for e in events
        if e["event"] == "meeting.participant_joined"
    ][1:]
    alex = next(p for p in joined if p["user_name"] == "Alex")
    guest = next(p for p in joined if p["user_name"] == "Mystery Guest")
    assert alex["registrant_id"] == child and alex["email"] == "alex@example.org"
    assert "registrant_id" not in guest and guest["email"] == ""
    assert alex["join_time"] == "2027-10-07T16:00:02Z"
    left = [e["payload"]["object"]["participant"] for e in events if e["event"].endswith("left")]
    assert all(p["leave_reason"] and p["leave_time"] for p in left)
    ended = events[-2]["payload"]["object"]
    assert ended["end_time"] == "2027-10-07T16:45:00Z"
    # Every event of the class is about the same meeting instance, in time order.
    assert {e["payload"]["object"]["uuid"] for e in events} == {summary["uuid"]}
    assert [e["event_ts"] for e in events] == sorted(e["event_ts"] for e in events)
    # And no two events share a redelivery key.
    assert len({dedupe_key(e) for e in events}) == len(events)

    completed = events[-1]
    assert completed["download_token"]
    files = completed["payload"]["object"]["recording_files"]
    assert {f["file_type"] for f in files} == {"MP4", "M4A"}
    assert {f["file_extension"] for f in files} == {"MP4", "M4A"}
    assert all(f["status"] == "completed" and f["download_url"] for f in files)


def test_without_waiting_room_children_join_directly(hooked: Any, zoom_client: Any) -> None:
    sandbox, api, target = hooked
    api.client.post("/_sandbox/locks", json={"waiting_room": False})
    meeting = api.create_meeting()
    summary = sandbox.simulate_class(meeting["id"], participants=["Kid"])
    assert summary["waiting_room"] is False
    events = [e["event"] for e in summary["events"]]
    assert "meeting.participant_joined_waiting_room" not in events
    assert "meeting.participant_admitted" not in events
    assert events.count("meeting.participant_joined") == 2


def test_participants_default_to_approved_registrants(hooked: Any) -> None:
    sandbox, api, _ = hooked
    meeting = api.create_meeting()
    one = approved(api, meeting["id"], "One")
    two = approved(api, meeting["id"], "Two")
    pending = api.post(
        f"/v2/meetings/{meeting['id']}/registrants",
        json={"email": "wait@example.org", "first_name": "Wait"},
    ).get_json()["registrant_id"]
    summary = sandbox.simulate_class(meeting["id"], meeting["occurrences"][0]["occurrence_id"])
    assert [p["registrant_id"] for p in summary["participants"]] == [one, two]
    before = len(deliveries(sandbox))
    with pytest.raises(Exception, match="not approved"):
        sandbox.simulate_class(meeting["id"], participants=["Guest", pending])
    # Nothing half-done: no events, no instance, the meeting is not live.
    assert len(deliveries(sandbox)) == before
    assert api.get(f"/v2/meetings/{meeting['id']}").get_json()["status"] == "waiting"
    assert len(sandbox.state()["instances"]) == 1


def test_retries_after_5_20_60_minutes_each_freshly_signed(hooked: Any, clock: FakeClock) -> None:
    sandbox, api, target = hooked
    meeting = api.create_meeting(settings={"approval_type": 1, "auto_recording": "none"})
    sandbox.simulate_class(meeting["id"], participants=[])
    first = len(deliveries(sandbox))  # started, host joined, host left, ended
    assert first == 4

    target.statuses = [500]  # the first event fails; the other three go through
    deliver_due(sandbox)
    started = [r for r in target.requests if json.loads(r["body"])["event"] == "meeting.started"]
    assert len(started) == 1 and len(target.requests) == 4  # the others went through
    states = {d["event"]: d for d in deliveries(sandbox)}
    retry = states["meeting.started"]
    assert retry["state"] == "pending" and retry["attempts"] == 1
    assert retry["next_attempt_at"] == pytest.approx(clock() + 300)

    deliver_due(sandbox)
    assert len(target.requests) == 4  # not due yet
    target.statuses = [503, 404]  # two more failures, then success
    for wait in (300, 1200, 3600):
        clock.advance(wait - 1)
        assert deliver_due(sandbox) == 0
        clock.advance(1)
        assert deliver_due(sandbox) == 1
    started = [r for r in target.requests if json.loads(r["body"])["event"] == "meeting.started"]
    assert len(started) == 4
    # Same body every time, a fresh timestamp and signature each time, all valid.
    assert len({r["body"] for r in started}) == 1
    assert len({r["headers"]["X-Zm-Request-Timestamp"] for r in started}) == 4
    assert len({r["headers"]["X-Zm-Signature"] for r in started}) == 4
    for request in started:
        ts = int(request["headers"]["X-Zm-Request-Timestamp"])
        verify(WEBHOOK_SECRET, request["headers"], request["body"], now=ts)
    final = next(d for d in deliveries(sandbox) if d["event"] == "meeting.started")
    assert final["state"] == "delivered" and final["attempts"] == 4
    assert [entry.get("status") for entry in final["log"]] == [500, 503, 404, 200]


def test_gives_up_after_three_retries(hooked: Any, clock: FakeClock) -> None:
    sandbox, api, target = hooked
    meeting = api.create_meeting(settings={"auto_recording": "none"})
    sandbox.simulate_class(meeting["id"], participants=[])
    target.statuses = [500] * 100
    for wait in (0, 300, 1200, 3600, 7200):
        clock.advance(wait)
        deliver_due(sandbox)
    assert len(target.requests) == 16  # 4 events x 4 attempts, none after
    assert {d["state"] for d in deliveries(sandbox)} == {"failed"}


def test_a_slow_2xx_counts_as_a_failure(hooked: Any) -> None:
    sandbox, api, target = hooked
    sandbox.delivery_timeout = 0.2  # Zoom waits 3 s; the test does not
    meeting = api.create_meeting(settings={"auto_recording": "none"})
    sandbox.simulate_class(meeting["id"], participants=[])
    target.delay = 0.5
    deliver_due(sandbox)
    target.delay = 0
    assert {d["state"] for d in deliveries(sandbox)} == {"pending"}
    assert all("Timeout" in d["last_error"] for d in deliveries(sandbox))


def test_unreachable_receiver_is_retried(tmp_path: Path, clock: FakeClock) -> None:
    app = create_sandbox_app(
        str(tmp_path / "s.sqlite3"),
        webhook_url="http://127.0.0.1:9/zoom/webhook",  # the discard port: nobody listens
        webhook_secret=WEBHOOK_SECRET,
        public_url=PUBLIC_URL,
        clock=clock,
    )
    sandbox: Sandbox = app.extensions["zoom_sandbox"]
    client = app.test_client()
    meeting = Api(client, fetch_token(client)).create_meeting(settings={"auto_recording": "none"})
    sandbox.simulate_class(meeting["id"], participants=[])
    deliver_due(sandbox)
    assert all(
        d["state"] == "pending" and "Connection" in d["last_error"] for d in deliveries(sandbox)
    )
    sandbox.close()


def test_redeliver_sends_the_same_event_again(hooked: Any) -> None:
    sandbox, api, target = hooked
    meeting = api.create_meeting()
    sandbox.simulate_class(meeting["id"], participants=[])
    deliver_due(sandbox)
    completed = next(d for d in deliveries(sandbox) if d["event"] == "recording.completed")
    for _ in range(2):
        r = api.client.post(f"/_sandbox/deliveries/{completed['id']}/redeliver")
        assert r.get_json()["delivered"] is True
    copies = [json.loads(r["body"]) for r in target.requests]
    copies = [c for c in copies if c["event"] == "recording.completed"]
    assert len(copies) == 3 and len({dedupe_key(c) for c in copies}) == 1
    assert api.client.post("/_sandbox/deliveries/999/redeliver").status_code == 404


def test_in_process_transport(store_path: str, clock: FakeClock) -> None:
    """Companion's own tests can deliver into a Flask test client instead of over HTTP."""
    app = create_sandbox_app(
        store_path,
        webhook_url="http://companion.test/zoom/webhook",
        webhook_secret=WEBHOOK_SECRET,
        public_url=PUBLIC_URL,
        clock=clock,
    )
    sandbox: Sandbox = app.extensions["zoom_sandbox"]
    got: list[tuple[str, bytes, dict[str, str]]] = []

    def transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        got.append((url, body, headers))
        return 204

    sandbox.webhook_transport = transport
    client = app.test_client()
    meeting = Api(client, fetch_token(client)).create_meeting(settings={"auto_recording": "none"})
    sandbox.simulate_class(meeting["id"], participants=[])
    assert deliver_due(sandbox) == 4
    assert {d["state"] for d in deliveries(sandbox)} == {"delivered"}
    assert got[0][0] == "http://companion.test/zoom/webhook"
    sandbox.close()


def test_live_class_ended_through_the_api(hooked: Any, clock: FakeClock) -> None:
    sandbox, api, target = hooked
    meeting = api.create_meeting()
    kid = approved(api, meeting["id"], "Kim")
    summary = sandbox.simulate_class(meeting["id"], participants=[kid], end=False)
    assert summary["live"] is True and summary["end_time"] is None
    assert [e["event"] for e in summary["events"]][-1] == "meeting.participant_joined"
    # A second class cannot start while one is live.
    with pytest.raises(Exception, match="already live"):
        sandbox.simulate_class(meeting["id"], participants=[])
    clock.advance(30 * 60)
    assert (
        api.put(f"/v2/meetings/{meeting['id']}/status", json={"action": "end"}).status_code == 204
    )
    deliver_due(sandbox)
    events = bodies(target)
    assert [e["event"] for e in events][-4:] == [
        "meeting.participant_left",
        "meeting.participant_left",
        "meeting.ended",
        "recording.completed",
    ]
    # Ended by the host half an hour after the clock's start (09:00 UTC).
    assert events[-2]["payload"]["object"]["end_time"] == "2027-09-01T09:30:00Z"
    assert summary["start_time"] == "2027-09-01T08:58:00Z"
    assert api.get(f"/v2/meetings/{meeting['id']}/recordings").status_code == 200


def test_simulate_through_the_admin_endpoint(hooked: Any) -> None:
    sandbox, api, target = hooked
    meeting = api.create_meeting()
    approved(api, meeting["id"], "Ann")
    r = api.client.post(
        "/_sandbox/simulate",
        json={"meeting_id": meeting["id"], "participant_count": 3, "teacher": "Mr T"},
    )
    assert r.status_code == 201
    body = r.get_json()
    assert [p["kind"] for p in body["participants"]] == ["registrant", "guest", "guest"]
    assert [p["name"] for p in body["participants"]] == ["Ann", "Guest 1", "Guest 2"]
    assert len(body["recording_files"]) == 2
    assert api.client.post("/_sandbox/simulate", json={}).status_code == 400
    r = api.client.post("/_sandbox/simulate", json={"meeting_id": 1})
    assert r.status_code == 404
    r = api.client.post("/_sandbox/deliver?force=1")
    assert r.get_json()["attempted"] == len(body["events"])
    listed = api.client.get(f"/_sandbox/deliveries?since={body['events'][0]['delivery_id'] - 1}")
    assert [d["event"] for d in listed.get_json()][:1] == ["meeting.started"]


def test_url_validation_challenge(hooked: Any) -> None:
    sandbox, _, target = hooked
    result = validate_endpoint(sandbox)
    # The test receiver answers "ok", not the challenge: the sandbox notices.
    assert result["ok"] is False and result["status"] == 200
    sent = json.loads(target.requests[-1]["body"])
    assert sent["event"] == "endpoint.url_validation" and sent["payload"]["plainToken"]


def test_background_worker_delivers_with_short_delays(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    target, url = receiver
    app = create_sandbox_app(
        str(tmp_path / "w.sqlite3"),
        webhook_url=url,
        webhook_secret=WEBHOOK_SECRET,
        public_url=PUBLIC_URL,
        retry_delays=(0.05, 0.1, 0.1),
    )
    sandbox: Sandbox = app.extensions["zoom_sandbox"]
    worker = DeliveryWorker(sandbox, poll=0.05, validate=False)
    worker.start()
    try:
        client: FlaskClient = app.test_client()
        meeting = Api(client, fetch_token(client)).create_meeting(
            settings={"auto_recording": "none"}
        )
        target.statuses = [500, 500]
        sandbox.simulate_class(meeting["id"], participants=[])
        poll(
            lambda: {d["state"] for d in deliveries(sandbox)} == {"delivered"},
            "every delivery to succeed",
        )
        assert {d["state"] for d in deliveries(sandbox)} == {"delivered"}
        assert len(target.requests) == 6
    finally:
        worker.stop()
        worker.join(5)
        sandbox.close()


def test_a_simulation_that_fails_half_way_leaves_nothing(hooked: Any, monkeypatch: Any) -> None:
    from companion.zoom.sandbox import simulate

    sandbox, api, _ = hooked
    meeting = api.create_meeting()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(simulate, "_complete_recording", broken)
    with pytest.raises(RuntimeError):
        sandbox.simulate_class(meeting["id"], participants=["Guest"])
    assert deliveries(sandbox) == []
    assert sandbox.state()["instances"] == []
    assert api.get(f"/v2/meetings/{meeting['id']}").get_json()["status"] == "waiting"
