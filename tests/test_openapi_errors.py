"""Every documented operation says it can refuse a caller, as every one of them can."""

from __future__ import annotations

from companion.api.openapi import HTTP_METHODS


def test_every_operation_documents_401_and_403(client):
    doc = client.get("/api/v1/openapi.json").json
    missing = [
        f"{method.upper()} {path}"
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS and not {"401", "403"} <= set(op["responses"])
    ]
    assert missing == []


def test_a_lead_without_two_factor_is_refused_as_documented(client, db_session, org):
    from companion.accounts import services

    from . import factories
    from .twofactor_helpers import NO_TWO_FACTOR

    lead = factories.user(db_session, org, role="safeguarding_lead", **NO_TWO_FACTOR)
    token = services.create_token(db_session, user=lead, name="t")
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert r.json["error"]["code"] == "two_factor_required"
