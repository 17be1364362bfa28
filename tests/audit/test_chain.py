"""The hash chain detects edited, deleted and reordered rows, and names them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, update

from companion.audit import services
from companion.audit.models import AuditEvent, AuditHead


def _write(db_session, n=5, actor=None):
    return [services.record(db_session, "test.event", actor=actor, n=i) for i in range(n)]


def test_intact_chain_verifies(db_session, admin):
    _write(db_session, 5, admin)
    assert list(services.verify(db_session)) == []


def test_each_row_links_to_the_previous(db_session):
    rows = _write(db_session, 3)
    assert rows[1].prev_hash == rows[0].hash
    assert rows[2].prev_hash == rows[1].hash
    assert rows[0].hash == services.event_hash(rows[0])


def test_edited_row_is_named(db_session):
    rows = _write(db_session, 5)
    db_session.execute(
        update(AuditEvent).where(AuditEvent.id == rows[2].id).values(detail='{"n": 99}')
    )
    db_session.expire_all()
    problems = list(services.verify(db_session))
    assert [(p.event_id, "changed" in p.problem) for p in problems] == [(rows[2].id, True)]


def test_deleted_row_is_named(db_session):
    rows = _write(db_session, 5)
    db_session.execute(delete(AuditEvent).where(AuditEvent.id == rows[1].id))
    db_session.expire_all()
    problems = list(services.verify(db_session))
    assert any(p.event_id == rows[1].id and "missing" in p.problem for p in problems)
    assert any(p.event_id == rows[2].id for p in problems)


def test_deleted_tail_is_detected(db_session):
    rows = _write(db_session, 4)
    db_session.execute(delete(AuditEvent).where(AuditEvent.id == rows[-1].id))
    db_session.expire_all()
    problems = list(services.verify(db_session))
    assert any("newest rows were removed" in p.problem for p in problems)


def test_reordered_rows_are_detected(db_session):
    rows = _write(db_session, 4)
    a, b = rows[1], rows[2]
    # Swap the contents of two rows, keeping their ids: as if someone reordered history.
    fields = ("at", "kind", "detail", "prev_hash", "hash")
    va = {f: getattr(a, f) for f in fields}
    vb = {f: getattr(b, f) for f in fields}
    db_session.execute(update(AuditEvent).where(AuditEvent.id == a.id).values(hash="x" * 64))
    db_session.execute(update(AuditEvent).where(AuditEvent.id == b.id).values(**va))
    db_session.execute(update(AuditEvent).where(AuditEvent.id == a.id).values(**vb))
    db_session.expire_all()
    problems = list(services.verify(db_session))
    assert {p.event_id for p in problems} >= {a.id, b.id}


def test_backdated_row_is_detected(db_session):
    rows = _write(db_session, 3)
    earlier = rows[0].at - dt.timedelta(days=1)
    db_session.execute(update(AuditEvent).where(AuditEvent.id == rows[2].id).values(at=earlier))
    db_session.expire_all()
    ids = {p.event_id for p in services.verify(db_session)}
    assert rows[2].id in ids


def test_head_tracks_the_tip(db_session):
    rows = _write(db_session, 2)
    head = db_session.get(AuditHead, 1)
    assert head.last_id == rows[-1].id and head.last_hash == rows[-1].hash


def test_the_daily_check_tells_only_the_organisation_whose_rows_broke(app, db_session):
    from sqlalchemy import select

    from companion.audit.jobs import verify_chain
    from companion.mail.models import OutboxMessage

    from .. import factories

    ours, theirs = factories.organisation(db_session), factories.organisation(db_session)
    our_admin = factories.user(db_session, ours, role="admin")
    our_lead = factories.user(db_session, ours, role="safeguarding_lead")
    their_admin = factories.user(db_session, theirs, role="admin")
    factories.user(db_session, theirs, role="safeguarding_lead")
    our_rows = _write(db_session, 3, our_admin)
    _write(db_session, 3, their_admin)
    broken, ours_told = our_rows[1].id, sorted([our_admin.email, our_lead.email])
    db_session.execute(update(AuditEvent).where(AuditEvent.id == broken).values(detail="{}"))
    db_session.expire_all()

    assert verify_chain(app) == 1
    told = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "audit_chain_broken")
    ).all()
    assert sorted(m.to_address for m in told) == ours_told
    assert all(f"row {broken}:" in m.body_text for m in told)


def test_a_break_no_row_can_be_tied_to_is_told_to_every_organisation(app, db_session):
    from sqlalchemy import select

    from companion.audit.jobs import verify_chain
    from companion.mail.models import OutboxMessage

    from .. import factories

    admins = [
        factories.user(db_session, factories.organisation(db_session), role="admin")
        for _ in range(2)
    ]
    rows = _write(db_session, 2, admins[0]) + _write(db_session, 2, admins[1])
    emails = sorted(a.email for a in admins)
    db_session.execute(delete(AuditEvent).where(AuditEvent.id == rows[-1].id))
    db_session.expire_all()

    assert verify_chain(app) >= 1
    told = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "audit_chain_broken")
    ).all()
    assert sorted(m.to_address for m in told) == emails
    assert all("newest rows were removed" in m.body_text for m in told)
