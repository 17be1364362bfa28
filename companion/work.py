"""The one work engine: durable work items that are claimed, worked with no transaction open,
and recorded in a transaction of their own.

A *work item* is a row that wants something done outside the database: a course to put into
Zoom, a family to register, an event to handle, a message to send, a recording to copy. Each
table keeps its own domain state; what every item needs for scheduling is four columns, named
by a :class:`Queue`:

* ``attempts``: how many times the work was tried;
* ``due``: when the next attempt may start (NULL: now);
* ``claimed_until``: while in the future, one runner holds the item and nobody else starts it;
* ``ready``: the condition (usually on a state column) under which the row wants work at all.

One step of work is three phases (:class:`Step`), so that no network call ever runs while a
database transaction is open (SQLite's write lock, or a PostgreSQL row lock, would stall every
request and the webhook for as long as Zoom or the mail server takes to answer):

1. ``prepare``: in the claim's transaction, read what the call needs into plain values (a
   :class:`Plan`); commit. Returning ``None`` means there is nothing to do and releases the item.
2. ``call``: the network call, with the plan only: no session, no ORM object. A step whose
   call must not be repeated once it may have taken effect (a message handed to the mail
   server) also has ``begin``: it runs in a short committed transaction of its own right before
   the call and marks the item as started, so a crash during or after the call is seen as such
   (the mail outbox then shows "may have been sent" instead of sending again).
3. ``record``: in a new short transaction, write what the call answered. ``failed`` does the same
   when the call raised; its default postpones the item with the one :func:`backoff`.

A crash between any two phases leaves the claim to expire; the next run prepares again, so each
``prepare`` must notice work an earlier attempt may already have done (a meeting found by its
marker, a registrant by its address, a message already handed to the server): see each queue's
docstring.

On PostgreSQL :func:`claim_next` (and :func:`claim_batch`) take rows with ``FOR UPDATE SKIP
LOCKED`` so any number of workers share a queue without waiting for each other; on SQLite one
writer at a time is the rule anyway and the conditional UPDATE is the claim.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from flask import Flask
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.util import identity_key

from .db import changed_rows, job_session, utcnow
from .errors import CompanionError

log = logging.getLogger(__name__)

PlanT = TypeVar("PlanT")
ResultT = TypeVar("ResultT")

# What one item's work reports: a label to count, (label, how many), or None for nothing.
Outcome = str | tuple[str, int] | None

DEFAULT_CLAIM_FOR = dt.timedelta(minutes=10)
DEFAULT_BACKOFF_BASE = dt.timedelta(minutes=1)
DEFAULT_BACKOFF_CAP = dt.timedelta(hours=1)


def backoff(
    attempts: int,
    *,
    retry_after: float | None = None,
    base: dt.timedelta = DEFAULT_BACKOFF_BASE,
    cap: dt.timedelta = DEFAULT_BACKOFF_CAP,
) -> dt.timedelta:
    """How long to wait before attempt ``attempts + 1``: doubling from ``base`` up to ``cap``.

    A server that said when to come back (HTTP ``Retry-After``) is believed, within the cap.
    """
    if retry_after is not None and retry_after > 0:
        return min(dt.timedelta(seconds=max(1.0, float(retry_after))), cap)
    exponent = min(max(0, attempts - 1), 30)
    return min(base * (2**exponent), cap)


@dataclass(frozen=True)
class Queue:
    """Where one kind of work item lives and which of its columns the engine uses."""

    name: str
    model: type[Any]
    id: InstrumentedAttribute[Any]
    attempts: InstrumentedAttribute[int]
    due: InstrumentedAttribute[Any]
    claimed_until: InstrumentedAttribute[Any]
    ready: Callable[[], ColumnElement[bool]]
    claim_for: dt.timedelta = DEFAULT_CLAIM_FOR
    backoff_base: dt.timedelta = DEFAULT_BACKOFF_BASE
    backoff_cap: dt.timedelta = DEFAULT_BACKOFF_CAP
    # Whether a claim counts as an attempt (most queues), or the step counts its own attempts.
    count_attempts: bool = True
    # Among items due at the same moment, which first (before the id): e.g. the oldest row.
    order: tuple[InstrumentedAttribute[Any], ...] = ()

    def _waiting(self, now: dt.datetime) -> ColumnElement[bool]:
        return and_(
            self.ready(),
            or_(self.due.is_(None), self.due <= now),
            or_(self.claimed_until.is_(None), self.claimed_until < now),
        )

    def _col(self, attr: InstrumentedAttribute[Any]) -> str:
        return attr.key


def due_ids(session: Session, queue: Queue, now: dt.datetime, limit: int = 100) -> list[Any]:
    """Ids of the items whose work is due now and that nobody holds, the longest-waiting first."""
    return list(
        session.scalars(
            select(queue.id)
            .where(queue._waiting(now))
            .order_by(queue.due.is_not(None), queue.due, *queue.order, queue.id)
            .limit(limit)
        )
    )


def claim(session: Session, queue: Queue, item_id: Any, now: dt.datetime) -> bool:
    """Take one item for one attempt; False when it is not due, not ready, or someone holds it.

    A conditional UPDATE: of two runners (or a request and the worker) only one changes the row.
    The caller commits before starting the work.
    """
    values: dict[str, Any] = {queue._col(queue.claimed_until): now + queue.claim_for}
    if queue.count_attempts:
        values[queue._col(queue.attempts)] = queue.attempts + 1
    result = session.execute(
        update(queue.model)
        .where(queue.id == item_id, queue._waiting(now))
        .values(values)
        .execution_options(synchronize_session=False)
    )
    claimed = bool(changed_rows(result))
    if claimed:
        # The UPDATE bypassed the identity map; a loaded copy must see the claim.
        obj = session.identity_map.get(identity_key(queue.model, item_id))
        if obj is not None:
            session.expire(obj)
    return claimed


def claim_batch(session: Session, queue: Queue, now: dt.datetime, limit: int = 100) -> list[Any]:
    """Claim up to ``limit`` due items at once and return their ids.

    On PostgreSQL the rows are picked with ``FOR UPDATE SKIP LOCKED``, so workers running at the
    same moment take different items instead of queueing on the same rows.
    """
    pick = select(queue.id).where(queue._waiting(now)).order_by(queue.due.is_(None).desc())
    pick = pick.order_by(queue.due, *queue.order, queue.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    return [item_id for item_id in ids if claim(session, queue, item_id, now)]


def claim_next(
    session: Session, queue: Queue, now: dt.datetime, *, exclude: Sequence[Any] = ()
) -> Any | None:
    """Claim the longest-waiting due item (not one of ``exclude``) and return its id, or None.

    On PostgreSQL the row is picked with ``FOR UPDATE SKIP LOCKED``: a worker claiming at the
    same moment skips the row this one is claiming and takes the next, instead of waiting for
    this transaction and then finding the row taken. The caller commits before the work.
    """
    tried = list(exclude)
    while True:
        pick = select(queue.id).where(queue._waiting(now))
        if tried:
            pick = pick.where(queue.id.not_in(tried))
        pick = pick.order_by(queue.due.is_not(None), queue.due, *queue.order, queue.id).limit(1)
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        item_id = session.scalar(pick)
        if item_id is None:
            return None
        if claim(session, queue, item_id, now):
            return item_id
        tried.append(item_id)  # taken by another runner between the pick and the claim


def release(item: Any, queue: Queue) -> None:
    """The work is done (or no longer wanted): nobody holds the item and nothing is due."""
    setattr(item, queue._col(queue.claimed_until), None)
    setattr(item, queue._col(queue.due), None)


def postpone(
    item: Any,
    queue: Queue,
    now: dt.datetime,
    *,
    retry_after: float | None = None,
) -> dt.datetime:
    """Let go of the item and set its next attempt with the queue's backoff; returns when."""
    attempts = int(getattr(item, queue._col(queue.attempts)) or 0)
    when = now + backoff(
        attempts, retry_after=retry_after, base=queue.backoff_base, cap=queue.backoff_cap
    )
    setattr(item, queue._col(queue.claimed_until), None)
    setattr(item, queue._col(queue.due), when)
    return when


