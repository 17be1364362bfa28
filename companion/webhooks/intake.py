"""Group commit of the webhook intake: concurrent deliveries share one transaction and one commit.

Every accepted event must be committed before its 200 goes out (Zoom does not redeliver an
answered event). A commit waits for the disk (SQLite's WAL fsync took about 9 ms here), and on
SQLite the writers of a process take turns, so one commit per delivery capped the intake at
about 80 events a second: with 200 senders each waited behind the others for 4 to 6 s, past
Zoom's 3 s (issue 10's webhook benchmark; the accepts were prompt, the queue was the commit).

So a delivery joins a batch instead: the first thread to find no commit under way becomes the
leader, takes every delivery waiting at that moment, stores them all in one transaction
(``services.store_all``: a few statements for the whole batch, recognising redeliveries also
within it; one by one with ``services.store`` if another process stored one of them meanwhile),
commits once, and hands each delivery its own outcome; deliveries arriving meanwhile form the
next batch. A delivery is answered only after the commit that holds it, so an answer still
means "stored"; if the batch cannot be stored or committed, every delivery of it fails (and
Zoom retries them). A delivery never waits for a later batch than the next one, and no thread
of its own is needed: the leader is one of the waiting requests.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask

from ..db import job_session
from . import services


@dataclass(frozen=True)
class Receipt:
    """What the view answers with: the stored event (or the one this delivery repeats)."""

    event_id: int
    duplicate: bool
    status: str


@dataclass
class _Delivery:
    document: dict[str, Any]
    body: bytes
    now: dt.datetime
    receipt: Receipt | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    """The intake of one app (``app.extensions["companion.webhook_intake"]``)."""

    def __init__(self, app: Flask):
        self.app = app
        self._cond = threading.Condition()
        self._waiting: list[_Delivery] = []
        self._committing = False

    @property
    def queued(self) -> int:
        """Deliveries waiting for the next batch."""
        with self._cond:
            return len(self._waiting)

    def store(self, document: dict[str, Any], body: bytes, *, now: dt.datetime) -> Receipt:
        delivery = _Delivery(document, body, now)
        with self._cond:
            self._waiting.append(delivery)
            while not delivery.done and self._committing:
                self._cond.wait()
            batch: list[_Delivery] = []
            if not delivery.done:
                # No commit under way and ours not yet stored: lead the next batch (ours is in it).
                batch, self._waiting = self._waiting, []
                self._committing = True
        if batch:
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._committing = False
                    self._cond.notify_all()
        if delivery.error is not None:
            raise delivery.error
        assert delivery.receipt is not None
        return delivery.receipt

    def _commit(self, batch: list[_Delivery]) -> None:
        raise_later: BaseException | None = None
        try:
            with job_session(self.app) as session:
                kept = services.store_all(session, [(d.document, d.body, d.now) for d in batch])
                if kept is None:
                    # Another process stored one of them meanwhile: one by one, as before.
                    self._store_each(session, batch)
                else:
                    for delivery, one in zip(batch, kept, strict=True):
                        delivery.receipt = Receipt(one.event_id, one.duplicate, one.status)
        except BaseException as exc:
            # Nothing of the batch was kept: none of its deliveries may be answered 200.
            for delivery in batch:
                delivery.receipt = None
                delivery.error = delivery.error or exc
            raise_later = exc
        for delivery in batch:
            delivery.done = True
        if raise_later is not None and not isinstance(raise_later, Exception):
            raise raise_later  # KeyboardInterrupt and the like: not ours to swallow

    @staticmethod
    def _store_each(session: Any, batch: list[_Delivery]) -> None:
        for delivery in batch:
            try:
                with session.begin_nested():
                    stored = services.store(
                        session, delivery.document, delivery.body, now=delivery.now
                    )
            except Exception as exc:  # noqa: BLE001 - this delivery alone fails
                delivery.error = exc
            else:
                delivery.receipt = Receipt(
                    stored.event.id, stored.duplicate, str(stored.event.status)
                )


def intake(app: Flask) -> GroupCommit:
    found: GroupCommit | None = app.extensions.get("companion.webhook_intake")
    if found is None:
        found = app.extensions.setdefault("companion.webhook_intake", GroupCommit(app))
    return found
