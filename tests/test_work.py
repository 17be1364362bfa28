"""The work engine itself (companion/work.py), on a table of its own in a database of its own,
with real commits and several connections: SQLite by default, PostgreSQL when
COMPANION_TEST_DATABASE_URL names one."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, MetaData, String, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from companion import work
from companion.db import NAMING_CONVENTION, SessionProvider, UTCDateTime, make_engine, utcnow

from .conftest import own_database_url


class WorkBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime}


class Item(WorkBase):
    __tablename__ = "work_test_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    attempts: Mapped[int] = mapped_column(default=0)
    due: Mapped[dt.datetime | None]
    claimed_until: Mapped[dt.datetime | None]
    result: Mapped[str] = mapped_column(String(100), default="")
    note: Mapped[str] = mapped_column(String(100), default="")


QUEUE = work.Queue(
    name="test_items",
    model=Item,
    id=Item.id,
    attempts=Item.attempts,
    due=Item.due,
    claimed_until=Item.claimed_until,
    ready=lambda: Item.state == "waiting",
    claim_for=dt.timedelta(minutes=5),
    backoff_base=dt.timedelta(seconds=10),
    backoff_cap=dt.timedelta(minutes=10),
)

POSTGRES = os.environ.get("COMPANION_TEST_DATABASE_URL", "").startswith("postgres")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return own_database_url(tmp_path, "work")


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    eng = make_engine(url)
    WorkBase.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def app(engine: Engine) -> Flask:
    """Just what the engine needs of an app: its sessions (real ones, committing for real)."""
    application = Flask("work-test")
    application.extensions["companion.engine"] = engine
    application.extensions["companion.sessions"] = SessionProvider(engine)
    return application


def add(engine: Engine, count: int = 1, **values: Any) -> list[int]:
    with Session(engine) as session, session.begin():
        items = [Item(**values) for _ in range(count)]
        session.add_all(items)
        session.flush()
        return [i.id for i in items]


def get(engine: Engine, item_id: int) -> Item:
    with Session(engine, expire_on_commit=False) as session:
        item = session.get(Item, item_id)
        assert item is not None
        return item


class Crash(BaseException):
    """The runner dies here."""


@pytest.fixture
def hooks() -> Iterator[work.Hooks]:
    saved = (
        list(work.hooks.after_claim),
        list(work.hooks.before_call),
        list(work.hooks.after_call),
    )
    yield work.hooks
    work.hooks.after_claim[:], work.hooks.before_call[:], work.hooks.after_call[:] = saved


@dataclass(frozen=True)
class Plan:
    item_id: int
    note: str


class Echo:
    """A step whose call records what it saw of the database and the pool."""

    def __init__(self, engine: Engine, *, fail: Exception | None = None):
        self.engine = engine
        self.fail = fail
        self.calls: list[int] = []
        self.checked_out_during_call: list[int] = []
        self.other_write_seconds: list[float] = []
        self.other_write: Engine | None = None

    def prepare(self, session: Session, item_id: int, now: dt.datetime) -> Plan | None:
        item = session.get(Item, item_id)
        if item is None or item.result:
            return None  # done by an earlier attempt
        return Plan(item_id, item.note)

    def call(self, plan: Plan) -> str:
        self.calls.append(plan.item_id)
        self.checked_out_during_call.append(self.engine.pool.checkedout())
        if self.other_write is not None:
            started = time.monotonic()
            with self.other_write.begin() as conn:
                conn.execute(update(Item).where(Item.id == plan.item_id).values(note="written"))
            self.other_write_seconds.append(time.monotonic() - started)
        if self.fail is not None:
            raise self.fail
        return f"answer for {plan.item_id}"

    def record(
        self, session: Session, item_id: int, plan: Plan, result: str, now: dt.datetime
    ) -> work.Outcome:
        item = session.get(Item, item_id)
        assert item is not None
        item.result = result
        item.state = "done"
        work.release(item, QUEUE)
        return "done"

    def failed(
        self, session: Session, item_id: int, plan: Plan, exc: Exception, now: dt.datetime
    ) -> work.Outcome:
        item = session.get(Item, item_id)
        assert item is not None
        retry_after = getattr(exc, "retry_after", None)
        work.postpone(item, QUEUE, now, retry_after=retry_after)
        return "retry"


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    waits = [work.backoff(n) for n in range(0, 10)]
    assert waits[:5] == [dt.timedelta(minutes=m) for m in (1, 1, 2, 4, 8)]
    assert waits[-1] == work.DEFAULT_BACKOFF_CAP == dt.timedelta(hours=1)
    assert work.backoff(10**9) == dt.timedelta(hours=1)  # no overflow
    small = [
        work.backoff(n, base=dt.timedelta(seconds=30), cap=dt.timedelta(minutes=5))
        for n in (1, 2, 3, 4, 5)
    ]
    assert small == [dt.timedelta(seconds=s) for s in (30, 60, 120, 240, 300)]


def test_backoff_believes_retry_after_within_the_cap() -> None:
    assert work.backoff(1, retry_after=120) == dt.timedelta(seconds=120)
    assert work.backoff(9, retry_after=5) == dt.timedelta(seconds=5)  # Zoom knows best
    assert work.backoff(1, retry_after=0.2) == dt.timedelta(seconds=1)
    assert work.backoff(1, retry_after=10**6) == dt.timedelta(hours=1)
    assert work.backoff(3, retry_after=0) == dt.timedelta(minutes=4)  # nonsense is ignored
    assert work.backoff(3, retry_after=-5) == dt.timedelta(minutes=4)


# --- which items are waiting ----------------------------------------------------------------


def test_due_claimed_and_ready_decide_what_is_waiting(engine: Engine) -> None:
    now = utcnow()
    minute = dt.timedelta(minutes=1)
    due_now = add(engine, due=None)[0]
    due_past = add(engine, due=now - minute)[0]
    due_exactly = add(engine, due=now)[0]
    not_yet = add(engine, due=now + minute)[0]
    held = add(engine, due=None, claimed_until=now + minute)[0]
    claim_ran_out = add(engine, due=now - 2 * minute, claimed_until=now - minute)[0]
    not_ready = add(engine, due=None, state="done")[0]

    with Session(engine) as session:
        waiting = work.due_ids(session, QUEUE, now)
    assert set(waiting) == {due_now, due_past, due_exactly, claim_ran_out}
    # Never-scheduled items first, then the longest-waiting.
    assert waiting == [due_now, claim_ran_out, due_past, due_exactly]
    for item_id in (not_yet, held, not_ready):
        with Session(engine) as session, session.begin():
            assert not work.claim(session, QUEUE, item_id, now), item_id
    with Session(engine) as session:
        assert work.due_ids(session, QUEUE, now, limit=2) == [due_now, claim_ran_out]
        # Later, the one not yet due is due.
        assert not_yet in work.due_ids(session, QUEUE, now + 2 * minute)


def test_a_claim_holds_the_item_counts_an_attempt_and_runs_out(engine: Engine) -> None:
    [item_id] = add(engine)
    now = utcnow()
    with Session(engine) as session, session.begin():
        loaded = session.get(Item, item_id)
        assert work.claim(session, QUEUE, item_id, now)
        # The loaded copy sees the claim.
        assert loaded is not None and loaded.attempts == 1
        assert loaded.claimed_until == now + QUEUE.claim_for
    with Session(engine) as session, session.begin():
        assert not work.claim(session, QUEUE, item_id, now + QUEUE.claim_for)
        assert work.claim(session, QUEUE, item_id, now + QUEUE.claim_for + dt.timedelta(seconds=1))
    assert get(engine, item_id).attempts == 2


def test_a_queue_that_counts_its_own_attempts_leaves_them_alone(engine: Engine) -> None:
    own = work.Queue(**{**QUEUE.__dict__, "count_attempts": False})
    [item_id] = add(engine)
    with Session(engine) as session, session.begin():
        assert work.claim(session, own, item_id, utcnow())
    item = get(engine, item_id)
    assert item.attempts == 0 and item.claimed_until is not None


def test_of_two_sessions_claiming_at_once_exactly_one_wins(engine: Engine) -> None:
    """Two runners look at the same item at the same moment; one UPDATE changes the row, the
    other (waiting for the first one's lock, then re-checking) finds it held."""
    [item_id] = add(engine)
    now = utcnow()
    first = Session(engine)
    assert work.claim(first, QUEUE, item_id, now)  # not committed yet: the row is locked
    second_result: list[bool] = []

    def second() -> None:
        with Session(engine) as session, session.begin():
            second_result.append(work.claim(session, QUEUE, item_id, now))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=0.5)
    assert thread.is_alive(), "the second claim did not wait for the first"
    first.commit()
    first.close()
    thread.join(timeout=10)
    assert second_result == [False]
    assert get(engine, item_id).attempts == 1


