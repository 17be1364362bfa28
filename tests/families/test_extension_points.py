"""What issue 7 builds on: a column of the admit list and a panel in each class row of the family
page (e.g. "an adult is present" for the class about to start), and finding a family from the
registrant id Zoom's webhooks carry."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from jinja2 import ChoiceLoader, DictLoader
from sqlalchemy.orm import Session

from companion.courses import services as courses
from companion.families import services
from companion.families.models import Family

from ..staff_helpers import sign_in, text
from . import helpers

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def test_an_admit_column(
    monkeypatch: pytest.MonkeyPatch,
    db_session: Session,
    client: Any,
    teacher: Any,
    course: Any,
    family: Family,
) -> None:
    monkeypatch.setattr(services, "ADMIT_COLUMNS", [])
    services.register_admit_column(
        services.AdmitColumn(
            "adult", "Adult present", lambda session, cls, families: {family.id: "yes, 16:58"}
        )
    )
    first = courses.class_sessions(course)[0]
    (row,) = services.admit_list(db_session, first, now=helpers.NOW)
    assert row.extras == {"adult": "yes, 16:58"}
    sign_in(client, teacher.email)
    page = text(client.get(f"/courses/{course.id}/classes/{first.id}/admit"))
    assert "<th>Adult present</th>" in page and "<td>yes, 16:58</td>" in page


def test_a_family_class_panel(
    monkeypatch: pytest.MonkeyPatch, app: Flask, db_session: Session, client: Any, family: Family
) -> None:
    monkeypatch.setattr(services, "FAMILY_CLASS_PANELS", [])
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader(
                {
                    "adult_panel.html": '<form method="post" action="/f/x">'
                    '<input name="csrf_token" value="{{ family_csrf_token() }}">'
                    "{{ value }}</form>"
                }
            ),
            app.jinja_env.loader,
        ]
    )
    first = courses.class_sessions(family.course)[0]
    services.register_family_class_panel(
        services.ClassPanel(
            "adult",
            "adult_panel.html",
            lambda session, principal, classes, now: {first.id: "Is an adult in the room?"},
        )
    )
    client.get(helpers.links_to(db_session, "rana@example.net")[0])
    page = text(client.get("/f/"))
    assert page.count("Is an adult in the room?") == 1
    assert 'class="class-panel panel-adult"' in page


def test_the_family_of_a_registrant(db_session: Session, family: Family) -> None:
    assert services.family_for_registrant(db_session, family.zoom_registrant_id) is family
    assert services.family_for_registrant(db_session, "nobody") is None
    assert services.family_for_registrant(db_session, "") is None
