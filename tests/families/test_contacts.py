"""Correcting a parent's details: a mistyped address's link dies and the right one gets a new
link; a second parent/carer can be added."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.errors import NotFound, ValidationError
from companion.families import links
from companion.families.models import Family

from .. import factories
from ..factories import NOW
from ..staff_helpers import audit_events, post_form, sign_in, text

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def save(db_session: Session, actor: Any, family: Family, position: int, name: str, email: str):
    return links.save_contact(
        db_session,
        actor=actor,
        course_id=family.course_id,
        family_id=family.id,
        position=position,
        name=name,
        email=email,
        now=NOW,
    )


def test_a_mistyped_address_is_corrected(
    db_session: Session, client: FlaskClient, teacher: Any, family: Family
) -> None:
    old = factories.links_to(db_session, "rana@example.net")[0]
    contact, result = save(db_session, teacher, family, 1, "Rana Khan", "rana.khan@example.net")
    assert result == "link sent"
    assert contact.email == "rana.khan@example.net"
    assert client.get(old).status_code == 410
    (new,) = factories.links_to(db_session, "rana.khan@example.net")
    assert client.get(new).status_code == 303
    assert len(audit_events(db_session, "family.contact_saved")) == 1
    (revoked,) = audit_events(db_session, "family.link_revoked")
    assert "address changed" in revoked.detail


def test_a_new_name_alone_sends_nothing(db_session: Session, teacher: Any, family: Family) -> None:
    assert save(db_session, teacher, family, 1, "Rana K. Khan", "rana@example.net")[1] == "saved"
    assert save(db_session, teacher, family, 1, "Rana K. Khan", "rana@example.net")[1] == (
        "unchanged"
    )
    assert len(factories.outbox(db_session, "family.link")) == 1


def test_a_second_parent_is_added(db_session: Session, teacher: Any, family: Family) -> None:
    contact, result = save(db_session, teacher, family, 2, "Omar Khan", "omar@example.net")
    assert (contact.position, result) == (2, "link sent")
    assert [c.email for c in family.contacts] == ["rana@example.net", "omar@example.net"]
    with pytest.raises(ValidationError) as caught:
        save(db_session, teacher, family, 2, "Omar Khan", "RANA@example.net")
    assert caught.value.field == "email"
    with pytest.raises(NotFound):
        save(db_session, teacher, family, 3, "Third", "third@example.net")


def test_over_http_and_who_may(
    app: Any,
    db_session: Session,
    client: FlaskClient,
    org: Any,
    teacher: Any,
    lead: Any,
    family: Family,
) -> None:
    from .. import factories

    path = f"/courses/{family.course_id}/families/{family.id}/contacts/1/edit"
    sign_in(client, teacher.email)
    assert 'value="rana@example.net"' in text(client.get(path))
    bad = post_form(client, path, {"name": "Rana", "email": "rana@"}, form_page=path)
    assert bad.status_code == 422 and "is not a valid email address" in text(bad)
    ok = post_form(client, path, {"name": "Rana", "email": "rana2@example.net"}, form_page=path)
    assert ok.status_code == 302
    assert "a personal link was sent to the new address" in text(client.get(ok.headers["Location"]))
    lead_browser = app.test_client()
    sign_in(lead_browser, lead.email)
    assert lead_browser.get(path).status_code == 403
    other = app.test_client()
    sign_in(other, factories.user(db_session, org, role="teacher").email)
    assert other.get(path).status_code == 404