def test_many_runners_at_once_claim_each_item_once(engine: Engine) -> None:
    ids = add(engine, 5)
    now = utcnow()
    start = threading.Barrier(4)
    won: list[tuple[int, int]] = []
    lock = threading.Lock()

    def runner(n: int) -> None:
        start.wait()
        for item_id in ids:
            with Session(engine) as session, session.begin():
                if work.claim(session, QUEUE, item_id, now):
                    with lock:
                        won.append((n, item_id))

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(item_id for _n, item_id in won) == sorted(ids)
    assert {get(engine, i).attempts for i in ids} == {1}


def test_claim_batch_takes_disjoint_items(engine: Engine) -> None:
    """On PostgreSQL a second runner skips the rows the first has locked (SKIP LOCKED) instead of
    waiting for them; on SQLite the runners take turns and the claim itself keeps them apart."""
    ids = add(engine, 6)
    now = utcnow()
    first = Session(engine)
    mine = work.claim_batch(first, QUEUE, now, limit=3)
    assert mine == ids[:3]
    theirs: list[list[int]] = []

    def other() -> None:
        with Session(engine) as session, session.begin():
            theirs.append(work.claim_batch(session, QUEUE, now, limit=10))

    thread = threading.Thread(target=other)
    thread.start()
    if POSTGRES:
        # Not blocked by the first runner's open transaction.
        thread.join(timeout=5)
        assert not thread.is_alive(), "the second runner waited for locked rows"
        first.commit()
    else:
        first.commit()
        thread.join(timeout=10)
    first.close()
    assert theirs == [ids[3:]]
    with Session(engine) as session, session.begin():
        assert work.claim_batch(session, QUEUE, now) == []


