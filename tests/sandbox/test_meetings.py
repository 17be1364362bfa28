"""Meetings in the sandbox: create, read, change, cancel, with Zoom's rules and DST-proof times."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from flask.testing import FlaskClient

from companion.zoom.sandbox import Sandbox

from .conftest import Api, FakeClock, weekly_class


def starts(meeting: dict[str, Any]) -> list[str]:
    return [o["start_time"] for o in meeting["occurrences"]]


def test_weekly_class_keeps_local_time_across_the_clock_change(api: Api) -> None:
    # 17:00 in London is 16:00 UTC until 31 October 2027 and 17:00 UTC after it.
    meeting = api.create_meeting()
    assert meeting["type"] == 8
    assert meeting["timezone"] == "Europe/London"
    assert starts(meeting) == [
        "2027-10-07T16:00:00Z",
        "2027-10-14T16:00:00Z",
        "2027-10-21T16:00:00Z",
        "2027-10-28T16:00:00Z",
        "2027-11-04T17:00:00Z",
        "2027-11-11T17:00:00Z",
        "2027-11-18T17:00:00Z",
        "2027-11-25T17:00:00Z",
    ]
    assert meeting["start_time"] == "2027-10-07T16:00:00Z"
    assert all(o["duration"] == 45 and o["status"] == "available" for o in meeting["occurrences"])
    # Occurrence ids are the start in epoch milliseconds, as Zoom's are.
    first = meeting["occurrences"][0]
    assert first["occurrence_id"] == str(
        int(dt.datetime(2027, 10, 7, 16, tzinfo=dt.UTC).timestamp()) * 1000
    )


def test_utc_start_time_and_two_days_a_week(api: Api) -> None:
    meeting = api.create_meeting(
        start_time="2027-03-22T17:30:00Z",  # a Monday, 17:30 GMT = 17:30 London
        recurrence={"type": 2, "weekly_days": "2,4", "end_times": 4},
    )
    # 28 March 2027 the UK moves to BST: 17:30 London is then 16:30 UTC.
    assert starts(meeting) == [
        "2027-03-22T17:30:00Z",
        "2027-03-24T17:30:00Z",
        "2027-03-29T16:30:00Z",
        "2027-03-31T16:30:00Z",
    ]


def test_end_date_every_other_week_and_monthly(api: Api) -> None:
    meeting = api.create_meeting(
        start_time="2027-10-04T09:00:00",
        timezone="America/New_York",
        recurrence={
            "type": 2,
            "repeat_interval": 2,
            "weekly_days": "2",
            "end_date_time": "2027-11-15T23:59:00Z",
        },
    )
    # New York changes on 7 November: 09:00 EDT = 13:00 UTC, 09:00 EST = 14:00 UTC.
    assert starts(meeting) == [
        "2027-10-04T13:00:00Z",
        "2027-10-18T13:00:00Z",
        "2027-11-01T13:00:00Z",
        "2027-11-15T14:00:00Z",
    ]
    monthly = api.create_meeting(
        start_time="2027-10-01T10:00:00",
        timezone="UTC",
        recurrence={"type": 3, "monthly_week": -1, "monthly_week_day": 6, "end_times": 3},
    )
    assert starts(monthly) == [
        "2027-10-29T10:00:00Z",
        "2027-11-26T10:00:00Z",
        "2027-12-31T10:00:00Z",
    ]
    daily = api.create_meeting(
        start_time="2027-10-01T10:00:00",
        timezone="UTC",
        recurrence={"type": 1, "repeat_interval": 3, "end_times": 3},
    )
    assert starts(daily) == [
        "2027-10-01T10:00:00Z",
        "2027-10-04T10:00:00Z",
        "2027-10-07T10:00:00Z",
    ]


def test_scheduled_meeting_type_2(api: Api) -> None:
    r = api.post(
        "/v2/users/me/meetings",
        json={
            "topic": "One-off",
            "type": 2,
            "start_time": "2027-10-07T17:00:00",
            "timezone": "Europe/London",
            "duration": 30,
            "recurrence": {"type": 1, "end_times": 5},  # ignored: not type 8
        },
    )
    assert r.status_code == 201
    body = r.get_json()
    assert body["start_time"] == "2027-10-07T16:00:00Z"
    assert "occurrences" not in body and "recurrence" not in body
    assert body["password"]  # generated, as the account requires a passcode
    assert "registration_url" not in body


def test_get_meeting_has_a_fresh_start_url_each_time(api: Api, clock: FakeClock) -> None:
    meeting = api.create_meeting()
    one = api.get(f"/v2/meetings/{meeting['id']}").get_json()
    two = api.get(f"/v2/meetings/{meeting['id']}").get_json()
    assert one["start_url"] != two["start_url"]
    for key in ("join_url", "password", "encrypted_password", "uuid", "host_id", "settings"):
        assert one[key] == two[key]
    assert meeting["registration_url"].startswith("http://sandbox.test/meeting/register/")
    assert "registration_url" not in one
    client = api.client
    start = urlparse(one["start_url"])
    assert client.get(f"{start.path}?{start.query}").status_code == 200
    clock.advance(2 * 3600 + 1)  # start links last two hours
    assert client.get(f"{start.path}?{start.query}").status_code == 403
    zak = parse_qs(start.query)["zak"][0]
    assert client.get(f"/s/{meeting['id']}?zak={zak}x").status_code == 403


def test_settings_rules(api: Api) -> None:
    meeting = api.create_meeting()
    settings = meeting["settings"]
    assert settings["waiting_room"] is True
    assert settings["join_before_host"] is False
    assert settings["approval_type"] == 1
    assert settings["auto_recording"] == "cloud"
    assert settings["waiting_room_options"] == {
        "mode": "custom",
        "who_goes_to_waiting_room": "everyone",
    }
    assert settings["registrants_email_notification"] is False
    # Waiting room on switches join-before-host off, whatever was asked.
    other = api.create_meeting(settings={"waiting_room": True, "join_before_host": True})
    assert other["settings"]["join_before_host"] is False
    # End-to-end encryption disables cloud recording.
    e2ee = api.create_meeting(settings={"encryption_type": "e2ee", "auto_recording": "cloud"})
    assert e2ee["settings"]["auto_recording"] == "none"
    # The defaults of a new sandbox account leave safety to the caller.
    bare = api.create_meeting(settings={})
    assert bare["settings"]["waiting_room"] is False
    assert bare["settings"]["auto_recording"] == "none"


def test_account_lock_overrides_requested_setting(api: Api, zoom_client: FlaskClient) -> None:
    r = zoom_client.post("/_sandbox/locks", json={"waiting_room": False})
    assert r.get_json() == {"waiting_room": False}
    meeting = api.create_meeting()  # asks for the waiting room
    assert meeting["settings"]["waiting_room"] is False
    r = api.patch(f"/v2/meetings/{meeting['id']}", json={"settings": {"waiting_room": True}})
    assert r.status_code == 204
    assert api.get(f"/v2/meetings/{meeting['id']}").get_json()["settings"]["waiting_room"] is False
    # A lock added later shows on existing meetings too; nested settings are dotted.
    zoom_client.post("/_sandbox/locks", json={"waiting_room_options.mode": "follow_setting"})
    got = api.get(f"/v2/meetings/{meeting['id']}").get_json()["settings"]
    assert got["waiting_room_options"]["mode"] == "follow_setting"
    zoom_client.delete("/_sandbox/locks")
    assert zoom_client.get("/_sandbox/locks").get_json() == {}
    r = api.patch(f"/v2/meetings/{meeting['id']}", json={"settings": {"waiting_room": True}})
    assert api.get(f"/v2/meetings/{meeting['id']}").get_json()["settings"]["waiting_room"] is True


def test_settings_changed_in_the_portal_show_as_drift(api: Api, zoom_client: FlaskClient) -> None:
    meeting = api.create_meeting()
    r = zoom_client.post(
        f"/_sandbox/meetings/{meeting['id']}/settings",
        json={"auto_recording": "local", "waiting_room": False},
    )
    assert r.status_code == 200
    got = api.get(f"/v2/meetings/{meeting['id']}").get_json()["settings"]
    assert got["auto_recording"] == "local" and got["waiting_room"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"topic": "x" * 201}, "topic"),
        ({"agenda": "x" * 2001}, "agenda"),
        ({"duration": 0}, "duration"),
        ({"duration": 1441}, "duration"),
        ({"duration": "45"}, "duration"),
        ({"password": "elevenchars"}, "password"),
        ({"password": "pass word"}, "password"),
        ({"password": "pass!"}, "password"),
        ({"type": 9}, "type"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"start_time": "next tuesday"}, "start_time"),
        ({"recurrence": {"type": 2, "weekly_days": "8", "end_times": 3}}, "recurrence.weekly_days"),
        (
            {"recurrence": {"type": 2, "weekly_days": "2,,4", "end_times": 3}},
            "recurrence.weekly_days",
        ),
        ({"recurrence": {"type": 2, "end_times": 3}}, "recurrence.weekly_days"),
        ({"recurrence": {"type": 2, "weekly_days": "2", "end_times": 61}}, "recurrence.end_times"),
        ({"recurrence": {"type": 2, "weekly_days": "2", "end_times": 0}}, "recurrence.end_times"),
        (
            {
                "recurrence": {
                    "type": 2,
                    "weekly_days": "2",
                    "end_times": 3,
                    "end_date_time": "2027-12-01T00:00:00Z",
                }
            },
            "recurrence.end_date_time",
        ),
        (
            {"recurrence": {"type": 2, "weekly_days": "2", "repeat_interval": 51}},
            "recurrence.repeat_interval",
        ),
        ({"recurrence": {"type": 1, "repeat_interval": 100}}, "recurrence.repeat_interval"),
        (
            {"recurrence": {"type": 3, "repeat_interval": 11, "monthly_day": 1}},
            "recurrence.repeat_interval",
        ),
        ({"recurrence": {"type": 3, "monthly_day": 32}}, "recurrence.monthly_day"),
        ({"recurrence": {"type": 4}}, "recurrence.type"),
        (
            {
                "recurrence": {
                    "type": 2,
                    "weekly_days": "2",
                    "end_date_time": "2027-01-01T00:00:00Z",
                }
            },
            "recurrence",
        ),
        ({"recurrence": None}, "recurrence"),
        ({"settings": {"waiting_room": "yes"}}, "settings.waiting_room"),
        ({"settings": {"approval_type": 3}}, "settings.approval_type"),
        ({"settings": {"auto_recording": "everywhere"}}, "settings.auto_recording"),
        (
            {"settings": {"waiting_room_options": {"mode": "custom"}}},
            "settings.waiting_room_options.who_goes_to_waiting_room",
        ),
    ],
)
def test_validation_errors_look_like_zooms(api: Api, change: dict[str, Any], field: str) -> None:
    r = api.post("/v2/users/me/meetings", json=weekly_class(**change))
    assert r.status_code == 400, r.get_json()
    body = r.get_json()
    assert body["code"] == 300
    assert body["message"] == "Validation Failed."
    assert field in [e["field"] for e in body["errors"]]
    assert api.get("/v2/users/me/meetings").get_json()["total_records"] == 0


def test_bad_bodies_and_unsupported_types(api: Api) -> None:
    r = api.post(
        "/v2/users/me/meetings", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.get_json() == {"code": 300, "message": "Request Body should be a valid JSON object."}
    r = api.post("/v2/users/me/meetings", json=[1, 2])
    assert r.status_code == 400 and r.get_json()["code"] == 300
    r = api.post("/v2/users/me/meetings", json=weekly_class(type=3))
    assert r.status_code == 400 and "types 2 and 8" in r.get_json()["message"]


def test_unknown_meeting(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        r = api.call(method, "/v2/meetings/12345678901", json={})
        assert r.status_code == 404
        assert r.get_json() == {"code": 3001, "message": "Meeting does not exist: 12345678901."}
    r = api.get("/v2/meetings/not-a-number")
    assert r.status_code == 404 and r.get_json()["code"] == 3001


def test_update_whole_series_recomputes_occurrences(api: Api) -> None:
    meeting = api.create_meeting()
    path = f"/v2/meetings/{meeting['id']}"
    r = api.patch(
        path,
        json={
            "topic": "Art club (moved)",
            "start_time": "2027-10-05T16:30:00",
            "duration": 60,
            "recurrence": {"type": 2, "weekly_days": "3", "end_times": 3},
        },
    )
    assert r.status_code == 204 and r.data == b""
    got = api.get(path).get_json()
    assert got["topic"] == "Art club (moved)"
    assert starts(got) == [
        "2027-10-05T15:30:00Z",
        "2027-10-12T15:30:00Z",
        "2027-10-19T15:30:00Z",
    ]
    assert {o["duration"] for o in got["occurrences"]} == {60}
    # A series change that only touches the time zone keeps the local wall-clock time.
    api.patch(path, json={"timezone": "Europe/Paris"})
    got = api.get(path).get_json()
    assert starts(got)[0] == "2027-10-05T14:30:00Z"
    # A rejected change leaves the meeting as it was.
    r = api.patch(path, json={"duration": 5000, "topic": "never"})
    assert r.status_code == 400
    assert api.get(path).get_json()["topic"] == "Art club (moved)"


def test_move_and_cancel_one_occurrence(api: Api, clock: FakeClock) -> None:
    meeting = api.create_meeting()
    path = f"/v2/meetings/{meeting['id']}"
    second = meeting["occurrences"][1]["occurrence_id"]
    third = meeting["occurrences"][2]["occurrence_id"]
    r = api.patch(
        f"{path}?occurrence_id={second}",
        json={
            "start_time": "2027-10-15T17:30:00",
            "duration": 30,
            "topic": "ignored for one occurrence",
            "settings": {"mute_upon_entry": False, "approval_type": 0},
        },
    )
    assert r.status_code == 204
    got = api.get(path).get_json()
    moved = got["occurrences"][1]
    assert moved == {
        "occurrence_id": second,  # the id stays the same
        "start_time": "2027-10-15T16:30:00Z",
        "duration": 30,
        "status": "available",
    }
    assert got["topic"] == meeting["topic"]
    one = api.get(f"{path}?occurrence_id={second}").get_json()
    assert one["start_time"] == "2027-10-15T16:30:00Z" and one["duration"] == 30
    assert one["settings"]["mute_upon_entry"] is False
    assert one["settings"]["approval_type"] == 1  # not an occurrence-level setting
    assert api.get(path).get_json()["settings"]["mute_upon_entry"] is True

    assert api.delete(f"{path}?occurrence_id={third}").status_code == 204
    got = api.get(path).get_json()
    assert [o["status"] for o in got["occurrences"]][:4] == [
        "available",
        "available",
        "deleted",
        "available",
    ]
    r = api.patch(f"{path}?occurrence_id={third}", json={"duration": 20})
    assert r.status_code == 400
    r = api.delete(f"{path}?occurrence_id=123")
    assert r.status_code == 400
    assert r.get_json() == {"code": 300, "message": "Invalid parameter: occurrence_id."}
    # An occurrence cannot be moved into the past.
    r = api.patch(f"{path}?occurrence_id={second}", json={"start_time": "2027-08-01T10:00:00Z"})
    assert r.status_code == 400
    # A past occurrence is not listed unless asked for.
    clock.set(dt.datetime(2027, 10, 22, tzinfo=dt.UTC))
    api.refresh()
    listed = api.get(path).get_json()["occurrences"]
    assert listed[0]["start_time"] == "2027-10-28T16:00:00Z"
    assert api.get(path).get_json()["start_time"] == "2027-10-28T16:00:00Z"
    every = api.get(f"{path}?show_previous_occurrences=true").get_json()["occurrences"]
    assert len(every) == 8


def test_delete_and_recover_meeting(api: Api, clock: FakeClock) -> None:
    meeting = api.create_meeting()
    path = f"/v2/meetings/{meeting['id']}"
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    assert api.delete(path).status_code == 404
    r = api.put(f"{path}/status", json={"action": "recover"})
    assert r.status_code == 204
    assert api.get(path).status_code == 200
    api.delete(path)
    clock.advance(8 * 24 * 3600)
    api.refresh()
    assert api.put(f"{path}/status", json={"action": "recover"}).status_code == 404
    r = api.put(f"{path}/status", json={"action": "pause"})
    assert r.status_code == 400


def test_list_meetings_paginates(api: Api, clock: FakeClock) -> None:
    created = [api.create_meeting(topic=f"Class {n}") for n in range(5)]
    seen = []
    token = ""
    pages = 0
    while True:
        r = api.get(f"/v2/users/me/meetings?page_size=2&next_page_token={token}")
        body = r.get_json()
        assert body["total_records"] == 5 and body["page_size"] == 2
        seen += [m["id"] for m in body["meetings"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert pages == 3
    assert seen == [m["id"] for m in created]
    first = api.get("/v2/users/me/meetings").get_json()["meetings"][0]
    assert first["start_time"] == "2027-10-07T16:00:00Z"
    assert first["type"] == 8 and first["join_url"].startswith("http://sandbox.test/j/")
    r = api.get("/v2/users/me/meetings?next_page_token=garbage")
    assert r.status_code == 400
    r = api.get("/v2/users/me/meetings?type=sideways")
    assert r.status_code == 400
    assert api.get("/v2/users/me/meetings?type=live").get_json()["meetings"] == []
    assert len(api.get("/v2/users/me/meetings?type=upcoming").get_json()["meetings"]) == 5
    clock.set(dt.datetime(2028, 1, 1, tzinfo=dt.UTC))
    api.refresh()
    assert api.get("/v2/users/me/meetings?type=upcoming").get_json()["meetings"] == []
    assert len(api.get("/v2/users/me/meetings?type=previous_meetings").get_json()["meetings"]) == 5


def test_live_meeting_and_status_end(api: Api, sandbox: Sandbox) -> None:
    meeting = api.create_meeting()
    path = f"/v2/meetings/{meeting['id']}"
    summary = sandbox.simulate_class(
        meeting["id"], meeting["occurrences"][0]["occurrence_id"], participants=["Guest"], end=False
    )
    assert summary["live"] is True
    assert api.get(path).get_json()["status"] == "started"
    assert [m["id"] for m in api.get("/v2/users/me/meetings?type=live").get_json()["meetings"]] == [
        meeting["id"]
    ]
    assert api.put(f"{path}/status", json={"action": "end"}).status_code == 204
    assert api.get(path).get_json()["status"] == "waiting"
    # Ending a meeting that is not live changes nothing.
    assert api.put(f"{path}/status", json={"action": "end"}).status_code == 204
