"""The families operations in the JSON API, with staff bearer tokens."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.accounts import services as accounts
from companion.courses.timetable import class_sessions
from companion.families import access, audio_only
from companion.families.models import Family

from .. import factories
from ..factories import NOW
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def bearer(db_session: Session, user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {accounts.create_token(db_session, user=user, name='t')}"}


def body_for(course: Any) -> dict[str, Any]:
    return {"course_id": course.id, **BODY}


BODY = {
    "child_first_name": "Amira",
    "child_last_name": "Khan",
    "contacts": [
        {"name": "Rana Khan", "email": "rana@example.net"},
        {"name": "Omar Khan", "email": "omar@example.net"},
    ],
}


def test_enrol_list_get_withdraw(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
) -> None:
    auth = bearer(db_session, teacher)
    response = client.post("/api/v1/families", json=body_for(course), headers=auth)
    assert response.status_code == 201
    body = response.json
    assert body["child"] == {
        "first_name": "Amira",
        "last_name": "K",
        "display_name": "Amira K.",
        "zoom_name": "Amira K",
    }
    # Answered before Zoom was asked; Zoom was asked right after the answer.
    assert body["zoom"]["state"] == "pending"
    assert body["zoom"]["registrant_id"] is None
    assert [c["link"]["state"] for c in body["contacts"]] == ["queued", "queued"]
    assert "pending in Zoom until companion has registered it" in body["warnings"][0]
    assert zoom.calls["add_registrant"] == 1
    body = client.get(f"/api/v1/families/{body['id']}", headers=auth).json
    assert body["zoom"]["state"] == "registered"
    assert body["zoom"]["registrant_id"]
    assert [c["link"]["state"] for c in body["contacts"]] == ["active", "active"]
    assert "join_url" not in str(body) and "/f/" not in str(body)

    listing = client.get(f"/api/v1/families?course_id={course.id}", headers=auth).json
    assert [f["id"] for f in listing["families"]] == [body["id"]]
    one = client.get(f"/api/v1/families/{body['id']}", headers=auth).json
    assert one["contacts"][0]["agreement"] == {
        "accepted_version": None,
        "accepted_at": None,
        "current": False,
    }

    duplicate = client.post("/api/v1/families", json=body_for(course), headers=auth)
    assert duplicate.status_code == 409
    assert duplicate.json["error"]["code"] == "duplicate"

    withdrawn = client.post(f"/api/v1/families/{body['id']}/withdraw", headers=auth)
    assert withdrawn.status_code == 200
    assert withdrawn.json["status"] == "withdrawn"
    assert withdrawn.json["zoom"]["state"] == "cancelling"
    assert sandbox.approved(course.zoom_meeting_id) == []
    after = client.get(f"/api/v1/families/{body['id']}", headers=auth).json
    assert after["zoom"]["state"] == "cancelled"
    again = client.post(f"/api/v1/families/{body['id']}/withdraw", headers=auth)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "contacts": [{"name": "Rana", "email": "rana@"}]}, "contact1_email"),
        ({**BODY, "contacts": []}, "contacts"),
        ({**BODY, "contacts": [{"name": "A", "email": f"{c}@x.net"} for c in "abc"]}, "contacts"),
        ({**BODY, "contacts": ["rana@example.net"]}, "contacts"),
        ({**BODY, "child_first_name": 7}, "child_first_name"),
        ({**BODY, "colour": "red"}, "colour"),
        ({k: v for k, v in BODY.items() if k != "child_last_name"}, "child_last_name"),
    ],
)
def test_bad_bodies(
    db_session: Session, client: FlaskClient, teacher: Any, course: Any, body: Any, field: str
) -> None:
    response = client.post(
        "/api/v1/families",
        json={"course_id": course.id, **body},
        headers=bearer(db_session, teacher),
    )
    assert response.status_code == 422
    assert response.json["error"]["field"] == field
    assert access.families_of(db_session, course.id) == []


def test_not_json(db_session: Session, client: FlaskClient, teacher: Any, course: Any) -> None:
    auth = bearer(db_session, teacher)
    path = "/api/v1/families"
    assert client.post(path, data="x=1", headers=auth).status_code == 415
    bad = client.post(path, data="{", content_type="application/json", headers=auth)
    assert bad.status_code == 422 and bad.json["error"]["code"] == "bad_json"


def test_zoom_down_still_enrols(
    db_session: Session,
    client: FlaskClient,
    zoom: Any,
    sandbox: SandboxZoom,
    teacher: Any,
    course: Any,
) -> None:
    sandbox.fail("add_registrant", drop=True)
    response = client.post(
        "/api/v1/families", json=body_for(course), headers=bearer(db_session, teacher)
    )
    assert response.status_code == 201
    assert response.json["zoom"]["state"] == "pending"
    assert "pending" in response.json["warnings"][0]
    assert [c["link"]["state"] for c in response.json["contacts"]] == ["queued", "queued"]
    again = client.get(
        f"/api/v1/families/{response.json['id']}", headers=bearer(db_session, teacher)
    ).json
    assert again["zoom"]["state"] == "pending"
    assert "try again automatically" in again["zoom"]["error"]
    assert again["zoom"]["next_attempt_at"] is not None
    assert [c["link"]["state"] for c in again["contacts"]] == ["queued", "queued"]


def test_access(
    app: Flask, db_session: Session, org: Any, course: Any, family: Family, lead: Any
) -> None:
    client = app.test_client()
    other = bearer(db_session, factories.user(db_session, org, role="teacher"))
    listing = f"/api/v1/families?course_id={course.id}"
    first = class_sessions(course)[0]
    contact = family.contacts[0]
    assert client.get(listing, headers=other).status_code == 404
    assert client.get(f"/api/v1/families/{family.id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/classes/{first.id}/audio-only", headers=other).status_code == 404
    for path in (
        f"/api/v1/families/{family.id}/withdraw",
        f"/api/v1/families/{family.id}/contacts/{contact.id}/resend-link",
        f"/api/v1/families/{family.id}/contacts/{contact.id}/revoke-link",
    ):
        assert client.post(path, headers=other).status_code == 404, path
    assert client.post("/api/v1/families", json=body_for(course), headers=other).status_code == 404
    assert family.status == "enrolled"
    lead_auth = bearer(db_session, lead)
    assert client.get(listing, headers=lead_auth).status_code == 200
    response = client.post("/api/v1/families", json=body_for(course), headers=lead_auth)
    assert response.status_code == 403
    assert client.get(listing).status_code == 401
    assert client.get("/api/v1/families", headers=lead_auth).status_code == 422


def test_links_and_audio_only_per_class(
    db_session: Session, client: FlaskClient, lead: Any, course: Any, family: Family
) -> None:
    auth = bearer(db_session, lead)
    contact = family.contacts[0]
    base = f"/api/v1/families/{family.id}/contacts/{contact.id}"
    resent = client.post(f"{base}/resend-link", headers=auth)
    assert resent.status_code == 200
    assert resent.json["result"] == "sent"
    assert len(factories.links_to(db_session, "rana@example.net")) == 2
    revoked = client.post(f"{base}/revoke-link", headers=auth)
    assert revoked.json["result"] == "revoked"
    assert revoked.json["family"]["contacts"][0]["link"]["state"] == "revoked"
    assert client.post(f"{base}/revoke-link", headers=auth).status_code == 409
    missing = f"/api/v1/families/{family.id}/contacts/999999/resend-link"
    assert client.post(missing, headers=auth).status_code == 404

    first = class_sessions(course)[0]
    parent = factories.principal(db_session, contact)
    audio_only.request_audio_only(db_session, parent, class_id=None, action="request", now=NOW)
    audio_only.request_audio_only(db_session, parent, class_id=first.id, action="withdraw", now=NOW)
    answer = client.get(f"/api/v1/classes/{first.id}/audio-only", headers=auth)
    assert answer.status_code == 200
    body = answer.json
    assert body["class"]["id"] == first.id
    assert body["families"] == [
        {
            "family_id": family.id,
            "child_name": "Amira K.",
            "zoom_name": "Amira K",
            "audio_only": False,
            "registered_in_zoom": True,
            "agreement_accepted": False,
        }
    ]
    assert [(e["action"], e["scope"]) for e in body["events"]] == [
        ("request", "remaining"),
        ("withdraw", "class"),
    ]
    second = class_sessions(course)[1]
    answer = client.get(f"/api/v1/classes/{second.id}/audio-only", headers=auth)
    assert answer.json["families"][0]["audio_only"] is True
    assert (client.get("/api/v1/classes/2147483647/audio-only", headers=auth)).status_code == 404


def test_the_document_names_the_operations(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in (
        "/families",
        "/families/{family_id}",
        "/families/{family_id}/withdraw",
        "/families/{family_id}/contacts/{contact_id}/resend-link",
        "/families/{family_id}/contacts/{contact_id}/revoke-link",
        "/classes/{class_id}/audio-only",
    ):
        assert path in paths