# --- postpone, release, schedule ----------------------------------------------------------------


def test_postpone_lets_go_and_sets_the_next_attempt_with_the_queues_backoff(
    engine: Engine,
) -> None:
    [item_id] = add(engine)
    now = utcnow()
    with Session(engine) as session, session.begin():
        for attempt, wait in ((1, 10), (2, 20), (3, 40)):
            assert work.claim(session, QUEUE, item_id, now)
            item = session.get(Item, item_id)
            assert item is not None and item.attempts == attempt
            when = work.postpone(item, QUEUE, now)
            assert when == now + dt.timedelta(seconds=wait)
            assert (item.due, item.claimed_until) == (when, None)
            session.flush()
            assert not work.claim(session, QUEUE, item_id, now)
            now = when
        when = work.postpone(item, QUEUE, now, retry_after=90)
        assert when == now + dt.timedelta(seconds=90)
        for _ in range(20):
            item.attempts += 1
        assert work.postpone(item, QUEUE, now) == now + QUEUE.backoff_cap
        work.schedule(item, QUEUE)
        assert item.due is None
        work.schedule(item, QUEUE, now + dt.timedelta(hours=1))
        assert item.due == now + dt.timedelta(hours=1)
        item.claimed_until = now + dt.timedelta(hours=2)
        work.release(item, QUEUE)
        assert (item.due, item.claimed_until) == (None, None)


# --- run_one's phases ---------------------------------------------------------------------------


def test_run_one_calls_with_no_connection_held_and_another_can_write(
    app: Flask, engine: Engine, url: str
) -> None:
    [item_id] = add(engine, note="hello")
    step = Echo(engine)
    other = make_engine(url)
    step.other_write = other
    try:
        assert work.run_one(app, QUEUE, step, item_id) == "done"
    finally:
        other.dispose()
    assert step.calls == [item_id]
    # During the call the engine's pool had no connection out: no transaction, no lock.
    assert step.checked_out_during_call == [0]
    assert step.other_write_seconds[0] < 1.0
    item = get(engine, item_id)
    assert (item.state, item.result, item.note) == ("done", f"answer for {item_id}", "written")
    assert (item.attempts, item.claimed_until, item.due) == (1, None, None)
    assert work.run_one(app, QUEUE, step, item_id) == "skipped"
    assert step.calls == [item_id]