def schedule(item: Any, queue: Queue, at: dt.datetime | None = None) -> None:
    """Ask for work on the item at ``at`` (None: as soon as possible)."""
    setattr(item, queue._col(queue.due), at)


class Step(Protocol[PlanT, ResultT]):
    """One attempt at one item, in three phases (see the module docstring)."""

    def prepare(self, session: Session, item_id: Any, now: dt.datetime) -> PlanT | None: ...

    def call(self, plan: PlanT) -> ResultT: ...

    def record(
        self, session: Session, item_id: Any, plan: PlanT, result: ResultT, now: dt.datetime
    ) -> Outcome: ...

    def failed(
        self, session: Session, item_id: Any, plan: PlanT, exc: Exception, now: dt.datetime
    ) -> Outcome: ...

    # Optional (looked up with getattr): ``begin(session, item_id, plan, now) -> bool``, in a
    # committed transaction of its own between the claim and the call; False stops the step.


@dataclass
class Hooks:
    """Test seams: called between phases (``after_claim``, ``before_call`` (after a step's
    ``begin`` committed), ``after_call``) with the queue's name and the item id, so a test can
    stop the step at each point as a crash would."""

    after_claim: list[Callable[[str, Any], None]] = field(default_factory=list)
    before_call: list[Callable[[str, Any], None]] = field(default_factory=list)
    after_call: list[Callable[[str, Any], None]] = field(default_factory=list)


hooks = Hooks()


