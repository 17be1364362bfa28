"""Cloud recordings: listing, deleting, and downloading the files as Zoom serves them."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from companion.zoom.client import _recording_meeting
from companion.zoom.sandbox import Sandbox
from companion.zoom.sandbox import media as sandbox_media
from companion.zoom.sandbox.delivery import deliveries
from companion.zoom.sandbox.errors import ZoomApiError

from .conftest import Api, FakeClock

# A UUID Zoom would make that must be double-encoded in a URL: it starts with "/" and has "//".
AWKWARD_UUID = "/Ab1C//d2Ef3Gh4Ij5Kl+w=="


def held_class(api: Api, sandbox: Sandbox, **options: Any) -> tuple[dict, dict]:
    meeting = api.create_meeting()
    reg = api.post(
        f"/v2/meetings/{meeting['id']}/registrants",
        json={"email": "p@example.org", "first_name": "Pat", "auto_approve": True},
    ).get_json()
    summary = sandbox.simulate_class(
        meeting["id"],
        meeting["occurrences"][0]["occurrence_id"],
        participants=[reg["registrant_id"]],
        **options,
    )
    return meeting, summary


def download_token(sandbox: Sandbox) -> str:
    completed = [d for d in deliveries(sandbox) if d["event"] == "recording.completed"]
    return completed[-1]["body"]["download_token"]


def test_recordings_of_a_class(api: Api, sandbox: Sandbox) -> None:
    meeting, summary = held_class(api, sandbox)
    r = api.get(f"/v2/meetings/{meeting['id']}/recordings")
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == meeting["id"]
    assert body["uuid"] == summary["uuid"]
    assert body["type"] == "8"  # a string in the recordings API (a number in webhooks)
    assert body["recording_count"] == 2
    files = {f["file_type"]: f for f in body["recording_files"]}
    assert files["MP4"]["file_size"] == len(sandbox_media.media_bytes("class.mp4"))
    assert files["M4A"]["file_size"] == len(sandbox_media.media_bytes("class.m4a"))
    assert files["MP4"]["recording_type"] == "shared_screen_with_speaker_view"
    assert files["M4A"]["recording_type"] == "audio_only"
    assert body["total_size"] == files["MP4"]["file_size"] + files["M4A"]["file_size"]
    for f in body["recording_files"]:
        assert f["status"] == "completed"
        assert f["meeting_id"] == summary["uuid"]
        assert f["download_url"] == f"http://sandbox.test/rec/download/{f['id']}"
        assert f["recording_start"] == summary["start_time"]
        assert f["recording_end"] == summary["end_time"]
    assert "download_access_token" not in body
    # Encoded as the client does (twice when Zoom asks for it): a random UUID may hold "//".
    by_uuid = api.get(f"/v2/meetings/{_recording_meeting(summary['uuid'])}/recordings").get_json()
    assert by_uuid["recording_files"] == body["recording_files"]


def test_uuid_that_needs_double_encoding(api: Api, sandbox: Sandbox) -> None:
    meeting, summary = held_class(api, sandbox, instance_uuid=AWKWARD_UUID)
    twice = quote(quote(AWKWARD_UUID, safe=""), safe="")
    r = api.get(f"/v2/meetings/{twice}/recordings")
    assert r.status_code == 200 and r.get_json()["uuid"] == AWKWARD_UUID
    file_id = r.get_json()["recording_files"][0]["id"]
    assert api.delete(f"/v2/meetings/{twice}/recordings/{file_id}").status_code == 204


def test_no_recording_when_the_meeting_does_not_record(api: Api, sandbox: Sandbox) -> None:
    meeting = api.create_meeting(settings={"auto_recording": "none", "approval_type": 1})
    sandbox.simulate_class(meeting["id"], meeting["occurrences"][0]["occurrence_id"], [])
    r = api.get(f"/v2/meetings/{meeting['id']}/recordings")
    assert r.status_code == 404
    assert r.get_json() == {"code": 3301, "message": "There is no recording for this meeting."}
    assert [d["event"] for d in deliveries(sandbox)][-1] == "meeting.ended"
    sandbox.simulate_class(
        meeting["id"], meeting["occurrences"][1]["occurrence_id"], [], record=True
    )
    assert api.get(f"/v2/meetings/{meeting['id']}/recordings").status_code == 200
    assert api.get("/v2/meetings/12345678901/recordings").status_code == 404


def test_download_with_the_webhook_token(api: Api, sandbox: Sandbox, clock: FakeClock) -> None:
    meeting, _ = held_class(api, sandbox)
    files = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"]
    mp4 = next(f for f in files if f["file_type"] == "MP4")
    client = api.client
    path = urlparse(mp4["download_url"]).path
    token = download_token(sandbox)

    r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 302
    target = r.headers["Location"]
    assert target.startswith(f"/rec/files/{mp4['id']}/")
    r = client.get(target)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "video/mp4"
    assert int(r.headers["Content-Length"]) == mp4["file_size"]
    assert r.data == sandbox_media.media_bytes("class.mp4")
    assert r.data[4:8] == b"ftyp"  # an MP4 file

    # The OAuth access token works as well.
    r = client.get(path, headers={"Authorization": f"Bearer {api.token}"}, follow_redirects=True)
    assert r.status_code == 200 and len(r.data) == mp4["file_size"]

    # The signed file link is short-lived.
    clock.advance(121)
    assert client.get(target).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": "Basic c2FuZGJveA=="},
    ],
)
def test_download_with_a_bad_token_is_an_html_page(
    api: Api, sandbox: Sandbox, headers: dict[str, str]
) -> None:
    meeting, _ = held_class(api, sandbox)
    f = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"][0]
    r = api.client.get(urlparse(f["download_url"]).path, headers=headers)
    # As Zoom does: 200 OK, but an HTML page instead of the file.
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert b"Only the host" in r.data


def test_download_token_is_per_class_and_expires(
    api: Api, sandbox: Sandbox, clock: FakeClock
) -> None:
    meeting, _ = held_class(api, sandbox)
    first_token = download_token(sandbox)
    sandbox.simulate_class(meeting["id"], meeting["occurrences"][1]["occurrence_id"], [])
    second = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()
    path = urlparse(second["recording_files"][0]["download_url"]).path
    r = api.client.get(path, headers={"Authorization": f"Bearer {first_token}"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    token = download_token(sandbox)
    r = api.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 302
    clock.advance(24 * 3600 + 1)
    r = api.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.headers["Content-Type"].startswith("text/html")
    # A fresh download access token from the API (include_fields) works again.
    api.refresh()
    fresh = api.get(
        f"/v2/meetings/{meeting['id']}/recordings?include_fields=download_access_token&ttl=60"
    ).get_json()["download_access_token"]
    r = api.client.get(path, headers={"Authorization": f"Bearer {fresh}"})
    assert r.status_code == 302
    clock.advance(61)
    r = api.client.get(path, headers={"Authorization": f"Bearer {fresh}"})
    assert r.headers["Content-Type"].startswith("text/html")
    api.refresh()
    bad = api.get(
        f"/v2/meetings/{meeting['id']}/recordings?include_fields=download_access_token&ttl=604801"
    )
    assert bad.status_code == 400


def test_range_requests(api: Api, sandbox: Sandbox) -> None:
    meeting, _ = held_class(api, sandbox)
    f = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"][0]
    target = api.client.get(
        urlparse(f["download_url"]).path, headers={"Authorization": f"Bearer {api.token}"}
    ).headers["Location"]
    whole = sandbox_media.media_bytes("class.mp4")
    r = api.client.get(target, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert r.data == whole[100:200]
    r = api.client.get(target, headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.data == whole[-10:]
    r = api.client.get(target, headers={"Range": f"bytes={len(whole)}-"})
    assert r.status_code == 416


def test_trash_and_delete(api: Api, sandbox: Sandbox) -> None:
    meeting, summary = held_class(api, sandbox)
    mid = meeting["id"]
    files = api.get(f"/v2/meetings/{mid}/recordings").get_json()["recording_files"]
    m4a = next(f for f in files if f["file_type"] == "M4A")
    assert api.delete(f"/v2/meetings/{mid}/recordings/{m4a['id']}").status_code == 204
    left = api.get(f"/v2/meetings/{mid}/recordings").get_json()["recording_files"]
    assert [f["file_type"] for f in left] == ["MP4"]
    r = api.client.get(
        urlparse(m4a["download_url"]).path, headers={"Authorization": f"Bearer {api.token}"}
    )
    assert r.status_code == 404
    assert api.delete(f"/v2/meetings/{mid}/recordings/{m4a['id']}").status_code == 404

    assert api.delete(f"/v2/meetings/{mid}/recordings?action=archive").status_code == 400
    assert api.delete(f"/v2/meetings/{mid}/recordings").status_code == 204  # trash
    r = api.get(f"/v2/meetings/{mid}/recordings")
    assert r.status_code == 404 and r.get_json()["code"] == 3301
    assert api.delete(f"/v2/meetings/{mid}/recordings").status_code == 404
    day = summary["start_time"][:10]
    trash = api.get(f"/v2/users/me/recordings?from={day}&to={day}&trash=true").get_json()
    assert trash["total_records"] == 1
    # Trashed as a meeting: the MP4; the M4A was trashed on its own (trash_type=recording_file).
    trashed = trash["meetings"][0]["recording_files"]
    assert [f["file_type"] for f in trashed] == ["MP4"] and trashed[0]["deleted_time"]
    one = api.get("/v2/users/me/recordings?trash=true&trash_type=recording_file").get_json()
    assert [f["file_type"] for f in one["meetings"][0]["recording_files"]] == ["M4A"]

    other, second = held_class(api, sandbox)
    uuid = _recording_meeting(second["uuid"])
    assert api.delete(f"/v2/meetings/{uuid}/recordings?action=delete").status_code == 204
    listed = api.get(f"/v2/users/me/recordings?from={day}&to={day}&trash=true").get_json()
    assert listed["total_records"] == 1  # permanently deleted files are not in the trash


def test_list_user_recordings(api: Api, sandbox: Sandbox, clock: FakeClock) -> None:
    meeting, first = held_class(api, sandbox)
    second = sandbox.simulate_class(meeting["id"], meeting["occurrences"][1]["occurrence_id"], [])
    r = api.get("/v2/users/me/recordings?from=2027-10-01&to=2027-10-31&page_size=1")
    page = r.get_json()
    assert page["from"] == "2027-10-01" and page["to"] == "2027-10-31"
    assert page["total_records"] == 2 and len(page["meetings"]) == 1
    assert page["meetings"][0]["uuid"] == second["uuid"]  # newest first
    nxt = api.get(
        f"/v2/users/me/recordings?from=2027-10-01&to=2027-10-31&page_size=1"
        f"&next_page_token={page['next_page_token']}"
    ).get_json()
    assert nxt["meetings"][0]["uuid"] == first["uuid"] and nxt["next_page_token"] == ""
    only = api.get(
        f"/v2/users/me/recordings?from=2027-10-08&to=2027-10-31&meeting_id={meeting['id']}"
    ).get_json()
    assert [m["uuid"] for m in only["meetings"]] == [second["uuid"]]
    # Default range is today (the sandbox clock), and a range is at most a month.
    assert api.get("/v2/users/me/recordings").get_json()["total_records"] == 0
    assert api.get("/v2/users/me/recordings?from=2027-01-01&to=2027-03-01").status_code == 400
    assert api.get("/v2/users/me/recordings?from=yesterday").status_code == 400
    assert api.get("/v2/users/nobody/recordings").status_code == 404


def test_large_synthetic_recording_streams_over_http(
    sandbox_app: Flask, api: Api, sandbox: Sandbox, live: Any
) -> None:
    size = 24 * 1024 * 1024 + 12345
    meeting, _ = held_class(api, sandbox, recording_bytes=size)
    base = live(sandbox_app)
    files = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"]
    mp4 = next(f for f in files if f["file_type"] == "MP4")
    assert mp4["file_size"] == size
    url = base + urlparse(mp4["download_url"]).path
    digest = hashlib.sha256()
    received = 0
    with requests.get(
        url, headers={"Authorization": f"Bearer {download_token(sandbox)}"}, stream=True, timeout=30
    ) as r:
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [302]
        assert r.headers["Content-Type"] == "video/mp4"
        for chunk in r.iter_content(1 << 20):
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == sandbox_media.synthetic_sha256(size, mp4["id"])


def test_a_download_cut_halfway(sandbox_app: Flask, api: Api, sandbox: Sandbox, live: Any) -> None:
    meeting, _ = held_class(api, sandbox, recording_bytes=4 * 1024 * 1024)
    base = live(sandbox_app)
    f = next(
        f
        for f in api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"]
        if f["file_type"] == "MP4"
    )
    api.client.post("/_sandbox/faults", json={"path": "/rec/files/*", "truncate_after": 1500000})
    headers = {"Authorization": f"Bearer {api.token}"}
    url = base + urlparse(f["download_url"]).path
    with (
        # Fewer bytes than Content-Length: urllib3 reports an incomplete read (or a reset).
        pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)),
        requests.get(url, headers=headers, stream=True, timeout=30) as r,
    ):
        for _ in r.iter_content(65536):
            pass
    # The next attempt gets the whole file.
    with requests.get(url, headers=headers, timeout=30) as r:
        assert len(r.content) == f["file_size"]


def test_html_fault_on_download(api: Api, sandbox: Sandbox, zoom_client: FlaskClient) -> None:
    meeting, _ = held_class(api, sandbox)
    f = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"][0]
    zoom_client.post("/_sandbox/faults", json={"path": "/rec/download/*", "html": True})
    path = urlparse(f["download_url"]).path
    r = zoom_client.get(path, headers={"Authorization": f"Bearer {api.token}"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    r = zoom_client.get(path, headers={"Authorization": f"Bearer {api.token}"})
    assert r.status_code == 302


def test_recording_completed_payload(api: Api, sandbox: Sandbox) -> None:
    meeting, summary = held_class(api, sandbox)
    event = [d for d in deliveries(sandbox) if d["event"] == "recording.completed"][-1]["body"]
    assert list(event) == ["event", "payload", "event_ts", "download_token"]
    obj = event["payload"]["object"]
    assert event["payload"]["account_id"] == "sandbox-account"
    assert obj["id"] == meeting["id"] and obj["type"] == 8  # numbers in webhooks
    assert obj["uuid"] == summary["uuid"]
    assert obj["host_email"] and obj["share_url"]
    api_files = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()["recording_files"]
    assert obj["recording_files"] == api_files
    assert obj["total_size"] == sum(f["file_size"] for f in api_files)
    assert json.dumps(event)  # plain JSON


ALL_KINDS = {
    "recording_audio_transcript": True,
    "save_chat_text": True,
    "save_close_caption": True,
    "record_audio_file_each_participant": True,
    "save_poll_results": True,
    "meeting_summary": True,
}


def test_a_class_has_every_kind_of_file_the_account_makes(api: Api, sandbox: Sandbox) -> None:
    """Transcript, chat, captions, timeline, poll, summary and per-participant audio, with the
    children's names inside; captions and the timeline are listed without id, status, size."""
    assert sandbox.recording_settings()["save_chat_text"] is False  # off until turned on
    sandbox.set_recording_settings(ALL_KINDS)
    meeting, summary = held_class(api, sandbox)
    body = api.get(f"/v2/meetings/{meeting['id']}/recordings").get_json()
    files = {f["file_type"]: f for f in body["recording_files"]}
    assert set(files) == {"MP4", "M4A", "TRANSCRIPT", "TIMELINE", "CHAT", "CC", "CSV", "SUMMARY"}
    assert files["TRANSCRIPT"]["recording_type"] == "audio_transcript"
    assert files["CC"]["recording_type"] == "closed_caption"
    for no_id in (files["CC"], files["TIMELINE"]):
        assert not {"id", "status", "file_size"} & set(no_id)
        assert no_id["download_url"]
    assert body["recording_count"] == 8
    per_participant = body["participant_audio_files"]
    assert {p["file_name"] for p in per_participant} == {"Audio only - Teacher", "Audio only - Pat"}
    assert all(p["id"] and p["file_type"] == "M4A" for p in per_participant)

    # Each downloads like the video; the text files hold what children said, by name.
    token = download_token(sandbox)
    for f in (files["CC"], files["CHAT"], files["TRANSCRIPT"], per_participant[0]):
        r = api.client.get(
            urlparse(f["download_url"]).path, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 302, f
        got = api.client.get(r.headers["Location"])
        assert got.status_code == 200
        if f.get("file_type") != "M4A":
            assert b"Pat" in got.data
    # The webhook describes the same files.
    event = [d for d in deliveries(sandbox) if d["event"] == "recording.completed"][-1]
    obj = event["body"]["payload"]["object"]
    assert len(obj["recording_files"]) == 8 and len(obj["participant_audio_files"]) == 2


def test_the_trash_is_recoverable_and_only_delete_is_for_good(
    api: Api, sandbox: Sandbox, clock: FakeClock
) -> None:
    sandbox.set_recording_settings(ALL_KINDS)
    meeting, summary = held_class(api, sandbox)
    mid, uuid = meeting["id"], _recording_meeting(summary["uuid"])
    before = api.get(f"/v2/meetings/{uuid}/recordings").get_json()
    # Zoom's default action is trash: gone from the listing, every file (no-id ones too)...
    assert api.delete(f"/v2/meetings/{uuid}/recordings").status_code == 204
    assert api.get(f"/v2/meetings/{uuid}/recordings").status_code == 404
    # ... but in the trash, whatever the dates asked for (the trash is not filtered by date) ...
    trash = api.get(f"/v2/users/me/recordings?trash=true&meeting_id={mid}").get_json()
    assert [m["uuid"] for m in trash["meetings"]] == [summary["uuid"]]
    assert len(trash["meetings"][0]["recording_files"]) == 8
    far = api.get("/v2/users/me/recordings?trash=true&from=2020-01-01&to=2020-01-02").get_json()
    assert far["total_records"] == 1
    # ... and anyone with the host account can recover it, files and all.
    status = f"/v2/meetings/{uuid}/recordings/status"
    assert api.put(status, json={"action": "nope"}).status_code == 400
    assert api.put(status, json={"action": "recover"}).status_code == 200
    after = api.get(f"/v2/meetings/{uuid}/recordings").get_json()
    assert after["recording_files"] == before["recording_files"]
    assert after["participant_audio_files"] == before["participant_audio_files"]
    assert api.get("/v2/users/me/recordings?trash=true").get_json()["total_records"] == 0

    # action=delete: gone for good, not in the trash, nothing to recover.
    assert api.delete(f"/v2/meetings/{uuid}/recordings?action=delete").status_code == 204
    assert api.get(f"/v2/meetings/{uuid}/recordings").status_code == 404
    for kind in ("meeting_recordings", "recording_file"):
        listed = api.get(f"/v2/users/me/recordings?trash=true&trash_type={kind}").get_json()
        assert listed["total_records"] == 0
    r = api.put(status, json={"action": "recover"})
    assert r.status_code == 404 and r.get_json()["code"] == 3301
    assert api.get("/v2/users/me/recordings?trash=true&trash_type=other").status_code == 400

    # Zoom empties its trash after 30 days.
    other, second = held_class(api, sandbox)
    assert api.delete(f"/v2/meetings/{other['id']}/recordings").status_code == 204
    clock.advance(29 * 86400)
    api.refresh()
    assert api.get("/v2/users/me/recordings?trash=true").get_json()["total_records"] == 1
    clock.advance(2 * 86400)
    api.refresh()
    assert api.get("/v2/users/me/recordings?trash=true").get_json()["total_records"] == 0


def test_hosts_cannot_delete_when_the_account_setting_is_off(api: Api, sandbox: Sandbox) -> None:
    """``recording.host_delete_cloud_recording`` off: every delete is refused, nothing goes."""
    meeting, summary = held_class(api, sandbox)
    mid = meeting["id"]
    files = api.get(f"/v2/meetings/{mid}/recordings").get_json()["recording_files"]
    sandbox.set_recording_settings({"host_delete_cloud_recording": False})
    for path in (
        f"/v2/meetings/{mid}/recordings?action=delete",
        f"/v2/meetings/{mid}/recordings",
        f"/v2/meetings/{mid}/recordings/{files[0]['id']}?action=delete",
    ):
        r = api.delete(path)
        assert r.status_code == 400, path
        assert r.get_json() == {"code": 200, "message": "No permission."}
    assert api.get(f"/v2/meetings/{mid}/recordings").get_json()["recording_files"] == files
    with pytest.raises(ZoomApiError, match="Validation Failed"):
        sandbox.set_recording_settings({"host_may_delete": True})
    sandbox.set_recording_settings({"host_delete_cloud_recording": True})
    assert api.delete(f"/v2/meetings/{mid}/recordings?action=delete").status_code == 204
