"""The loop every batch job shares: each item in its own transaction, one failure never stops
the rest, and the outcome counted so the worker's log (and the tests) can see what happened."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from flask import Flask
from sqlalchemy.orm import Session

from .db import job_session, utcnow
from .errors import CompanionError

log = logging.getLogger(__name__)

# What one item's work reports: a label to count, (label, how many), or None for nothing.
Outcome = str | tuple[str, int] | None


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
    """Run ``work`` for each of ``ids`` (or every id ``due`` names) and count the outcomes.

    ``claim``, when given, runs in a transaction of its own first, so another worker that already
    holds the item makes this one skip it. A domain error (Zoom unreachable, say) is counted under
    ``domain_errors``; anything else is logged with its traceback and counted as ``errors``; the
    exceptions in ``skip_on`` (a race lost to another worker) count as ``skipped``.
    """
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
            if isinstance(outcome, tuple):
                result[outcome[0]] += outcome[1]
            elif outcome is not None:
                result[outcome] += 1
    return dict(result)
