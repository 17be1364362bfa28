"""Issue 6, item 6: hostile names and titles (markup, scripts, very long, right-to-left
override) are refused clearly when too long, and shown escaped on every page that shows them:
staff pages, the family page, the safeguarding workspace, the outbox, the calendar file and
CSV exports (no formula injection)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from companion.accounts import services as accounts
from companion.audit import services as audit_services

from ..staff_helpers import csrf_of, text
from . import world as w

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
RLO = "\u202etxt.exe"
FORMULA = '=HYPERLINK("http://evil.example","x")'
RAW = (SCRIPT, IMG, "<img src=x", "<script>")


@pytest.fixture
def world(app: Flask, db_session: Session, org: Any, admin: Any, lead: Any) -> w.World:
    found = w.build(db_session, app, org, admin, lead)
    # What staff typed into the forms (the forms keep it as it was typed; display escapes it).
    found.course_x.title = f"Art {SCRIPT}"
    found.family_a.child_first_name = f"Amira{IMG}"[:64]
    found.family_a.child_last_name = f"Alpha{RLO}"
    found.family_a.contacts[0].name = f"Rana {SCRIPT}"
    found.teacher_x.name = f"Xavier {IMG}"
    db_session.commit()
    return found


def assert_escaped(body: str, where: str) -> None:
    for raw in RAW:
        assert raw not in body, f"{where} shows {raw!r} unescaped"


def test_hostile_values_are_escaped_on_every_page(
    app: Flask, db_session: Session, world: w.World
) -> None:
    cx, fa = world.course_x, world.family_a
    teacher = w.staff_client(app, world.teacher_x)
    # A concern and a note with markup, entered through the forms.
    csrf = csrf_of(teacher, "/concerns/new")
    response = teacher.post(
        "/concerns/new",
        data={
            "class_session_id": world.class_x.id,
            "what_happened": f"The child typed {SCRIPT} and {IMG} in the chat.",
            "when": "7",
            "csrf_token": csrf,
        },
    )
    assert response.status_code == 302, text(response)[:500]
    concern_path = response.headers["Location"]
    concern_id = int(concern_path.rstrip("/").rsplit("/", 1)[1])
    lead = w.staff_client(app, world.lead)
    page = f"/safeguarding/concerns/{concern_id}"
    assert (
        lead.post(
            f"{page}/notes",
            data={"body": f"Note {SCRIPT} {RLO}", "csrf_token": csrf_of(lead, page)},
        ).status_code
        == 303
    )
    assert (
        lead.post(
            f"{page}/tell-family",
            data={
                "family_id": fa.id,
                "subject": f"About {SCRIPT}",
                "body": f"Dear parents {IMG} of {fa.child_first_name}.",
                "csrf_token": csrf_of(lead, page),
            },
        ).status_code
        == 303
    )
    admin = w.staff_client(app, world.admin)
    parent = w.parent_client(app, db_session, fa)

    pages = [
        (teacher, "/courses/"),
        (teacher, f"/courses/{cx.id}"),
        (teacher, f"/courses/{cx.id}/families"),
        (teacher, f"/courses/{cx.id}/families/{fa.id}"),
        (teacher, "/families/"),
        (teacher, "/concerns/"),
        (teacher, concern_path),
        (lead, "/safeguarding/"),
        (lead, page),
        (lead, "/safeguarding/recordings"),
        (lead, f"/safeguarding/recordings?child={SCRIPT}"),
        (lead, "/concerns/"),
        (lead, f"/courses/{cx.id}/classes/{world.class_x.id}/record"),
        (lead, "/audit/"),
        (admin, "/staff"),
        (admin, "/admin/outbox/"),
        (admin, "/admin/security"),
        (parent, "/f/"),
    ]
    for client, path in pages:
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code}"
        assert_escaped(text(response), path)
    # The escaped form is there: the value is shown, not dropped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text(teacher.get("/courses/"))

    # Every message in the outbox, as the admin reads it.
    from sqlalchemy import select

    from companion.mail.models import OutboxMessage

    for message in db_session.scalars(select(OutboxMessage)):
        assert_escaped(text(admin.get(f"/admin/outbox/{message.id}")), f"outbox {message.id}")

    # The calendar file is text/calendar, not HTML; a title cannot break out of its line.
    ics = parent.get("/f/calendar.ics")
    assert ics.status_code == 200 and ics.mimetype == "text/calendar"
    for line in text(ics).splitlines():
        assert not line.startswith(("BEGIN:VALARM", "ATTACH", "URL:javascript")), line


def test_csv_exports_defuse_formulas(app: Flask, db_session: Session, world: w.World) -> None:
    audit_services.record(
        db_session, "test.hostile", actor_label=FORMULA, family_id=world.family_a.id, note=SCRIPT
    )
    db_session.commit()
    lead = w.staff_client(app, world.lead)
    body = text(lead.get("/audit/export.csv", query_string={"kind": "test.hostile"}))
    [row] = [r for r in csv.reader(io.StringIO(body)) if len(r) > 3 and r[3] == "test.hostile"]
    assert row[4] == "'" + FORMULA
    for cell in row:
        assert not cell.startswith(("=", "+", "-", "@")), cell


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/courses", "title"),
        ("/api/v1/families", "child_first_name"),
        ("/api/v1/families", "child_last_name"),
    ],
)
def test_very_long_values_are_refused_clearly_through_the_api(
    app: Flask, db_session: Session, world: w.World, path: str, field: str
) -> None:
    token = accounts.create_token(db_session, user=world.teacher_x, name="hostile")
    db_session.commit()
    body: dict[str, Any] = {
        "course_id": world.course_x.id,
        "child_first_name": "Ann",
        "child_last_name": "B",
        "contacts": [{"name": "Parent", "email": "p@example.net"}],
        "title": "A course",
    }
    body[field] = "x" * 10_000
    response = app.test_client().post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (400, 422), response.get_data(as_text=True)[:300]
    error = response.json["error"]
    assert error["message"] and "x" * 200 not in error["message"]


def test_very_long_text_in_the_workspace_is_refused_clearly(
    app: Flask, db_session: Session, world: w.World
) -> None:
    lead = w.staff_client(app, world.lead)
    page = f"/safeguarding/concerns/{world.concern_y.id}"
    response = lead.post(
        f"{page}/notes", data={"body": "y" * 10_000, "csrf_token": csrf_of(lead, page)}
    )
    assert response.status_code == 422
    assert "Please keep it under 5000 characters." in text(response)
    from sqlalchemy import select

    from companion.safeguarding.models import ConcernNote, FamilyNotice

    assert db_session.scalars(select(ConcernNote)).all() == []  # the text comes back to edit
    response = lead.post(
        f"{page}/tell-family",
        data={
            "family_id": world.family_b.id,
            "subject": "s" * 10_000,
            "body": "A message long enough.",
            "csrf_token": csrf_of(lead, page),
        },
    )
    assert response.status_code == 422 and "under 200 characters" in text(response)
    assert db_session.scalars(select(FamilyNotice)).all() == []
