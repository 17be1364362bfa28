"""Registrants: one link per child, approved by companion, never by the person registering."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from flask.testing import FlaskClient

from .conftest import Api, FakeClock


def register(api: Api, meeting_id: int, email: str, **extra: Any) -> Any:
    body = {"email": email, "first_name": extra.pop("first_name", "Sam"), **extra}
    return api.post(f"/v2/meetings/{meeting_id}/registrants", json=body)


def test_manual_approval_gives_no_link_until_approved(api: Api, zoom_client: FlaskClient) -> None:
    meeting = api.create_meeting()
    mid = meeting["id"]
    r = register(api, mid, "parent.one@example.org", last_name="Jones")
    assert r.status_code == 201
    created = r.get_json()
    assert created["id"] == mid
    assert "join_url" not in created
    assert created["topic"] == meeting["topic"]
    assert len(created["occurrences"]) == 8
    rid = created["registrant_id"]
    one = api.get(f"/v2/meetings/{mid}/registrants/{rid}").get_json()
    assert one["status"] == "pending" and "join_url" not in one
    assert one["email"] == "parent.one@example.org" and one["last_name"] == "Jones"

    r = api.put(
        f"/v2/meetings/{mid}/registrants/status",
        json={"action": "approve", "registrants": [{"id": rid}]},
    )
    assert r.status_code == 204
    one = api.get(f"/v2/meetings/{mid}/registrants/{rid}").get_json()
    assert one["status"] == "approved"
    link = urlparse(one["join_url"])
    assert link.path == f"/w/{mid}"
    assert parse_qs(link.query)["tk"][0]
    assert zoom_client.get(f"{link.path}?{link.query}").status_code == 200

    # Cancelling the registration makes the link useless.
    api.put(
        f"/v2/meetings/{mid}/registrants/status",
        json={"action": "cancel", "registrants": [{"email": "parent.one@example.org"}]},
    )
    one = api.get(f"/v2/meetings/{mid}/registrants/{rid}").get_json()
    assert one["status"] == "denied" and "join_url" not in one
    assert zoom_client.get(f"{link.path}?{link.query}").status_code == 403


def test_auto_approve_and_unique_links(api: Api) -> None:
    meeting = api.create_meeting()
    links = set()
    for n in range(3):
        r = register(api, meeting["id"], f"p{n}@example.org", auto_approve=True)
        body = r.get_json()
        assert body["join_url"].startswith(f"http://sandbox.test/w/{meeting['id']}?tk=")
        links.add(body["join_url"])
    assert len(links) == 3
    open_meeting = api.create_meeting(settings={"approval_type": 0})
    r = register(api, open_meeting["id"], "anyone@example.org")
    assert "join_url" in r.get_json()


def test_same_email_is_the_same_registrant(api: Api) -> None:
    meeting = api.create_meeting()
    first = register(api, meeting["id"], "twice@example.org").get_json()
    second = register(api, meeting["id"], "Twice@Example.org").get_json()
    assert first["registrant_id"] == second["registrant_id"]
    listing = api.get(f"/v2/meetings/{meeting['id']}/registrants?status=pending").get_json()
    assert listing["total_records"] == 1


def test_daily_limit_per_registrant(api: Api, clock: FakeClock) -> None:
    meeting = api.create_meeting()
    for _ in range(3):
        assert register(api, meeting["id"], "busy@example.org").status_code == 201
    r = register(api, meeting["id"], "busy@example.org")
    assert r.status_code == 429
    assert r.get_json()["code"] == 429
    assert "daily rate limit (3)" in r.get_json()["message"]
    assert r.headers["X-RateLimit-Type"] == "Daily-limit"
    clock.advance(24 * 3600)
    api.refresh()
    assert register(api, meeting["id"], "busy@example.org").status_code == 201


def test_registration_must_be_enabled(api: Api) -> None:
    meeting = api.create_meeting(settings={"approval_type": 2})
    r = register(api, meeting["id"], "x@example.org")
    assert r.status_code == 400
    assert r.get_json() == {
        "code": 300,
        "message": f"Registration has not been enabled for this meeting: {meeting['id']}.",
    }
    assert register(api, 99999999999, "x@example.org").status_code == 404


def test_registrant_validation(api: Api) -> None:
    meeting = api.create_meeting()
    cases = [
        ({"first_name": "A"}, "email"),
        ({"email": "not-an-email", "first_name": "A"}, "email"),
        ({"email": "a" * 120 + "@example.org", "first_name": "A"}, "email"),
        ({"email": "a@example.org"}, "first_name"),
        ({"email": "a@example.org", "first_name": "A" * 65}, "first_name"),
        ({"email": "a@example.org", "first_name": "A", "last_name": "B" * 65}, "last_name"),
        ({"email": "a@example.org", "first_name": "A", "auto_approve": "yes"}, "auto_approve"),
    ]
    for body, field in cases:
        r = api.post(f"/v2/meetings/{meeting['id']}/registrants", json=body)
        assert r.status_code == 400, body
        assert r.get_json()["message"] == "Validation Failed."
        assert field in [e["field"] for e in r.get_json()["errors"]]
    r = api.put(
        f"/v2/meetings/{meeting['id']}/registrants/status",
        json={"action": "approve", "registrants": [{"id": str(n)} for n in range(31)]},
    )
    assert r.status_code == 400
    r = api.put(f"/v2/meetings/{meeting['id']}/registrants/status", json={"action": "kick"})
    assert r.status_code == 400


def test_list_by_status_with_pagination_and_delete(api: Api) -> None:
    meeting = api.create_meeting()
    mid = meeting["id"]
    ids = [
        register(api, mid, f"kid{n}@example.org", auto_approve=n % 2 == 0).get_json()[
            "registrant_id"
        ]
        for n in range(7)
    ]
    approved = api.get(f"/v2/meetings/{mid}/registrants").get_json()  # default: approved
    assert approved["total_records"] == 4
    pending = api.get(f"/v2/meetings/{mid}/registrants?status=pending").get_json()
    assert pending["total_records"] == 3
    assert all("join_url" not in r for r in pending["registrants"])

    seen: list[str] = []
    token = ""
    while True:
        page = api.get(
            f"/v2/meetings/{mid}/registrants?page_size=3&next_page_token={token}"
        ).get_json()
        seen += [r["id"] for r in page["registrants"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == ids[0::2]

    api.put(
        f"/v2/meetings/{mid}/registrants/status",
        json={"action": "deny", "registrants": [{"id": ids[1]}, {"id": "unknown"}]},
    )
    denied = api.get(f"/v2/meetings/{mid}/registrants?status=denied").get_json()
    assert [r["id"] for r in denied["registrants"]] == [ids[1]]

    assert api.delete(f"/v2/meetings/{mid}/registrants/{ids[0]}").status_code == 204
    r = api.get(f"/v2/meetings/{mid}/registrants/{ids[0]}")
    assert r.status_code == 400 and r.get_json()["code"] == 300
    assert api.delete(f"/v2/meetings/{mid}/registrants/{ids[0]}").status_code == 400
    r = api.get(f"/v2/meetings/{mid}/registrants?status=everyone")
    assert r.status_code == 400


def test_registration_per_occurrence(api: Api) -> None:
    meeting = api.create_meeting()
    first, second = (o["occurrence_id"] for o in meeting["occurrences"][:2])
    r = api.post(
        f"/v2/meetings/{meeting['id']}/registrants?occurrence_ids={second}",
        json={"email": "once@example.org", "first_name": "Once", "auto_approve": True},
    )
    assert [o["occurrence_id"] for o in r.get_json()["occurrences"]] == [second]
    listed = api.get(f"/v2/meetings/{meeting['id']}/registrants?occurrence_id={first}").get_json()
    assert listed["total_records"] == 0
    r = api.post(
        f"/v2/meetings/{meeting['id']}/registrants?occurrence_ids=42",
        json={"email": "x@example.org", "first_name": "X"},
    )
    assert r.status_code == 400


def test_public_pages_do_not_hand_out_links(api: Api, zoom_client: FlaskClient) -> None:
    meeting = api.create_meeting()
    assert meeting["registration_url"]
    assert zoom_client.get(urlparse(meeting["registration_url"]).path).status_code == 403
    join = urlparse(meeting["join_url"])
    assert zoom_client.get(f"{join.path}?{join.query}").status_code == 403
    assert zoom_client.get(f"/w/{meeting['id']}?tk=guessed").status_code == 403


def test_concurrent_requests_over_http_lose_nothing(sandbox_app: Any, api: Api, live: Any) -> None:
    import threading

    import requests

    base = live(sandbox_app)
    meeting = api.create_meeting()
    headers = {"Authorization": f"Bearer {api.token}"}
    statuses: list[int] = []

    def add(n: int) -> None:
        with requests.Session() as http:
            r = http.post(
                f"{base}/v2/meetings/{meeting['id']}/registrants",
                json={"email": f"c{n}@example.org", "first_name": f"C{n}", "auto_approve": True},
                headers=headers,
                timeout=30,
            )
            statuses.append(r.status_code)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [201] * 16
    listed = api.get(f"/v2/meetings/{meeting['id']}/registrants?page_size=300").get_json()
    assert listed["total_records"] == 16
    assert len({r["join_url"] for r in listed["registrants"]}) == 16
