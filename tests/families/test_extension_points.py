"""What issue 7 builds on: a column of the admit list and a panel in each class row of the family
page (e.g. "an adult is present" for the class about to start), added by connecting to
companion.signals, and finding a family from the registrant id Zoom's webhooks carry."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from jinja2 import ChoiceLoader, DictLoader
from sqlalchemy.orm import Session

from companion import signals
from companion.courses import timetable
from companion.courses.timetable import class_sessions
from companion.families import access, admit, extensions
from companion.families.models import Family

from .. import factories
from ..staff_helpers import sign_in, text

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def test_an_admit_column(
    db_session: Session, client: Any, teacher: Any, course: Any, family: Family
) -> None:
    column = extensions.AdmitColumn(
        "probe", "Probe column", lambda session, cls, families: {family.id: "yes, 16:58"}
    )
    first = class_sessions(course)[0]
    with signals.admit_columns.connected_to(lambda _sender: column):
        (row,) = admit.admit_list(db_session, first, now=factories.NOW)
        assert row.extras["probe"] == "yes, 16:58"
        # The evidence package's own column is there too, connected by create_app.
        assert [c.key for c in extensions.admit_columns()] == ["adult", "probe"]
        sign_in(client, teacher.email)
        page = text(client.get(f"/courses/{course.id}/classes/{first.id}/admit"))
    assert "<th>Probe column</th>" in page and "<td>yes, 16:58</td>" in page
    assert [c.key for c in extensions.admit_columns()] == ["adult"]
    (row,) = admit.admit_list(db_session, first, now=factories.NOW)
    assert "probe" not in row.extras


def test_a_family_class_panel(app: Flask, db_session: Session, client: Any, family: Family) -> None:
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader(
                {
                    "probe_panel.html": '<form method="post" action="/f/x">'
                    '<input name="csrf_token" value="{{ family_csrf_token() }}">'
                    "{{ value }}</form>"
                }
            ),
            app.jinja_env.loader,
        ]
    )
    first = timetable.class_sessions(family.course)[0]
    panel = extensions.ClassPanel(
        "probe",
        "probe_panel.html",
        lambda session, principal, classes, now: {first.id: "Is a probe in the room?"},
    )
    with signals.family_class_panels.connected_to(lambda _sender: panel):
        client.get(factories.links_to(db_session, "rana@example.net")[0])
        page = text(client.get("/f/"))
    assert page.count("Is a probe in the room?") == 1
    assert 'class="class-panel panel-probe"' in page
    assert "Is a probe in the room?" not in text(client.get("/f/"))


def test_the_family_of_a_registrant(db_session: Session, family: Family) -> None:
    assert access.family_for_registrant(db_session, family.zoom_registrant_id) is family
    assert access.family_for_registrant(db_session, "nobody") is None
    assert access.family_for_registrant(db_session, "") is None
