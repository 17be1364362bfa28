"""The Zoom client at the transport level: exact requests out, typed results and errors back."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import subprocess
import sys

import pytest
import requests
import responses
from responses import matchers

from companion.config import load as config_load
from companion.zoom import (
    SANDBOX_ACCOUNT_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    ZoomAuthError,
    ZoomConflict,
    ZoomConnectionError,
    ZoomError,
    ZoomForbidden,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
    ZoomValidationError,
    clear_shared_state,
    client_from_config,
    recording_windows,
)

from ..zoom_sandbox import SandboxZoom
from .zoom_helpers import API, OAUTH, FakeClock, MaxJitter, add_token, bearer, make_client

MEETING_ID = 98765432101  # 11 digits: more than 32 bits, as Zoom's ids are
MEETING = f"{API}/meetings/{MEETING_ID}"


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        add_token(mock)
        yield mock


@pytest.fixture
def client():
    return make_client()[0]


def query(**params):
    return matchers.query_param_matcher(params, strict_match=True)


def no_query():
    return matchers.query_string_matcher("")


# -- meetings ----------------------------------------------------------------------------------


def test_create_meeting_posts_the_body_and_returns_zooms_meeting(rsps, client):
    body = {"topic": "Art club", "type": 8, "duration": 45, "settings": {"waiting_room": True}}
    rsps.post(
        f"{API}/users/me/meetings",
        status=201,
        json={"id": MEETING_ID, "join_url": "https://zoom.us/j/1"},
        match=[
            matchers.json_params_matcher(body),
            bearer(),
            matchers.header_matcher({"Accept": "application/json"}),
            no_query(),
        ],
    )
    assert client.create_meeting("me", body) == {
        "id": MEETING_ID,
        "join_url": "https://zoom.us/j/1",
    }
    # every request, the token fetch included, had a timeout
    assert [c.request.req_kwargs["timeout"] for c in rsps.calls] == [15, 15]


def test_user_ids_that_are_emails_stay_readable_in_the_path(rsps, client):
    rsps.post(f"{API}/users/host@example.org/meetings", status=201, json={"id": 1})
    client.create_meeting("host@example.org", {})
    assert rsps.calls[1].request.url == f"{API}/users/host@example.org/meetings"


def test_get_meeting_with_occurrence_and_previous_occurrences(rsps, client):
    rsps.get(
        MEETING,
        json={"id": MEETING_ID},
        match=[query(occurrence_id="1767985200000", show_previous_occurrences="true")],
    )
    rsps.get(MEETING, json={"id": MEETING_ID}, match=[no_query()])
    client.get_meeting(MEETING_ID, occurrence_id="1767985200000", show_previous_occurrences=True)
    assert client.get_meeting(str(MEETING_ID)) == {"id": MEETING_ID}


@pytest.mark.parametrize("bad", [1.5, True, "abc", "", "12/34", -3, 0, None])
def test_meeting_ids_must_be_positive_numbers(client, bad):
    # no request may be sent
    with responses.RequestsMock(), pytest.raises((TypeError, ValueError)):
        client.get_meeting(bad)


def test_update_meeting_patches_and_returns_none(rsps, client):
    body = {"settings": {"waiting_room": True}}
    rsps.patch(
        MEETING,
        status=204,
        match=[matchers.json_params_matcher(body), query(occurrence_id="1767985200000")],
    )
    assert client.update_meeting(MEETING_ID, body, occurrence_id="1767985200000") is None


def test_delete_meeting_sends_only_the_flags_asked_for(rsps, client):
    rsps.delete(MEETING, status=204, match=[no_query()])
    rsps.delete(
        MEETING,
        status=204,
        match=[query(occurrence_id="17", schedule_for_reminder="true")],
    )
    rsps.delete(MEETING, status=204, match=[query(cancel_meeting_reminder="true")])
    client.delete_meeting(MEETING_ID)
    client.delete_meeting(MEETING_ID, occurrence_id="17", schedule_for_reminder=True)
    client.delete_meeting(MEETING_ID, cancel_meeting_reminder=True)
    assert client.calls["delete_meeting"] == 3


def test_update_meeting_status(rsps, client):
    rsps.put(
        f"{MEETING}/status", status=204, match=[matchers.json_params_matcher({"action": "end"})]
    )
    client.update_meeting_status(MEETING_ID, "end")
    with pytest.raises(ValueError, match="action must be one of end, recover"):
        client.update_meeting_status(MEETING_ID, "explode")
    assert client.calls["update_meeting_status"] == 1


def test_iter_meetings_walks_every_page_lazily(rsps, client):
    url = f"{API}/users/me/meetings"
    rsps.get(
        url,
        json={"meetings": [{"id": 1}, {"id": 2}], "next_page_token": "p2"},
        match=[query(type="scheduled", page_size="2")],
    )
    rsps.get(
        url,
        json={"meetings": [{"id": 3}], "next_page_token": "p3"},
        match=[query(type="scheduled", page_size="2", next_page_token="p2")],
    )
    rsps.get(
        url,
        json={"meetings": [], "next_page_token": ""},
        match=[query(type="scheduled", page_size="2", next_page_token="p3")],
    )
    meetings = client.iter_meetings("me", page_size=2)
    assert client.calls["list_meetings"] == 0  # nothing is fetched until iterated
    assert next(meetings) == {"id": 1}
    assert client.calls["list_meetings"] == 1
    assert [m["id"] for m in meetings] == [2, 3]
    assert client.calls["list_meetings"] == 3


def test_pagination_refuses_bad_page_sizes_and_a_repeated_token(rsps, client):
    with pytest.raises(ValueError, match="page_size"):
        list(client.iter_meetings("me", page_size=301))
    rsps.get(f"{API}/users/me/meetings", json={"meetings": [{"id": 1}], "next_page_token": "same"})
    with pytest.raises(ZoomError, match="repeated a next_page_token"):
        list(client.iter_meetings("me"))


# -- registrants -------------------------------------------------------------------------------


def test_add_registrant_for_chosen_occurrences(rsps, client):
    body = {"email": "guardian@example.org", "first_name": "Ada", "auto_approve": True}
    rsps.post(
        f"{MEETING}/registrants",
        status=201,
        json={"id": MEETING_ID, "registrant_id": "r1", "join_url": "https://zoom.us/w/1?tk=x"},
        match=[matchers.json_params_matcher(body), query(occurrence_ids="111,222")],
    )
    created = client.add_registrant(MEETING_ID, body, occurrence_ids=["111", "222"])
    assert created["registrant_id"] == "r1"


def test_get_and_delete_registrant(rsps, client):
    rsps.get(f"{MEETING}/registrants/r%2F1", json={"id": "r/1", "status": "approved"})
    rsps.delete(f"{MEETING}/registrants/abc", status=204, match=[query(occurrence_id="111")])
    assert client.get_registrant(MEETING_ID, "r/1")["status"] == "approved"
    assert client.delete_registrant(MEETING_ID, "abc", occurrence_id="111") is None


def test_iter_registrants_by_status(rsps, client):
    rsps.get(
        f"{MEETING}/registrants",
        json={"registrants": [{"id": "a"}], "next_page_token": "n"},
        match=[query(status="pending", page_size="300")],
    )
    rsps.get(
        f"{MEETING}/registrants",
        json={"registrants": [{"id": "b"}]},
        match=[query(status="pending", page_size="300", next_page_token="n")],
    )
    assert [r["id"] for r in client.iter_registrants(MEETING_ID, status="pending")] == ["a", "b"]


def test_registrant_status_is_sent_in_batches_of_30(rsps, client):
    people = [{"id": f"r{i}", "email": f"g{i}@example.org"} for i in range(65)]
    for batch in (people[:30], people[30:60], people[60:]):
        rsps.put(
            f"{MEETING}/registrants/status",
            status=204,
            match=[matchers.json_params_matcher({"action": "approve", "registrants": batch})],
        )
    client.update_registrant_status(MEETING_ID, "approve", people)
    assert client.calls["update_registrant_status"] == 3
    client.update_registrant_status(MEETING_ID, "cancel", [])  # nothing to send
    assert client.calls["update_registrant_status"] == 3
    with pytest.raises(ValueError):
        client.update_registrant_status(MEETING_ID, "kick", people)


# -- recordings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "in_path"),
    [
        (MEETING_ID, str(MEETING_ID)),
        ("4444AAAiAAAAAiAiAiiAii==", "4444AAAiAAAAAiAiAiiAii%3D%3D"),
        ("abc/def==", "abc%2Fdef%3D%3D"),
        # Zoom's own examples of UUIDs that must be encoded twice
        ("/ajXp112QmuoKj4854875==", "%252FajXp112QmuoKj4854875%253D%253D"),
        ("ab//cd+e==", "ab%252F%252Fcd%252Be%253D%253D"),
    ],
)
def test_recording_uuids_are_encoded_as_zoom_asks(rsps, client, reference, in_path):
    url = f"{API}/meetings/{in_path}/recordings"
    rsps.get(url, json={"recording_files": []})
    rsps.delete(url, status=204, match=[query(action="trash")])
    client.get_meeting_recordings(reference)
    client.delete_meeting_recordings(reference)
    assert [c.request.url.split("?")[0] for c in rsps.calls[1:]] == [url, url]


def test_meeting_recordings_with_a_download_token(rsps, client):
    rsps.get(
        f"{MEETING}/recordings",
        json={"download_access_token": "jwt", "recording_files": []},
        match=[query(include_fields="download_access_token", ttl="3600")],
    )
    found = client.get_meeting_recordings(MEETING_ID, include_download_token=True, ttl=3600)
    assert found["download_access_token"] == "jwt"


def test_delete_one_recording_file_permanently(rsps, client):
    rsps.delete(f"{MEETING}/recordings/file%3D1", status=204, match=[query(action="delete")])
    client.delete_recording_file(MEETING_ID, "file=1", action="delete")
    with pytest.raises(ValueError):
        client.delete_recording_file(MEETING_ID, "file", action="shred")


def test_recording_windows_are_30_days_and_cover_the_range():
    windows = recording_windows(dt.date(2026, 1, 1), dt.date(2026, 3, 15))
    assert windows == [
        (dt.date(2026, 1, 1), dt.date(2026, 1, 30)),
        (dt.date(2026, 1, 31), dt.date(2026, 3, 1)),
        (dt.date(2026, 3, 2), dt.date(2026, 3, 15)),
    ]
    assert recording_windows(dt.date(2026, 1, 1), dt.date(2026, 1, 1)) == [
        (dt.date(2026, 1, 1), dt.date(2026, 1, 1))
    ]
    with pytest.raises(ValueError):
        recording_windows(dt.date(2026, 1, 2), dt.date(2026, 1, 1))


def test_user_recordings_walk_30_day_windows_and_their_pages(rsps, client):
    url = f"{API}/users/me/recordings"
    rsps.get(
        url,
        json={"meetings": [{"uuid": "u1"}], "next_page_token": "t"},
        match=[query(**{"from": "2026-01-01", "to": "2026-01-30", "page_size": "300"})],
    )
    first_window = {"from": "2026-01-01", "to": "2026-01-30", "page_size": "300"}
    rsps.get(
        url,
        json={"meetings": [{"uuid": "u2"}], "next_page_token": ""},
        match=[query(**first_window, next_page_token="t")],
    )
    # u2 straddles the window boundary and comes back again: yielded once
    rsps.get(
        url,
        json={"meetings": [{"uuid": "u2"}, {"uuid": "u3"}]},
        match=[query(**{"from": "2026-01-31", "to": "2026-02-10", "page_size": "300"})],
    )
    found = client.iter_user_recordings(
        "me", from_date=dt.date(2026, 1, 1), to_date=dt.date(2026, 2, 10)
    )
    assert [m["uuid"] for m in found] == ["u1", "u2", "u3"]
    assert client.calls["list_user_recordings"] == 3


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "error_class"),
    [
        (400, 300, "Invalid meeting id.", ZoomValidationError),
        (401, 124, "Invalid access token.", ZoomAuthError),
        (403, 4711, "Invalid access token, does not contain scopes.", ZoomForbidden),
        (404, 3001, "Meeting does not exist: 98765432101.", ZoomNotFound),
        (409, 3000, "Cannot access meeting info.", ZoomConflict),
        (422, 1010, "User does not belong to this account.", ZoomValidationError),
        (
            429,
            429,
            "You have reached the maximum per-second rate limit for this API.",
            ZoomRateLimited,
        ),
        (500, 500, "Internal server error.", ZoomServerError),
        (418, 1, "I'm a teapot.", ZoomError),
    ],
)
def test_each_error_keeps_zooms_code_message_and_tracking_id(
    rsps, client, status, code, message, error_class
):
    # A POST is never retried, so each case is a single answer (a 401 is refreshed once).
    if status == 401:
        add_token(rsps, "tok-2")
    rsps.post(
        f"{API}/users/me/meetings",
        status=status,
        json={"code": code, "message": message},
        headers={"x-zm-trackingid": "v=2.0;clid=us06;rid=WEB_abc"},
    )
    with pytest.raises(error_class) as caught:
        client.create_meeting("me", {})
    error = caught.value
    assert type(error) is error_class
    assert (error.http_status, error.zoom_code, error.message) == (status, code, message)
    assert error.body == {"code": code, "message": message}
    assert error.request_id == "v=2.0;clid=us06;rid=WEB_abc"
    assert error.operation == "create_meeting"
    assert f"Zoom code {code}" in str(error) and "WEB_abc" in str(error)


def test_validation_errors_keep_zooms_field_list(rsps, client):
    errors = [{"field": "settings.alternative_hosts", "message": "Invalid email"}]
    rsps.patch(
        MEETING, status=400, json={"code": 300, "message": "Validation Failed.", "errors": errors}
    )
    with pytest.raises(ZoomValidationError) as caught:
        client.update_meeting(MEETING_ID, {})
    assert caught.value.errors == errors


def test_a_non_json_error_page_keeps_its_text(rsps, client):
    rsps.post(f"{API}/users/me/meetings", status=502, body="<html>Bad gateway</html>")
    with pytest.raises(ZoomServerError) as caught:
        client.create_meeting("me", {})
    assert caught.value.zoom_code is None
    assert caught.value.body == "<html>Bad gateway</html>"
    assert "HTTP 502" in caught.value.message


def test_a_2xx_that_is_not_json_is_an_error(rsps, client):
    rsps.get(MEETING, body="surprise", status=200)
    with pytest.raises(ZoomError, match="without a JSON object"):
        client.get_meeting(MEETING_ID)


# -- retries -----------------------------------------------------------------------------------


def test_safe_calls_retry_5xx_with_exponential_backoff(rsps):
    client, clock = make_client(max_retries=6)
    for _ in range(6):
        rsps.get(MEETING, status=503, json={"code": 503, "message": "busy"})
    rsps.get(MEETING, json={"id": MEETING_ID})
    assert client.get_meeting(MEETING_ID)["id"] == MEETING_ID
    # jitter stubbed to its ceiling: 0.5 doubling, capped at 8
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert client.calls["get_meeting"] == 7


def test_retries_give_up_after_max_retries(rsps):
    client, clock = make_client(max_retries=3)
    rsps.delete(MEETING, status=500, json={"code": 500, "message": "oops"})
    with pytest.raises(ZoomServerError):
        client.delete_meeting(MEETING_ID)
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert client.calls["delete_meeting"] == 4


def test_jitter_comes_from_the_injected_rng(rsps):
    class Half(MaxJitter):
        def uniform(self, a, b):
            return (a + b) / 2

    client, clock = make_client(rng=Half())
    rsps.get(MEETING, status=502, json={})
    rsps.get(MEETING, status=502, json={})
    rsps.get(MEETING, json={})
    client.get_meeting(MEETING_ID)
    assert clock.sleeps == [0.25, 0.5]


def test_connection_errors_and_timeouts_are_retried_on_safe_calls(rsps, client):
    rsps.put(f"{MEETING}/status", body=requests.ConnectionError("reset"))
    rsps.put(f"{MEETING}/status", body=requests.ReadTimeout("slow"))
    rsps.put(f"{MEETING}/status", status=204)
    client.update_meeting_status(MEETING_ID, "end")
    assert client.calls["update_meeting_status"] == 3


def test_a_connection_error_that_persists_is_a_typed_error(rsps):
    client, clock = make_client(max_retries=1)
    rsps.get(MEETING, body=requests.ConnectTimeout("no route"))
    with pytest.raises(ZoomConnectionError) as caught:
        client.get_meeting(MEETING_ID)
    assert caught.value.http_status is None
    assert isinstance(caught.value.__cause__, requests.ConnectTimeout)
    assert clock.sleeps == [0.5]


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503, "json": {"code": 503, "message": "busy"}},
        {
            "status": 429,
            "json": {"code": 429, "message": "per-second"},
            "headers": {"Retry-After": "1"},
        },
        {"body": requests.ConnectionError("reset")},
        {"body": requests.ReadTimeout("sent, but no answer")},
    ],
)
def test_posts_are_never_retried(rsps, client, failure):
    rsps.post(f"{API}/users/me/meetings", **failure)
    rsps.post(f"{API}/meetings/{MEETING_ID}/registrants", **failure)
    with pytest.raises(ZoomError):
        client.create_meeting("me", {})
    with pytest.raises(ZoomError):
        client.add_registrant(MEETING_ID, {"email": "a@example.org", "first_name": "A"})
    assert client.calls["create_meeting"] == 1
    assert client.calls["add_registrant"] == 1


def test_client_errors_are_not_retried(rsps):
    client, clock = make_client()
    rsps.get(MEETING, status=404, json={"code": 3001, "message": "Meeting does not exist."})
    with pytest.raises(ZoomNotFound):
        client.get_meeting(MEETING_ID)
    assert clock.sleeps == [] and client.calls["get_meeting"] == 1


def test_429_retry_after_in_seconds_is_honoured(rsps):
    client, clock = make_client()
    rsps.get(
        MEETING,
        status=429,
        json={"code": 429, "message": "You have reached the maximum per-second rate limit."},
        headers={"Retry-After": "7", "X-RateLimit-Type": "QPS"},
    )
    rsps.get(MEETING, json={"id": MEETING_ID})
    client.get_meeting(MEETING_ID)
    assert clock.sleeps == [7.0]


def test_429_retry_after_as_an_http_date_is_honoured(rsps):
    client, clock = make_client()
    at = email.utils.formatdate(clock() + 12, usegmt=True)
    rsps.get(
        MEETING, status=429, json={"code": 429, "message": "slow down"}, headers={"Retry-After": at}
    )
    rsps.get(MEETING, json={"id": MEETING_ID})
    client.get_meeting(MEETING_ID)
    assert clock.sleeps == [12.0]


def test_429_without_retry_after_backs_off(rsps):
    client, clock = make_client()
    rsps.get(MEETING, status=429, json={"code": 429, "message": "slow down"})
    rsps.get(MEETING, json={})
    client.get_meeting(MEETING_ID)
    assert clock.sleeps == [0.5]


def test_a_daily_limit_429_is_not_retried_and_says_when_to_come_back(rsps):
    client, clock = make_client()
    message = (
        "You have exceeded the daily rate limit (100) of Meeting Create/Update API requests "
        "permitted for this particular user. You may resume these requests at GMT 00:00:00."
    )
    rsps.patch(MEETING, status=429, json={"code": 429, "message": message})
    clock.now = dt.datetime(2026, 3, 10, 18, 0, tzinfo=dt.UTC).timestamp()
    with pytest.raises(ZoomRateLimited) as caught:
        client.update_meeting(MEETING_ID, {"topic": "x"})
    assert caught.value.daily is True
    assert caught.value.retry_after == 6 * 3600.0
    assert clock.sleeps == [] and client.calls["update_meeting"] == 1


def test_a_daily_limit_header_is_enough_to_stop(rsps):
    client, clock = make_client()
    rsps.get(
        f"{API}/users/me/recordings",
        status=429,
        json={"code": 429, "message": "Too many requests."},
        headers={"X-RateLimit-Type": "Daily-limit", "Retry-After": "2026-01-02T00:00:00Z"},
    )
    with pytest.raises(ZoomRateLimited) as caught:
        list(
            client.iter_user_recordings(
                "me", from_date=dt.date(2026, 1, 1), to_date=dt.date(2026, 1, 1)
            )
        )
    assert caught.value.daily and caught.value.retry_after == 24 * 3600.0
    assert clock.sleeps == []


def test_a_429_asking_for_a_long_wait_is_raised_not_slept_through(rsps):
    client, clock = make_client(max_retry_wait=30)
    rsps.get(
        MEETING, status=429, json={"code": 429, "message": "later"}, headers={"Retry-After": "600"}
    )
    with pytest.raises(ZoomRateLimited) as caught:
        client.get_meeting(MEETING_ID)
    assert caught.value.retry_after == 600.0 and not caught.value.daily
    assert clock.sleeps == []


# -- downloads ---------------------------------------------------------------------------------

DOWNLOAD = "https://us06web.zoom.us/rec/download/abc123"


def test_open_download_follows_a_redirect_with_the_token_in_the_header_only(rsps, client):
    final = "https://us06web.zoom.us/rec/play/abc123.mp4"
    rsps.get(DOWNLOAD, status=302, headers={"Location": final}, match=[bearer()])
    rsps.get(final, body=b"\x00\x00\x00\x18ftypmp42", content_type="video/mp4", match=[bearer()])
    with client.open_download(DOWNLOAD) as response:
        assert b"".join(response.iter_content(4)) == b"\x00\x00\x00\x18ftypmp42"
    downloads = rsps.calls[1:]
    assert [c.request.url for c in downloads] == [DOWNLOAD, final]
    for call in downloads:
        assert "tok-1" not in call.request.url
        assert call.request.req_kwargs["stream"] is True
        assert call.request.headers["Accept"] == "*/*"
        assert call.request.req_kwargs["timeout"] == 15
    assert client.calls["download"] == 1


def test_open_download_drops_the_token_when_a_redirect_leaves_zoom(rsps, client):
    signed = "https://storage.example.net/file.mp4?Signature=abc"
    rsps.get(DOWNLOAD, status=302, headers={"Location": signed}, match=[bearer()])
    rsps.get(signed, body=b"data", content_type="video/mp4")
    with client.open_download(DOWNLOAD) as response:
        assert response.content == b"data"
    assert "Authorization" not in rsps.calls[2].request.headers


def test_open_download_uses_a_download_token_without_fetching_ours():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:  # no token endpoint registered
        rsps.get(DOWNLOAD, body=b"data", content_type="video/mp4", match=[bearer("dl-token")])
        with client.open_download(DOWNLOAD, download_token="dl-token") as response:
            assert response.content == b"data"
        assert rsps.calls[0].request.url == DOWNLOAD
    assert "oauth_token" not in client.calls


def test_a_refused_download_token_is_an_auth_error_without_refresh():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        rsps.get(DOWNLOAD, status=401, json={"code": 124, "message": "Invalid access token."})
        with pytest.raises(ZoomAuthError):
            client.open_download(DOWNLOAD, download_token="expired")
    assert client.calls == {"download": 1}


def test_a_download_answered_with_an_html_page_is_refused(rsps, client):
    rsps.get(DOWNLOAD, body="<html>Only the host can download</html>", content_type="text/html")
    with pytest.raises(ZoomAuthError, match="HTML page"):
        client.open_download(DOWNLOAD)


def test_a_missing_file_raises_not_found(rsps, client):
    rsps.get(DOWNLOAD, status=404, json={"code": 3301, "message": "This recording does not exist."})
    with pytest.raises(ZoomNotFound) as caught:
        client.open_download(DOWNLOAD)
    assert caught.value.zoom_code == 3301


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/rec/download/abc",
        "http://us06web.zoom.us/rec/download/abc",  # never a token over plain HTTP to Zoom
        "https://zoom.us.evil.example/rec",
        "ftp://zoom.us/rec",
    ],
)
def test_tokens_are_only_sent_to_zoom(client, url):
    with responses.RequestsMock(), pytest.raises(ValueError, match="refusing to send a Zoom token"):
        client.open_download(url)


def test_downloads_from_the_configured_api_host_are_allowed(tmp_path):
    client, _ = make_client(
        api_url="http://127.0.0.1:5001/v2", oauth_url="http://127.0.0.1:5001/oauth/token"
    )
    with responses.RequestsMock() as rsps:
        rsps.post(
            "http://127.0.0.1:5001/oauth/token", json={"access_token": "s", "expires_in": 3600}
        )
        rsps.get("http://127.0.0.1:5001/rec/download/1", body=b"x", content_type="video/mp4")
        with client.open_download("http://127.0.0.1:5001/rec/download/1") as response:
            assert response.content == b"x"


# -- construction and configuration --------------------------------------------------------------


def test_credentials_and_timeout_are_required():
    with pytest.raises(ValueError, match="client_secret"):
        make_client(client_secret="")
    with pytest.raises(ValueError, match="timeout"):
        make_client(timeout=0)


def test_client_from_config_in_sandbox_mode_uses_the_sandbox_and_its_credentials():
    clear_shared_state()
    config = {
        "ZOOM_MODE": "sandbox",
        "SANDBOX_URL": "http://127.0.0.1:5001/",
        "ZOOM_TIMEOUT_SECONDS": 5,
    }
    first = client_from_config(config)
    second = client_from_config(config)
    assert first.api_url == "http://127.0.0.1:5001/v2"
    assert first.oauth_url == "http://127.0.0.1:5001/oauth/token"
    assert (first.account_id, first.client_id) == (SANDBOX_ACCOUNT_ID, SANDBOX_CLIENT_ID)
    assert first.timeout == 5
    # one token cache and one budget for the whole process
    assert first.token_cache is second.token_cache and first.budget is second.budget
    with responses.RequestsMock() as rsps:
        rsps.post(
            "http://127.0.0.1:5001/oauth/token",
            json={"access_token": "sandbox-token", "expires_in": 3600},
            match=[
                matchers.header_matcher(
                    {
                        "Authorization": requests.auth._basic_auth_str(
                            SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
                        )
                    }
                ),
                matchers.urlencoded_params_matcher(
                    {"grant_type": "account_credentials", "account_id": SANDBOX_ACCOUNT_ID}
                ),
            ],
        )
        rsps.get(
            "http://127.0.0.1:5001/v2/meetings/1", json={"id": 1}, match=[bearer("sandbox-token")]
        )
        first.get_meeting(1)
        second.get_meeting(1)
    assert first.calls["oauth_token"] + second.calls["oauth_token"] == 1
    clear_shared_state()


def test_client_from_config_for_zoom_uses_the_configured_urls():
    clear_shared_state()
    config = {
        "ZOOM_MODE": "zoom",
        "ZOOM_ACCOUNT_ID": "acct",
        "ZOOM_CLIENT_ID": "cid",
        "ZOOM_CLIENT_SECRET": "secret",
        "ZOOM_API_URL": "http://127.0.0.1:4010",
        "ZOOM_OAUTH_URL": "http://127.0.0.1:4011/oauth/token",
        "ZOOM_TIMEOUT_SECONDS": 20,
    }
    clock = FakeClock()
    client = client_from_config(config, sleep=clock.sleep, clock=clock)
    assert (client.api_url, client.oauth_url, client.timeout) == (
        "http://127.0.0.1:4010",
        "http://127.0.0.1:4011/oauth/token",
        20,
    )
    assert client.account_id == "acct"
    clear_shared_state()


def test_client_from_config_with_a_token_file_shares_it(tmp_path):
    clear_shared_state()
    config = {
        "ZOOM_MODE": "sandbox",
        "SANDBOX_URL": "http://127.0.0.1:5001",
        "ZOOM_TOKEN_CACHE_FILE": str(tmp_path / "token.json"),
    }
    a, b = client_from_config(config), client_from_config(config)
    assert a.token_cache is b.token_cache
    assert type(a.token_cache).__name__ == "FileTokenCache"
    clear_shared_state()


def test_every_request_is_logged_with_template_status_code_and_tracking_id(rsps, client, caplog):
    rsps.get(
        MEETING,
        status=404,
        json={"code": 3001, "message": "Meeting does not exist."},
        headers={"x-zm-trackingid": "WEB_track"},
    )
    with caplog.at_level(logging.INFO, logger="companion.zoom"), pytest.raises(ZoomNotFound):
        client.get_meeting(MEETING_ID)
    line = [r.getMessage() for r in caplog.records if "get_meeting" in r.getMessage()][0]
    assert "GET /meetings/{meetingId} -> 404 code=3001 tracking_id=WEB_track" in line
    assert str(MEETING_ID) not in line
    assert "tok-1" not in caplog.text


def test_calls_count_every_request_by_operation(rsps, client):
    rsps.get(MEETING, status=500, json={})
    rsps.get(MEETING, json={})
    rsps.get(f"{MEETING}/recordings", json={})
    client.get_meeting(MEETING_ID)
    client.get_meeting_recordings(MEETING_ID)
    assert client.calls == {"oauth_token": 1, "get_meeting": 2, "get_meeting_recordings": 1}
    assert rsps.calls[0].request.url == OAUTH


def test_by_default_every_process_of_an_instance_shares_one_token(tmp_path):
    """The web server and the worker each build their client from the instance's configuration:
    the second process takes the token the first fetched instead of fetching a competing one."""
    zoom = SandboxZoom(http=True)
    env = {"COMPANION_SECRET_KEY": "x" * 40, "COMPANION_SANDBOX_URL": zoom.url}
    try:
        config = config_load(tmp_path, env)
        assert config["ZOOM_TOKEN_CACHE_FILE"] == str(tmp_path / "zoom-token.json")
        clear_shared_state()
        list(client_from_config(config).iter_meetings("me"))
        issued = zoom.state.store.one("SELECT count(*) AS n FROM tokens")["n"]
        # Another process (a worker), configured from the same instance folder.
        script = (
            "import json, sys; from pathlib import Path\n"
            "from companion.config import load\n"
            "from companion.zoom.client import client_from_config\n"
            "c = client_from_config(load(Path(sys.argv[1]), json.loads(sys.argv[2])))\n"
            "list(c.iter_meetings('me')); print(c.calls)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path), json.dumps(env)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "oauth_token" not in done.stdout, done.stdout
        assert zoom.state.store.one("SELECT count(*) AS n FROM tokens")["n"] == issued
        assert oct((tmp_path / "zoom-token.json").stat().st_mode & 0o777) == "0o600"
    finally:
        clear_shared_state()
        zoom.close()
