"""Organisation settings: admins edit them, bad values are named beside their field."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.accounts.models import User
from companion.orgs import services as orgs
from companion.orgs.models import Organisation

from .staff_helpers import audit_events, post_form, sign_in, text

PAGE = "/admin/organisation/"


@pytest.fixture
def admin_client(client: FlaskClient, admin: User) -> FlaskClient:
    assert sign_in(client, admin.email).status_code == 302
    return client


def settings(org: Organisation, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": org.name,
        "timezone": org.timezone,
        "safeguarding_contact_name": org.safeguarding_contact_name,
        "safeguarding_contact_email": org.safeguarding_contact_email,
        "safeguarding_contact_phone": org.safeguarding_contact_phone,
        "recording_retention_days": str(org.recording_retention_days),
        "audio_only_cutoff_minutes": str(org.audio_only_cutoff_minutes),
        "child_name_style": org.child_name_style,
    }
    if org.lead_as_alternative_host:
        values["lead_as_alternative_host"] = "y"
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def field_errors(page: str, field: str) -> list[str]:
    """Error messages rendered inside the wrapper of one field."""
    match = re.search(
        rf'<div class="field has-error">\s*<label for="{field}">.*?</div>', page, re.S
    )
    if not match:
        return []
    found = re.findall(r'<p class="error" role="alert">([^<]*)</p>', match.group(0))
    return [unescape(m) for m in found]


def test_admin_sees_the_current_settings(admin_client: FlaskClient, org: Organisation) -> None:
    page = admin_client.get(PAGE)
    assert page.status_code == 200
    body = text(page)
    assert f'value="{org.name}"' in body
    assert 'value="Europe/London"' in body
    assert org.safeguarding_contact_email in body


def test_admin_edits_the_settings(
    admin_client: FlaskClient, db_session: Session, org: Organisation, admin: User
) -> None:
    response = post_form(
        admin_client,
        PAGE,
        settings(
            org,
            name="Hillside Strings",
            timezone="America/New_York",
            safeguarding_contact_name="Dana Guard",
            safeguarding_contact_email="dana@example.org",
            safeguarding_contact_phone="+1 212 555 0100",
            recording_retention_days="90",
            lead_as_alternative_host="y",
            child_name_style="full",
        ),
        form_page=PAGE,
    )

    assert response.status_code == 302
    assert "Settings saved." in text(admin_client.get(PAGE))
    db_session.refresh(org)
    assert org.name == "Hillside Strings"
    assert org.timezone == "America/New_York"
    assert org.safeguarding_contact_name == "Dana Guard"
    assert org.safeguarding_contact_email == "dana@example.org"
    assert org.safeguarding_contact_phone == "+1 212 555 0100"
    assert org.recording_retention_days == 90
    assert org.lead_as_alternative_host is True
    assert org.child_name_style == "full"
    [event] = audit_events(db_session, "organisation.updated")
    assert event.actor_user_id == admin.id
    assert set(json.loads(event.detail)["changed"]) == {
        "name",
        "timezone",
        "safeguarding_contact_name",
        "safeguarding_contact_email",
        "safeguarding_contact_phone",
        "recording_retention_days",
        "lead_as_alternative_host",
        "child_name_style",
    }


def test_saving_unchanged_settings_records_nothing(
    admin_client: FlaskClient, db_session: Session, org: Organisation
) -> None:
    assert post_form(admin_client, PAGE, settings(org), form_page=PAGE).status_code == 302
    assert audit_events(db_session, "organisation.updated") == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not a known time zone."),
        ("timezone", "Europe", "'Europe' is not a known time zone."),
        ("recording_retention_days", "0", "Number must be between 1 and 3650."),
        ("recording_retention_days", "lots", "Not a valid integer value."),
        (
            "safeguarding_contact_email",
            "not-an-email",
            "'not-an-email' is not a valid email address.",
        ),
        ("name", "", "This field is required."),
        ("child_name_style", "surname", "Not a valid choice."),
    ],
)
def test_bad_value_is_named_beside_its_field_and_nothing_changes(
    admin_client: FlaskClient,
    db_session: Session,
    org: Organisation,
    field: str,
    value: str,
    message: str,
) -> None:
    before = (org.name, org.timezone, org.recording_retention_days)

    response = post_form(
        admin_client,
        PAGE,
        settings(org, **{field: value, "safeguarding_contact_name": "Changed Too"}),
        form_page=PAGE,
    )

    assert response.status_code == 422
    assert message in field_errors(text(response), field)
    db_session.refresh(org)
    assert (org.name, org.timezone, org.recording_retention_days) == before
    assert org.safeguarding_contact_name == "Sam Lead", "nothing is half-saved"
    assert audit_events(db_session, "organisation.updated") == []


@pytest.mark.parametrize("role", ["teacher", "safeguarding_lead"])
def test_other_roles_may_not_see_or_change_settings(
    client: FlaskClient, db_session: Session, org: Organisation, role: str
) -> None:
    from . import factories

    person = factories.user(db_session, org, role=role)
    sign_in(client, person.email)

    assert client.get(PAGE).status_code == 403
    response = post_form(client, PAGE, settings(org, name="Taken Over"), form_page="/")
    assert response.status_code == 403
    db_session.refresh(org)
    assert org.name != "Taken Over"


def test_service_checks_every_value_before_writing(db_session: Session, org: Organisation) -> None:
    from companion.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        orgs.update(
            db_session, actor=None, organisation_id=org.id, name="New name", timezone="Nowhere/City"
        )
    assert info.value.field == "timezone"
    assert org.name != "New name"
    with pytest.raises(ValidationError, match="Unknown setting"):
        orgs.update(db_session, actor=None, organisation_id=org.id, id=99)
