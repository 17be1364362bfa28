"""Searching and exporting the audit trail: lead and admin only, filters, streamed CSV."""

from __future__ import annotations

import csv
import io

from companion.audit import services
from companion.audit.models import AuditEvent


def test_teacher_cannot_see_the_trail(browser, teacher):
    browser.login(teacher.email)
    assert browser.client.get("/audit/").status_code == 403
    assert browser.client.get("/audit/export.csv").status_code == 403


def test_lead_searches_by_kind_and_person(browser, lead, teacher, db_session):
    services.record(db_session, "course.created", actor=teacher, course_id=7)
    services.record(db_session, "staff.role_changed", actor=lead)
    browser.login(lead.email)
    page = browser.client.get("/audit/?kind=course.created").get_data(as_text=True)
    assert "course.created" in page and "staff.role_changed</td>" not in page
    page = browser.client.get(f"/audit/?person={teacher.email}").get_data(as_text=True)
    assert "course.created" in page
    page = browser.client.get("/audit/?course_id=7").get_data(as_text=True)
    assert "course 7" in page


def test_bad_date_is_a_clear_message(browser, admin):
    browser.login(admin.email)
    r = browser.client.get("/audit/?since=yesterday")
    assert r.status_code == 422
    assert "is not a date" in r.get_data(as_text=True)


def test_export_streams_csv_and_is_recorded(browser, admin, db_session):
    for i in range(30):
        services.record(db_session, "test.bulk", actor=admin, n=i)
    services.record(db_session, "test.formula", actor_label="=cmd|' /C calc'!A0")
    browser.login(admin.email)
    r = browser.client.get("/audit/export.csv?since=2000-01-01&until=2999-12-31")
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert r.is_streamed
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert sum(1 for row in rows if row["kind"] == "test.bulk") == 30
    formula = next(row for row in rows if row["kind"] == "test.formula")
    assert formula["actor"].startswith("'=")
    assert db_session.query(AuditEvent).filter_by(kind="audit.exported").count() == 1