def run_one(
    app: Flask,
    queue: Queue,
    step: Step[Any, Any],
    item_id: Any,
    *,
    now: dt.datetime | None = None,
    claimed: bool = False,
) -> Outcome:
    """Claim (unless ``claimed``), prepare and commit; call with no transaction; record.

    Returns the step's outcome, ``"skipped"`` when the item was not claimable, or ``"idle"``
    when ``prepare`` found nothing to do.
    """
    now = now or utcnow()
    with job_session(app) as session:
        if not claimed and not claim(session, queue, item_id, now):
            return "skipped"
        plan = step.prepare(session, item_id, now)
        if plan is None:
            item = session.get(queue.model, item_id)
            if item is not None:
                setattr(item, queue._col(queue.claimed_until), None)
            return "idle"
    for hook in hooks.after_claim:
        hook(queue.name, item_id)
    begin = getattr(step, "begin", None)
    if begin is not None:
        with job_session(app) as session:
            if not begin(session, item_id, plan, utcnow()):
                return "skipped"
        for hook in hooks.before_call:
            hook(queue.name, item_id)
    # No transaction is open here: the network call holds no lock and no connection.
    try:
        result = step.call(plan)
    except Exception as exc:
        with job_session(app) as session:
            return step.failed(session, item_id, plan, exc, utcnow())
    for hook in hooks.after_call:
        hook(queue.name, item_id)
    with job_session(app) as session:
        return step.record(session, item_id, plan, result, utcnow())


def run(
    app: Flask,
    queue: Queue,
    step: Step[Any, Any],
    ids: Iterable[Any] | None = None,
    *,
    now: dt.datetime | None = None,
    limit: int = 100,
) -> dict[str, int]:
    """Work every due item of ``queue`` (or just ``ids``), each in its own transactions.

    One item's failure never stops the rest: a domain error (Zoom unreachable) is counted as
    ``unreachable``; anything else is logged with its traceback and counted as ``errors``. The
    claim of a failed item is left to expire, so the next run tries it again.
    """
    result: Counter[str] = Counter()
    with app.app_context():
        if ids is None:
            _run_due(app, queue, step, result, now=now, limit=limit)
            return dict(result)
        for item_id in ids:
            _run_counted(app, queue, step, item_id, result, now=now, claimed=False)
    return dict(result)


def _run_due(
    app: Flask,
    queue: Queue,
    step: Step[Any, Any],
    result: Counter[str],
    *,
    now: dt.datetime | None,
    limit: int,
) -> None:
    """Claim the next due item (:func:`claim_next`, committed), work it, and again, up to
    ``limit`` items: several workers running the same queue each take the next free item."""
    done: list[Any] = []
    while len(done) < limit:
        with job_session(app) as session:
            item_id = claim_next(session, queue, now or utcnow(), exclude=done)
        if item_id is None:
            return
        done.append(item_id)
        _run_counted(app, queue, step, item_id, result, now=now, claimed=True)


def _run_counted(
    app: Flask,
    queue: Queue,
    step: Step[Any, Any],
    item_id: Any,
    result: Counter[str],
    *,
    now: dt.datetime | None,
    claimed: bool,
) -> None:
    """One item, its outcome counted; a failure is counted and logged, never raised."""
    try:
        outcome = run_one(app, queue, step, item_id, now=now, claimed=claimed)
    except CompanionError as exc:
        log.warning("%s %s: could not run (%s)", queue.name, item_id, exc.code)
        result["unreachable"] += 1
        return
    except Exception:
        log.exception("%s %s: failed", queue.name, item_id)
        result["errors"] += 1
        return
    _count(result, outcome)


def _count(result: Counter[str], outcome: Outcome) -> None:
    if isinstance(outcome, tuple):
        result[outcome[0]] += outcome[1]
    elif outcome is not None:
        result[outcome] += 1


def run_each(
    app: Flask,
    ids: Iterable[int] | None,
    *,
    what: str,
    due: Callable[[Session, dt.datetime], Iterable[int]],
    work: Callable[[Session, int, dt.datetime], Outcome],
    claim: Callable[[Session, int, dt.datetime], bool] | None = None,
    now: dt.datetime | None = None,
    skip_on: tuple[type[BaseException], ...] = (),
    domain_errors: str = "unreachable",
) -> dict[str, int]:
    """Run ``work`` (database only, no network) for each of ``ids`` or every id ``due`` names,
    each in its own transaction, and count the outcomes. For batch jobs that are not queues
    (summaries, retention): anything that calls out uses :func:`run` with a :class:`Step`."""
    result: Counter[str] = Counter()
    with app.app_context():
        now = now or utcnow()
        if ids is None:
            with job_session(app) as session:
                ids = list(due(session, now))
        for item_id in ids:
            if claim is not None:
                with job_session(app) as session:
                    if not claim(session, item_id, now):
                        result["skipped"] += 1
                        continue
            try:
                with job_session(app) as session:
                    outcome = work(session, item_id, now)
            except skip_on:
                result["skipped"] += 1
                continue
            except CompanionError as exc:
                log.warning("%s %s: could not run (%s)", what, item_id, exc.code)
                result[domain_errors] += 1
                continue
            except Exception:
                log.exception("%s %s: failed", what, item_id)
                result["errors"] += 1
                continue
            _count(result, outcome)
    return dict(result)
