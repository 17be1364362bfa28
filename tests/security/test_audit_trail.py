"""Issue 6, item 1: every listed kind of event is on the trail, refusals included; an action
whose audit write fails fails with it; the trail is searched by child; a huge export streams.

Already covered elsewhere (referenced, not repeated): sign-ins, failures and throttling
(tests/test_accounts.py, tests/test_sessions.py), role changes and deactivations
(tests/test_staff_admin.py), token use (tests/test_tokens_api.py), course safety changes
(tests/courses/test_safety.py), link issues and revokes (tests/families/test_links.py),
concerns and holds (tests/recordings/test_concerns.py), retrievals with reason and refused
fetches (tests/recordings/test_retrieval.py), deletions by retention
(tests/recordings/test_retention.py), key rotations (tests/recordings/test_vault_keys.py),
a tampered row (tests/audit/test_chain.py).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.accounts.models import User
from companion.audit import queries
from companion.audit import services as audit_services
from companion.audit.models import AuditEvent
from companion.db import utcnow
from companion.families import agreement, audio_only
from companion.families.models import AudioOnlyEvent
from companion.recordings.models import Concern

from ..staff_helpers import audit_events, csrf_of, text
from . import world as w

ROOT = Path(__file__).resolve().parents[2]

# The list, each with the kinds that record it.
REQUIRED = {
    "sign-ins and failures": ("signin.ok", "signin.failed", "signin.throttled"),
    "role changes": ("staff.role_changed",),
    "deactivations": ("staff.deactivated",),
    "token use": ("token.used",),
    "course safety changes": ("course.safety_changed",),
    "link issues and revokes": ("family.link_issued", "family.link_revoked"),
    "agreement acceptances": ("family.agreement_accepted",),
    "audio-only requests": ("family.audio_only_requested",),
    "concerns": ("concern.raised", "concern.note_added", "concern.closed"),
    "holds": ("recording.hold_placed", "recording.hold_released"),
    "recording retrievals": ("recording.access_granted", "recording.retrieved"),
    "disclosures": ("recording.disclosed",),
    "deletions by retention": ("recording.deleted",),
    "key rotations": ("keys.rotated",),
    "denied access": ("access.denied", "recording.access_refused"),
    "recordings that failed their integrity check": ("recording.integrity_failed",),
}


@pytest.fixture
def world(app: Flask, db_session: Session, org: Any, admin: Any, lead: Any) -> w.World:
    return w.build(db_session, app, org, admin, lead)


def test_every_listed_kind_is_written_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "companion").rglob("*.py"))
    missing = [
        f"{what}: {kind}"
        for what, kinds in REQUIRED.items()
        for kind in kinds
        if f'"{kind}"' not in source
    ]
    assert missing == []


def _form_token(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_a_parent_refused_another_familys_class_is_recorded(
    app: Flask, db_session: Session, world: w.World
) -> None:
    parent = w.parent_client(app, db_session, world.family_a)
    token = _form_token(text(parent.get("/f/")))
    later_y = ev_class(world.course_y, 1)
    response = parent.post(
        f"/f/classes/{later_y.id}/audio-only", data={"csrf_token": token, "action": "request"}
    )
    assert response.status_code == 404
    assert w.SECRET_CHILD not in text(response)
    assert db_session.scalars(select(AudioOnlyEvent)).all() == []
    [event] = audit_events(db_session, "access.denied")
    assert event.family_id == world.family_a.id
    assert event.actor == f"parent (contact {world.family_a.contacts[0].id})"
    assert json.loads(event.detail)["path"] == f"/f/classes/{later_y.id}/audio-only"


def ev_class(course: Any, index: int) -> Any:
    return sorted(course.classes, key=lambda c: c.starts_at)[index]


def test_a_teacher_refused_another_course_is_recorded(
    app: Flask, db_session: Session, world: w.World
) -> None:
    teacher = w.staff_client(app, world.teacher_x)
    for path in (
        f"/courses/{world.course_y.id}",
        f"/courses/{world.course_y.id}/families/{world.family_b.id}",
    ):
        response = teacher.get(path)
        assert response.status_code in (403, 404), path
        assert w.SECRET_CHILD not in text(response) and w.SECRET_COURSE not in text(response)
    events = audit_events(db_session, "access.denied")
    assert [e.actor_user_id for e in events] == [world.teacher_x.id] * 2
    assert {json.loads(e.detail)["status"] for e in events} == {404}


def test_a_refused_recording_fetch_is_recorded(
    app: Flask, db_session: Session, world: w.World
) -> None:
    token = w.foreign_grant(db_session, world)
    lead = w.staff_client(app, world.lead)
    response = lead.get(f"/recordings/open/{token}/file")
    assert response.status_code == 404
    [event] = audit_events(db_session, "recording.access_refused")
    assert json.loads(event.detail)["problem"] == "grant of another person or browser"
    assert audit_events(db_session, "recording.retrieved") == []


def test_agreement_acceptance_and_audio_only_request_are_recorded(
    app: Flask, db_session: Session, world: w.World
) -> None:
    now = utcnow()
    version = agreement.publish(
        db_session, actor=world.admin, body="We keep children safe online. " * 3, now=now
    )
    contact = world.family_a.contacts[0]
    agreement.accept(db_session, contact=contact, agreement_id=version.id, now=now, ip="10.0.0.9")
    [accepted] = audit_events(db_session, "family.agreement_accepted")
    assert accepted.family_id == world.family_a.id and accepted.ip == "10.0.0.9"

    from ..factories import principal

    audio_only.request_audio_only(
        db_session, principal(db_session, contact, now), class_id=None, action="request", now=now
    )
    [asked] = audit_events(db_session, "family.audio_only_requested")
    assert asked.family_id == world.family_a.id and asked.course_id == world.course_x.id


def _break_the_trail(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_event: Any) -> str:
        raise RuntimeError("the audit table is unavailable")

    monkeypatch.setattr(audit_services, "event_hash", refuse)


def test_a_role_change_fails_when_its_audit_write_fails(
    app: Flask, db_session: Session, world: w.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = w.staff_client(app, world.admin)
    csrf = csrf_of(admin, "/staff")
    before = db_session.scalar(select(func.count(AuditEvent.id)))
    _break_the_trail(monkeypatch)
    response = admin.post(
        f"/staff/{world.teacher_x.id}/role",
        data={"role": "safeguarding_lead", "csrf_token": csrf},
    )
    assert response.status_code == 500
    db_session.expire_all()
    assert db_session.get(User, world.teacher_x.id).role == "teacher"
    assert db_session.scalar(select(func.count(AuditEvent.id))) == before


def test_a_concern_is_not_kept_when_its_audit_write_fails(
    app: Flask, db_session: Session, world: w.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = w.staff_client(app, world.teacher_x)
    csrf = csrf_of(teacher, "/concerns/new")
    _break_the_trail(monkeypatch)
    response = teacher.post(
        "/concerns/new",
        data={
            "class_session_id": world.class_x.id,
            "what_happened": "A child was upset by another child's words.",
            "when": "5",
            "csrf_token": csrf,
        },
    )
    assert response.status_code == 500
    db_session.expire_all()
    assert (
        db_session.scalars(select(Concern).where(Concern.course_id == world.course_x.id)).all()
        == []
    )


def test_the_trail_is_searched_by_child(app: Flask, db_session: Session, world: w.World) -> None:
    for fam in (world.family_a, world.family_b):
        audit_services.record(
            db_session,
            "family.contact_saved",
            actor=world.admin,
            family_id=fam.id,
            course_id=fam.course_id,
        )
    db_session.commit()
    f = queries.AuditFilter(
        organisation_id=world.org.id,
        family_ids=queries.families_of_child(db_session, world.org.id, "zebedee quasar"),
    )
    found = queries.search(db_session, f)
    assert found and {e.family_id for e in found} == {world.family_b.id}
    none = queries.families_of_child(db_session, world.org.id, "Nobody Atall")
    assert queries.search(db_session, queries.AuditFilter(world.org.id, family_ids=none)) == []

    lead = w.staff_client(app, world.lead)
    page = text(lead.get("/audit/", query_string={"child": "Zebedee"}))
    assert f"family {world.family_b.id}" in page
    assert f"family {world.family_a.id}" not in page


def test_a_huge_export_streams_in_batches(
    app: Flask, db_session: Session, world: w.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 100 instead of the export's 1,000: the same bound, at a tenth of the rows.
    for i in range(250):
        audit_services.record(db_session, "test.bulk", actor=world.admin, n=i)
    db_session.commit()
    batches: list[int] = []
    real_iter = queries.iter_all

    def spy(session: Session, f: Any, *, batch: int = 1000) -> Any:
        for row in real_iter(session, f, batch=100):
            # Rows of earlier batches are let go: what the session holds stays bounded.
            batches.append(len(session.identity_map))
            yield row

    monkeypatch.setattr(queries, "iter_all", spy)
    lead = w.staff_client(app, world.lead)
    response = lead.get(
        "/audit/export.csv", query_string={"since": "2000-01-01", "until": "2999-12-31"}
    )
    assert response.status_code == 200 and response.is_streamed
    rows = list(csv.reader(io.StringIO(text(response))))
    assert sum(1 for r in rows if r[3] == "test.bulk") == 250
    assert max(batches) <= 100 + 50
    assert re.match(r"^id,at_utc", rows[0][0] + "," + rows[0][1])