def test_run_one_skips_what_it_cannot_claim_and_releases_what_needs_nothing(
    app: Flask, engine: Engine
) -> None:
    [held] = add(engine, claimed_until=utcnow() + dt.timedelta(minutes=1))
    [finished] = add(engine, result="already done by an earlier attempt")
    step = Echo(engine)
    assert work.run_one(app, QUEUE, step, held) == "skipped"
    assert work.run_one(app, QUEUE, step, finished) == "idle"
    assert get(engine, finished).claimed_until is None
    assert step.calls == []
    # ``claimed``: the caller holds the claim already (claim_batch).
    assert work.run_one(app, QUEUE, step, held, claimed=True) == "done"


def test_a_failed_call_is_postponed_in_a_transaction_of_its_own(app: Flask, engine: Engine) -> None:
    class Busy(Exception):
        retry_after = 30

    [item_id] = add(engine)
    before = utcnow()
    step = Echo(engine, fail=Busy("come back later"))
    assert work.run_one(app, QUEUE, step, item_id) == "retry"
    item = get(engine, item_id)
    assert item.claimed_until is None and item.result == ""
    assert item.due is not None
    assert before + dt.timedelta(seconds=30) <= item.due <= utcnow() + dt.timedelta(seconds=30)


@pytest.mark.parametrize("point", ["after_claim", "after_call"])
def test_a_crash_between_phases_leaves_the_claim_and_a_later_run_does_it_once(
    point: str, app: Flask, engine: Engine, hooks: work.Hooks
) -> None:
    [item_id] = add(engine)
    step = Echo(engine)

    def die(queue: str, i: Any) -> None:
        raise Crash(point)

    getattr(hooks, point).append(die)

    with pytest.raises(Crash):
        work.run_one(app, QUEUE, step, item_id)
    getattr(hooks, point).clear()

    item = get(engine, item_id)
    assert item.attempts == 1 and item.result == ""
    assert item.claimed_until is not None and item.claimed_until > utcnow()
    assert step.calls == ([item_id] if point == "after_call" else [])
    assert work.run_one(app, QUEUE, step, item_id) == "skipped"  # the claim holds
    later = utcnow() + QUEUE.claim_for + dt.timedelta(seconds=1)
    assert work.run_one(app, QUEUE, step, item_id, now=later) == "done"
    assert work.run_one(app, QUEUE, step, item_id, now=later + QUEUE.claim_for * 2) == "skipped"
    assert get(engine, item_id).attempts == 2


def test_begin_commits_the_intent_before_the_call_and_can_stop_it(
    app: Flask, engine: Engine, hooks: work.Hooks
) -> None:
    class Marked(Echo):
        def begin(self, session: Session, item_id: int, plan: Plan, now: dt.datetime) -> bool:
            item = session.get(Item, item_id)
            assert item is not None
            if item.note == "stop":
                return False
            item.note = "started"
            return True

    [item_id, stopped] = add(engine, 2)
    with Session(engine) as session, session.begin():
        session.execute(update(Item).where(Item.id == stopped).values(note="stop"))
    step = Marked(engine)
    seen: list[str] = []

    def look(queue: str, i: Any) -> None:
        seen.append(get(engine, i).note)  # from another connection: committed
        raise Crash("before_call")

    hooks.before_call.append(look)
    with pytest.raises(Crash):
        work.run_one(app, QUEUE, step, item_id)
    assert seen == ["started"] and step.calls == []
    hooks.before_call.clear()
    assert work.run_one(app, QUEUE, step, stopped) == "skipped"
    assert step.calls == []


def test_run_works_every_due_item_and_one_failure_stops_nothing(
    app: Flask, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    ids = add(engine, 4)
    add(engine, due=utcnow() + dt.timedelta(hours=1))

    class Flaky(Echo):
        def record(self, session: Session, item_id: int, *args: Any) -> work.Outcome:
            if item_id == ids[1]:
                raise RuntimeError("recording broke")
            return super().record(session, item_id, *args)

    step = Flaky(engine)
    assert work.run(app, QUEUE, step) == {"done": 3, "errors": 1}
    assert step.calls == ids
    assert "recording broke" in caplog.text
    # The broken one keeps its claim until it runs out, then is tried again.
    assert work.run(app, QUEUE, step) == {}
    later = utcnow() + QUEUE.claim_for + dt.timedelta(seconds=1)
    assert work.run(app, QUEUE, step, now=later) == {"errors": 1}
    assert work.run(app, QUEUE, Echo(engine), ids=ids) == {"skipped": 4}
    with Session(engine) as session:
        assert session.scalar(select(Item.result).where(Item.id == ids[0]))
