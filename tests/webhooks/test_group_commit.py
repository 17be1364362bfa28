"""Issue 10, the webhook benchmark: deliveries arriving together share one commit (intake.py)
and a few statements (services.store_all).

On a committed database of its own (SQLite or the suite's PostgreSQL), with real commits: while
one delivery's commit is held, the deliveries arriving meanwhile wait and are then stored in one
transaction with one commit, each answered with its own event (a redelivery within the batch
recognised as one); a batch whose commit fails answers none of its deliveries, keeps nothing,
and the next delivery is stored as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.db import get_engine, utcnow
from companion.webhooks import services
from companion.webhooks.intake import GroupCommit, Receipt, intake
from companion.webhooks.models import WebhookEvent

from ..conftest import make_app, own_database_url
from ..polling import poll
from .test_intake import event, raw

GATE_SECONDS = 20


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[Flask]:
    app = make_app(own_database_url(tmp_path, "group", migrated=True), tmp_path, TESTING=False)
    yield app
    get_engine(app).dispose()


class CommitGate:
    """Counts the engine's commits and holds the first one until released."""

    def __init__(self, app: Flask):
        self.engine = get_engine(app)
        self.commits = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        sa_event.listen(self.engine, "commit", self._on_commit)

    def _on_commit(self, _conn: Any) -> None:
        self.commits += 1
        if self.commits == 1:
            self.entered.set()
            assert self.release.wait(GATE_SECONDS), "the test never released the commit"

    def close(self) -> None:
        self.release.set()
        sa_event.remove(self.engine, "commit", self._on_commit)


def deliver(intake_: GroupCommit, uuid: str, out: dict[str, Any]) -> threading.Thread:
    document = event("meeting.participant_joined", uuid=uuid)

    def run() -> None:
        try:
            out[uuid] = intake_.store(document, raw(document), now=utcnow())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out[uuid] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stored(app: Flask) -> int:
    with Session(get_engine(app)) as session:
        return session.scalar(select(func.count(WebhookEvent.id))) or 0


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(GATE_SECONDS + 10)
        assert not thread.is_alive(), "a delivery never finished"


def test_deliveries_arriving_during_a_commit_share_the_next_one(live_app: Flask) -> None:
    shared = intake(live_app)
    gate = CommitGate(live_app)
    out: dict[str, Any] = {}
    try:
        threads = [deliver(shared, "FirstAAAAAAAAAAAAAAAAA==", out)]
        assert gate.entered.wait(10)
        uuids = [f"Batch{n:02d}AAAAAAAAAAAAAAA==" for n in range(8)]
        # Zoom delivering one event twice at the same moment: the second is a redelivery.
        uuids.append(uuids[0])
        threads += [deliver(shared, uuid, out) for uuid in uuids[:-1]]
        poll(lambda: shared.queued == 8, "eight deliveries waiting for the held commit")
        threads.append(deliver(shared, uuids[-1], out))
        poll(lambda: shared.queued == 9, "the repeated delivery waiting too")
        assert not out, "a delivery was answered before its commit"
        gate.release.set()
        join_all(threads)
    finally:
        gate.close()
    assert all(isinstance(r, Receipt) for r in out.values()), out
    # The held commit, then one for all nine that waited: not one each.
    assert gate.commits == 2
    assert stored(live_app) == 9
    assert len({r.event_id for r in out.values()}) == 9
    with Session(get_engine(live_app)) as session:
        repeated = session.get(WebhookEvent, out[uuids[0]].event_id)
        assert repeated is not None and repeated.redeliveries == 1


def test_a_batch_whose_commit_fails_answers_none_and_keeps_nothing(
    live_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = intake(live_app)
    gate = CommitGate(live_app)
    dialect = get_engine(live_app).dialect
    real_commit = dialect.do_commit
    calls: list[None] = []

    def commit(dbapi_connection: Any) -> None:
        calls.append(None)
        if len(calls) == 2:  # the commit after the held one: the batch of three
            raise OSError("the disk is full")
        real_commit(dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", commit)
    out: dict[str, Any] = {}
    try:
        threads = [deliver(shared, "HeldAAAAAAAAAAAAAAAAAA==", out)]
        assert gate.entered.wait(10)
        lost = [f"Lost{n}AAAAAAAAAAAAAAAAA==" for n in range(3)]
        threads += [deliver(shared, uuid, out) for uuid in lost]
        poll(lambda: shared.queued == 3, "three deliveries waiting for the held commit")
        gate.release.set()
        join_all(threads)
    finally:
        gate.close()
    assert isinstance(out["HeldAAAAAAAAAAAAAAAAAA=="], Receipt)
    assert all(isinstance(out[uuid], OSError) for uuid in lost), out
    assert stored(live_app) == 1
    # The intake goes on: the next delivery (Zoom retrying one of them) is stored.
    join_all([deliver(shared, lost[0], out)])
    assert isinstance(out[lost[0]], Receipt) and not out[lost[0]].duplicate
    assert stored(live_app) == 2


def keep(document: dict[str, Any]) -> tuple[dict[str, Any], bytes, Any]:
    return document, raw(document), utcnow()


def test_store_all_stores_each_event_once_and_counts_the_repeats(db_session: Session) -> None:
    first, second, third = (event(uuid=f"All{n}AAAAAAAAAAAAAAAAAA==") for n in range(3))
    already = services.store(db_session, *keep(second)[:2], now=utcnow()).event
    kept = services.store_all(db_session, [keep(first), keep(second), keep(first), keep(third)])
    assert kept is not None
    assert [k.duplicate for k in kept] == [False, True, True, False]
    assert kept[0].event_id == kept[2].event_id and kept[1].event_id == already.id
    assert len({k.event_id for k in kept}) == 3
    db_session.expire_all()
    rows = {e.id: e for e in db_session.scalars(select(WebhookEvent))}
    assert len(rows) == 3
    assert rows[kept[0].event_id].redeliveries == 1 and rows[already.id].redeliveries == 1
    assert rows[kept[3].event_id].redeliveries == 0
    assert rows[kept[3].event_id].body == raw(third)
    assert rows[kept[3].event_id].status == "pending"


def test_store_all_changes_nothing_when_another_connection_stored_one_meanwhile(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look-up found nothing, then the insert met the other connection's row: None, and
    the batch is stored one by one instead (GroupCommit._store_each, services.store)."""
    theirs, ours = event(uuid="TheirsAAAAAAAAAAAAAAAA=="), event(uuid="OursAAAAAAAAAAAAAAAAAA==")
    services.store(db_session, theirs, raw(theirs), now=utcnow())
    real_execute = db_session.execute
    looked: list[bool] = []

    def execute_missing_once(statement: Any, *args: Any, **kwargs: Any) -> Any:
        if not looked:
            looked.append(True)
            real_execute(statement, *args, **kwargs).all()
            return real_execute(
                select(WebhookEvent.dedupe_key, WebhookEvent.id, WebhookEvent.status).where(
                    WebhookEvent.id == -1
                )
            )
        return real_execute(statement, *args, **kwargs)

    monkeypatch.setattr(db_session, "execute", execute_missing_once)
    assert services.store_all(db_session, [keep(ours), keep(theirs)]) is None
    monkeypatch.undo()
    db_session.expire_all()
    assert db_session.scalar(select(func.count(WebhookEvent.id))) == 1
    assert db_session.scalars(select(WebhookEvent)).one().redeliveries == 0
