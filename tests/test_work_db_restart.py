"""The work engine when PostgreSQL restarts mid-run: every item is left as it was or moved one
step on, and the next run finishes it.

The server the suite runs against is restarted for real (``scripts/pg-test.sh restart``), which
cuts every connection; the engine's pool must notice (pre-ping) instead of failing the next
transaction on a dead connection.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import MetaData, String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from companion import migrate, work
from companion.db import UTCDateTime, job_session, make_engine, utcnow

from .conftest import _live_database_url, make_app

# It cuts every connection to the server, other tests' too: it runs alone (scripts/test.sh).
pytestmark = [pytest.mark.postgres, pytest.mark.serial]

ROOT = Path(__file__).resolve().parent.parent


class _Base(DeclarativeBase):
    metadata = MetaData()


class Chore(_Base):
    """A work item of this test only (its own table, beside the migrated schema)."""

    __tablename__ = "test_restart_chores"
    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    calls: Mapped[int] = mapped_column(default=0)


QUEUE = work.Queue(
    name="test.chores",
    model=Chore,
    id=Chore.id,
    attempts=Chore.attempts,
    due=Chore.due,
    claimed_until=Chore.claimed_until,
    ready=lambda: Chore.state == "pending",
)


def restart_postgres() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "pg-test.sh"), "restart"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture
def pg_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    if not os.environ.get("COMPANION_TEST_DATABASE_URL", "").startswith("postgres"):
        pytest.skip("restarts the suite's PostgreSQL server (runs in the PostgreSQL half)")
    if not (ROOT / ".tmp" / "pg-test.env").exists():
        pytest.skip("the PostgreSQL server was not started by scripts/pg-test.sh")
    folder = tmp_path_factory.mktemp("restart")
    url = _live_database_url(folder)
    engine = make_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(url, connection=conn)
        _Base.metadata.create_all(conn)
    engine.dispose()
    app = make_app(url, folder)
    yield app
    app.extensions["companion.engine"].dispose()


class Step:
    """Counts its calls in the row; ``restart_in`` says in which phase the server restarts."""

    def __init__(self, restart_in: str | None = None):
        self.restart_in = restart_in
        self.calls = 0

    def prepare(self, session: Session, item_id: int, now: dt.datetime) -> int | None:
        return item_id

    def call(self, plan: int) -> str:
        self.calls += 1
        if self.restart_in == "call":
            restart_postgres()
        return "done"

    def record(self, session: Session, item_id: int, plan: int, result: str, now: Any) -> str:
        chore = session.get(Chore, item_id)
        assert chore is not None
        if self.restart_in == "record":
            # The transaction has begun on a connection the restart now cuts.
            self.restart_in = None
            restart_postgres()
        chore.calls += 1
        chore.state = result
        work.release(chore, QUEUE)
        return result

    def failed(self, session: Session, item_id: int, plan: int, exc: Exception, now: Any) -> str:
        chore = session.get(Chore, item_id)
        assert chore is not None
        work.postpone(chore, QUEUE, now)
        return "postponed"


def _add_chore(app: Flask) -> int:
    with app.app_context(), job_session(app) as session:
        chore = Chore()
        session.add(chore)
        session.flush()
        return chore.id


def _chore(app: Flask, chore_id: int) -> Chore:
    with app.app_context(), job_session(app) as session:
        chore = session.scalars(select(Chore).where(Chore.id == chore_id)).one()
        session.expunge(chore)
        return chore


def _server_started(app: Flask) -> Any:
    with app.app_context(), job_session(app) as session:
        return session.execute(text("SELECT pg_postmaster_start_time()")).scalar()


def test_a_restart_during_the_call_does_not_lose_the_result(pg_app: Flask) -> None:
    chore_id = _add_chore(pg_app)
    started = _server_started(pg_app)
    step = Step(restart_in="call")
    # The claim's connection went back to the pool before the call and died with the restart;
    # recording the result must get a live one.
    assert work.run(pg_app, QUEUE, step, [chore_id]) == {"done": 1}
    chore = _chore(pg_app, chore_id)
    assert (chore.state, chore.calls, chore.claimed_until) == ("done", 1, None)
    assert _server_started(pg_app) > started, "the server did not really restart"


def test_a_restart_while_recording_leaves_the_item_to_the_next_run(pg_app: Flask) -> None:
    chore_id = _add_chore(pg_app)
    step = Step(restart_in="record")
    # The record transaction dies with its connection: nothing of it is kept, the claim stays.
    assert work.run(pg_app, QUEUE, step, [chore_id]) == {"errors": 1}
    chore = _chore(pg_app, chore_id)
    assert (chore.state, chore.calls) == ("pending", 0)
    assert chore.claimed_until is not None
    # Nobody else starts it while the claim holds; once it runs out, the next run finishes.
    assert work.run(pg_app, QUEUE, step, [chore_id]) == {"skipped": 1}
    later = utcnow() + QUEUE.claim_for + dt.timedelta(seconds=1)
    assert work.run(pg_app, QUEUE, step, [chore_id], now=later) == {"done": 1}
    chore = _chore(pg_app, chore_id)
    assert (chore.state, chore.calls) == ("done", 1)
