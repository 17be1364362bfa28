"""Family links: one email per parent, a hashed token exchanged for a family session cookie,
sent only for a safe course, re-sent or revoked by staff, refused clearly when dead."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from companion.accounts.services import hash_token
from companion.courses.verification import course_is_safe
from companion.errors import Conflict
from companion.families import family_page, jobs, links
from companion.families.models import Family, FamilyLink, FamilySession

from .. import factories
from ..factories import NOW, check
from ..staff_helpers import audit_events
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")

TWO_PARENTS = (("Rana Khan", "rana@example.net"), ("Omar Khan", "omar@example.net"))


def open_link(client: FlaskClient, path: str) -> Any:
    return client.get(path)


def test_each_parent_gets_one_message_to_them_alone(
    db_session: Session, zoom: Any, teacher: Any, course: Any
) -> None:
    factories.enrol(db_session, zoom, teacher, course, contacts=TWO_PARENTS)
    messages = factories.outbox(db_session, "family.link")
    assert [m.to_address for m in messages] == ["rana@example.net", "omar@example.net"]
    rana, omar = messages
    assert rana.to_name == "Rana Khan"
    assert "omar" not in rana.body_text.lower() and "omar" not in rana.subject.lower()
    assert "rana" not in omar.body_text.lower().replace("dear omar", "")
    assert factories.link_path(rana) != factories.link_path(omar)
    assert "Amira K." in rana.body_text and course.title in rana.subject


def test_only_the_tokens_hash_is_stored(
    db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family
) -> None:
    token = factories.links_to(db_session, "rana@example.net")[0].removeprefix("/f/")
    assert len(token) == 43  # secrets.token_urlsafe(32)
    link = db_session.scalars(select(FamilyLink)).one()
    assert link.token_hash == hash_token(token)
    for table in ("family_links", "families", "family_contacts", "audit_events"):
        dump = str(db_session.execute(text(f"select * from {table}")).all())  # noqa: S608
        assert token not in dump, table


def test_the_link_is_exchanged_for_a_family_cookie_and_left_behind(
    db_session: Session, client: FlaskClient, family: Family
) -> None:
    path = factories.links_to(db_session, "rana@example.net")[0]
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/f/"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("companion_family=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/f/"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http in tests; see the https test below
    assert "companion_session" not in str(response.headers)

    page = client.get("/f/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Amira K." in body and family.course.title in body
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get_cookie("companion_session") is None
    assert len(audit_events(db_session, "family.link_opened")) == 1


class TestBehindHttps:
    @pytest.fixture
    def app_config(self) -> dict[str, Any]:
        return {"BASE_URL": "https://classes.example.org"}

    def test_the_cookie_is_secure(
        self, db_session: Session, client: FlaskClient, family: Any
    ) -> None:
        path = factories.links_to(db_session, "rana@example.net")[0]
        message = factories.outbox(db_session, "family.link")[0]
        assert f"https://classes.example.org{path}" in message.body_text
        response = client.get(path, base_url="https://classes.example.org")
        assert "Secure" in response.headers["Set-Cookie"]


def test_without_a_session_the_page_asks_for_the_link(client: FlaskClient) -> None:
    response = client.get("/f/")
    assert response.status_code == 401
    assert "open the personal link" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/f/" + "A" * 43,
        "/f/short",
        "/f/" + "x" * 300,
    ],
)
def test_a_tampered_link_says_so_and_shows_nothing(
    db_session: Session, client: FlaskClient, family: Family, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "This link is not valid" in body
    assert "Amira" not in body and family.course.title not in body
    assert "Set-Cookie" not in response.headers


def test_a_tampered_character_of_a_real_link_is_not_valid(
    db_session: Session, client: FlaskClient, family: Family
) -> None:
    path = factories.links_to(db_session, "rana@example.net")[0]
    flipped = path[:-1] + ("A" if path[-1] != "A" else "B")
    assert client.get(flipped).status_code == 404


def test_resending_kills_the_old_link_and_its_sessions(
    db_session: Session, client: FlaskClient, teacher: Any, course: Any, family: Family
) -> None:
    old = factories.links_to(db_session, "rana@example.net")[0]
    assert client.get(old).status_code == 303
    assert client.get("/f/").status_code == 200
    contact = family.contacts[0]

    result = links.resend_link(
        db_session,
        actor=teacher,
        course_id=course.id,
        family_id=family.id,
        contact_id=contact.id,
        now=NOW,
    )
    assert result == "sent"
    new = factories.links_to(db_session, "rana@example.net")[-1]
    assert new != old
    assert client.get("/f/").status_code == 401  # the old link's session ended with it
    gone = client.get(old)
    assert gone.status_code == 410
    assert "replaced by a newer one" in gone.get_data(as_text=True)
    assert "Amira" not in gone.get_data(as_text=True)
    assert client.get(new).status_code == 303
    assert client.get("/f/").status_code == 200
    assert [e.kind for e in audit_events(db_session, "family.link_revoked")] == [
        "family.link_revoked"
    ]
    assert len(audit_events(db_session, "family.link_issued")) == 2
    assert len(audit_events(db_session, "family.link_refused")) == 1


def test_revoking_a_link(
    db_session: Session, client: FlaskClient, lead: Any, course: Any, family: Family
) -> None:
    path = factories.links_to(db_session, "rana@example.net")[0]
    client.get(path)
    contact = family.contacts[0]
    # The safeguarding lead may revoke a link that leaked.
    links.revoke_link(
        db_session,
        actor=lead,
        course_id=course.id,
        family_id=family.id,
        contact_id=contact.id,
        now=NOW,
    )
    assert client.get("/f/").status_code == 401
    response = client.get(path)
    assert response.status_code == 410
    assert "withdrawn" in response.get_data(as_text=True)
    with pytest.raises(Conflict):
        links.revoke_link(
            db_session,
            actor=lead,
            course_id=course.id,
            family_id=family.id,
            contact_id=contact.id,
            now=NOW,
        )
    assert links.link_state(db_session, contact, NOW).state == "revoked"
    (event,) = audit_events(db_session, "family.link_revoked")
    assert event.actor == lead.email


def test_links_wait_for_a_safe_course_and_go_when_it_is(
    db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any
) -> None:
    sandbox.state.set_locks(
        {"waiting_room": False}
    )  # an account lock: Zoom ignores companion's setting
    course = factories.make_course(db_session, zoom, teacher)
    assert not course_is_safe(course)
    family = factories.enrol(db_session, zoom, teacher, course, contacts=TWO_PARENTS)
    assert family.zoom_state == "registered"
    assert factories.outbox(db_session, "family.link") == []
    state = links.link_state(db_session, family.contacts[0], NOW)
    assert state.state == "queued" and "safety" in state.label
    # A resend while not safe kills nothing new and stays queued.
    assert (
        links.resend_link(
            db_session,
            actor=teacher,
            course_id=course.id,
            family_id=family.id,
            contact_id=family.contacts[0].id,
            now=NOW,
        )
        == "queued"
    )
    assert factories.outbox(db_session, "family.link") == []

    sandbox.state.set_locks({"waiting_room": None})
    check(zoom, course, now=NOW + dt.timedelta(minutes=5))  # the drift check, after the commit
    assert course_is_safe(course)
    sent = factories.outbox(db_session, "family.link")
    assert sorted(m.to_address for m in sent) == ["omar@example.net", "rana@example.net"]
    assert all(c.link_owed_since is None for c in family.contacts)


def test_the_job_sends_links_that_are_owed(
    app: Any, db_session: Session, zoom: Any, teacher: Any, course: Any
) -> None:
    course.safety_state = "unverified"
    family = factories.enrol(db_session, zoom, teacher, course)
    assert factories.outbox(db_session, "family.link") == []
    assert jobs.send_owed_links(app, now=NOW) == {}
    course.safety_state = "safe"
    db_session.flush()
    assert jobs.send_owed_links(app, now=NOW) == {"sent": 1}
    assert jobs.send_owed_links(app, now=NOW) == {}
    assert len(factories.outbox(db_session, "family.link")) == 1
    assert family.contacts[0].link_owed_since is None


def test_after_the_course_the_page_says_so_then_the_link_expires(
    db_session: Session, client: FlaskClient, clock: Any, course: Any, family: Family
) -> None:
    path = factories.links_to(db_session, "rana@example.net")[0]
    principal = factories.principal(db_session, family.contacts[0])
    from companion.families import agreement

    version = agreement.current(db_session, family.organisation, now=NOW)
    agreement.accept(db_session, contact=family.contacts[0], agreement_id=version.id, now=NOW)
    assert family_page.family_page(db_session, principal, now=NOW).join_url is not None

    clock.offset = course.ends_at + dt.timedelta(days=1) - dt.datetime.now(dt.UTC)
    assert client.get(path).status_code == 303
    body = client.get("/f/").get_data(as_text=True)
    assert "This course has ended" in body
    assert "zoom.example/w/" not in body
    assert "Passcode" not in body

    clock.offset = course.ends_at + links.LINK_GRACE + dt.timedelta(minutes=1)
    clock.offset -= dt.datetime.now(dt.UTC)
    assert client.get("/f/").status_code == 401
    response = client.get(path)
    assert response.status_code == 410
    assert "expired" in response.get_data(as_text=True)


def test_a_withdrawn_familys_page_says_so_and_shows_no_link(
    db_session: Session, client: FlaskClient, zoom: Any, teacher: Any, course: Any, family: Family
) -> None:
    path = factories.links_to(db_session, "rana@example.net")[0]
    factories.withdraw(db_session, zoom, teacher, family)
    assert client.get(path).status_code == 303
    body = client.get("/f/").get_data(as_text=True)
    assert "has been withdrawn" in body
    assert "zoom.example/w/" not in body
    with pytest.raises(Conflict):
        links.resend_link(
            db_session,
            actor=teacher,
            course_id=course.id,
            family_id=family.id,
            contact_id=family.contacts[0].id,
            now=NOW,
        )


def test_forget_this_device_ends_the_session(
    db_session: Session, client: FlaskClient, family: Family
) -> None:
    from ..conftest import csrf_from

    client.get(factories.links_to(db_session, "rana@example.net")[0])
    token = csrf_from(client.get("/f/").get_data(as_text=True))
    response = client.post("/f/sign-out", data={"csrf_token": token})
    assert response.status_code == 200
    assert client.get("/f/").status_code == 401
    assert db_session.scalars(select(FamilySession)).one().ended_at is not None


def test_a_session_in_use_lives_on_and_an_idle_one_ends(
    db_session: Session, client: FlaskClient, clock: Any, family: Family
) -> None:
    client.get(factories.links_to(db_session, "rana@example.net")[0])
    clock.advance(days=20)
    page = client.get("/f/")
    assert page.status_code == 200
    max_age = int(re.search(r"Max-Age=(\d+)", page.headers["Set-Cookie"]).group(1))
    assert 29 * 86400 < max_age <= 30 * 86400
    clock.advance(days=20)  # 40 days after the link was opened, 20 after its last use
    assert client.get("/f/").status_code == 200
    clock.advance(days=31)
    assert client.get("/f/").status_code == 401
