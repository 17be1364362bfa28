"""The one schedule: every periodic job companion runs, in a single table.

Adding a job is adding a row to :data:`JOBS`. A job is a function ``job(app) -> result`` in its
domain's ``jobs.py``: it opens its own ``job_session(app)``, works from the database (never from
arguments captured at scheduling time), commits, and is safe to run twice or late. List a job
only once its module exists; :func:`register_jobs` imports every row and refuses to start
otherwise, so a typo stops the worker at once instead of failing silently at 3 am.

The scheduler keeps its jobs in memory (nothing pickled to lose or to restore wrongly); the
database holds the state the jobs act on. It runs only in ``companion worker``, behind the
lease in :mod:`companion.worker`, never in the web processes.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from flask import Flask

log = logging.getLogger(__name__)

# A run that starts late (the machine was suspended, the process was busy) still runs within an
# hour; with coalesce, several missed runs become one. APScheduler's default is one second.
MISFIRE_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job.

    ``trigger`` holds APScheduler trigger arguments, built with :func:`every` or :func:`cron`
    (always in UTC). ``run_at_start`` also runs the job as soon as the worker starts, for jobs
    that should catch up after downtime without waiting for their first interval.
    """

    name: str
    func_path: str
    trigger: Mapping[str, Any]
    run_at_start: bool = False
    misfire_grace_time: int | None = MISFIRE_GRACE_SECONDS
    # A queue of the work engine whose every item is claimed before it is worked
    # (companion/work.py): on PostgreSQL every worker runs it, not only the lease holder, and
    # the claims see that each item is done once (companion/worker.py).
    shared: bool = False

    def resolve(self) -> Callable[[Flask], Any]:
        module_name, _, attr = self.func_path.partition(":")
        if not module_name or not attr:
            raise ValueError(f"job {self.name}: func_path must look like 'package.module:func'")
        func = getattr(importlib.import_module(module_name), attr)
        if not callable(func):
            raise TypeError(f"job {self.name}: {self.func_path} is not callable")
        return func


def every(**interval: int | float) -> dict[str, Any]:
    """An interval trigger: ``every(seconds=30)``, ``every(minutes=5)``."""
    return {"trigger": "interval", **interval}


def cron(**fields: int | str) -> dict[str, Any]:
    """A cron trigger in UTC: ``cron(hour=2, minute=30)``."""
    return {"trigger": "cron", "timezone": dt.UTC, **fields}


# The schedule. Keep it sorted by how often the job runs.
JOBS: tuple[JobSpec, ...] = (
    # Zoom's webhooks, stored by /zoom/webhook, handled here (recording.completed -> ingest).
    JobSpec(
        "process_webhook_events",
        "companion.webhooks.jobs:process_pending",
        every(seconds=5),
        run_at_start=True,
        shared=True,
    ),
    # Copy, encrypt, verify, then delete from Zoom; retries failed copies when due. Its first run
    # in a worker removes partial files and resumes downloads a killed worker left behind, which
    # is right only while no other worker downloads: so it is not shared, the lease holder runs it.
    JobSpec(
        "ingest_recordings",
        "companion.recordings.jobs:ingest_pending",
        every(seconds=5),
        run_at_start=True,
    ),
    # Running classes: a child alone with one adult (or a class past its slot) between events.
    JobSpec(
        "evidence_watch_live_meetings",
        "companion.evidence.jobs:watch_live_meetings",
        every(seconds=30),
    ),
    JobSpec(
        "deliver_pending",
        "companion.mail.jobs:deliver_pending",
        every(seconds=30),
        run_at_start=True,
        shared=True,
    ),
    # Courses Zoom could not take yet; each is claimed, and a retry looks before it creates.
    JobSpec(
        "retry_pending_courses",
        "companion.courses.jobs:retry_pending",
        every(minutes=1),
        run_at_start=True,
        shared=True,
    ),
    # Zoom answered 429/5xx when asked to delete its copy of a verified recording: try again.
    JobSpec(
        "delete_zoom_copies",
        "companion.recordings.jobs:delete_from_zoom_pending",
        every(minutes=1),
        shared=True,
    ),
    # Families Zoom could not register (or cancel) yet; a retry looks before it adds.
    JobSpec(
        "sync_family_registrants",
        "companion.families.jobs:sync_zoom",
        every(minutes=1),
        run_at_start=True,
        shared=True,
    ),
    # Family links owed to parents, sent once the course is safe and the family registered.
    JobSpec("send_owed_family_links", "companion.families.jobs:send_owed_links", every(minutes=5)),
    # The teacher's admit list by email, once per class, about two hours before it.
    JobSpec("class_summaries", "companion.families.jobs:class_summaries", every(minutes=10)),
    # Delete the meeting of finished courses so their old links die.
    JobSpec("close_finished_courses", "companion.courses.jobs:close_finished", every(minutes=15)),
    # One GET per upcoming course; repairs drift and raises the alarm when it cannot.
    JobSpec(
        "course_drift_check",
        "companion.courses.jobs:drift_check",
        every(hours=1),
        run_at_start=True,
    ),
    # Recordings of course meetings whose webhook never came (Zoom gives up after 3 retries).
    JobSpec(
        "reconcile_recordings",
        "companion.recordings.jobs:reconcile",
        every(hours=1),
        run_at_start=True,
    ),
    JobSpec("verify_audit_chain", "companion.audit.jobs:verify_chain", cron(hour=2, minute=30)),
    # Handled webhook bodies (download tokens, participants' names) are not kept beyond a month.
    JobSpec("prune_webhook_events", "companion.webhooks.jobs:prune_processed", cron(hour=3)),
    # Crypto-shred what is due; at start too, so a day the worker was down is caught up.
    JobSpec(
        "recordings_retention",
        "companion.recordings.jobs:retention_sweep",
        cron(hour=3, minute=15),
        run_at_start=True,
    ),
)


@dataclass
class JobRecord:
    """What the worker knows about one job since it started (kept in memory, logged)."""

    runs: int = 0
    failures: int = 0
    missed: int = 0
    last_started_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    last_error: str = ""
    last_result: Any = None
    last_duration_seconds: float | None = None


@dataclass
class JobStatus:
    """Per-job bookkeeping shared by the scheduler's threads; meant for /healthz later."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _get(self, name: str) -> JobRecord:
        return self.records.setdefault(name, JobRecord())

    def started(self, name: str, when: dt.datetime) -> None:
        with self._lock:
            self._get(name).last_started_at = when

    def succeeded(self, name: str, when: dt.datetime, result: Any, seconds: float) -> None:
        with self._lock:
            rec = self._get(name)
            rec.runs += 1
            rec.last_success_at = when
            rec.last_result = result
            rec.last_duration_seconds = seconds

    def failed(self, name: str, when: dt.datetime, error: BaseException, seconds: float) -> None:
        with self._lock:
            rec = self._get(name)
            rec.runs += 1
            rec.failures += 1
            rec.last_failure_at = when
            rec.last_error = f"{type(error).__name__}: {error}"[:500]
            rec.last_duration_seconds = seconds

    def missed_run(self, name: str) -> None:
        with self._lock:
            self._get(name).missed += 1

    def summary(self) -> str:
        """One line per job, for the log."""
        with self._lock:
            lines = []
            for name, rec in sorted(self.records.items()):
                last = (
                    rec.last_success_at.isoformat(timespec="seconds")
                    if rec.last_success_at
                    else "never"
                )
                lines.append(
                    f"{name}: {rec.runs} run(s), {rec.failures} failed, {rec.missed} missed, "
                    f"last success {last}"
                )
            return "; ".join(lines) or "no job has run"

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: dict(vars(rec)) for name, rec in self.records.items()}


def run_job(app: Flask, spec: JobSpec, status: JobStatus) -> Any:
    """Run one job in its own app context, timing it and recording the outcome.

    A failure is recorded and re-raised, for APScheduler's EVENT_JOB_ERROR or the caller.
    """
    func = spec.resolve()
    started = dt.datetime.now(dt.UTC)
    status.started(spec.name, started)
    clock = time.monotonic()
    try:
        with app.app_context():
            result = func(app)
    except Exception as exc:
        seconds = time.monotonic() - clock
        status.failed(spec.name, dt.datetime.now(dt.UTC), exc, seconds)
        raise
    seconds = time.monotonic() - clock
    status.succeeded(spec.name, dt.datetime.now(dt.UTC), result, seconds)
    log.log(
        logging.INFO if result else logging.DEBUG,
        "job %s done in %.2f s: %r",
        spec.name,
        seconds,
        result,
    )
    return result


def make_scheduler(max_workers: int = 4) -> BackgroundScheduler:
    """An unstarted scheduler with the settings every job shares."""
    return BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=max_workers)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
        timezone=dt.UTC,
    )


def register_jobs(
    scheduler: BaseScheduler,
    app: Flask,
    *,
    jobs: Iterable[JobSpec] = JOBS,
    status: JobStatus | None = None,
) -> list[str]:
    """Add every job of the table to ``scheduler``; returns their names.

    Every row is imported first, so a missing module or function stops the worker at start.
    """
    jobs = tuple(jobs)
    names = [spec.name for spec in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"job names must be unique: {', '.join(duplicates)}")
    for spec in jobs:
        spec.resolve()
    status = status if status is not None else JobStatus()
    now = dt.datetime.now(dt.UTC)
    for spec in jobs:
        options: dict[str, Any] = {}
        if spec.run_at_start:
            options["next_run_time"] = now
        scheduler.add_job(
            run_job,
            args=(app, spec, status),
            id=spec.name,
            name=spec.name,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=spec.misfire_grace_time,
            **dict(spec.trigger),
            **options,
        )
    _listen(scheduler, status)
    return names


def _listen(scheduler: BaseScheduler, status: JobStatus) -> None:
    def on_event(event: Any) -> None:
        if event.code == EVENT_JOB_MISSED and isinstance(event, JobExecutionEvent):
            status.missed_run(event.job_id)
            log.warning(
                "job %s missed its run due at %s (later than the grace time)",
                event.job_id,
                event.scheduled_run_time.isoformat(),
            )
        elif event.code == EVENT_JOB_MAX_INSTANCES and isinstance(event, JobSubmissionEvent):
            # Normal under load (a long mail batch); the next run picks up where it left off.
            log.info("job %s skipped a run: the previous run is still going", event.job_id)
        elif event.code == EVENT_JOB_ERROR and isinstance(event, JobExecutionEvent):
            # APScheduler's own logger has already written the traceback.
            rec = status.records.get(event.job_id)
            log.error(
                "job %s failed (run due at %s, %d of %d runs failed so far): %s",
                event.job_id,
                event.scheduled_run_time.isoformat(),
                rec.failures if rec else 1,
                rec.runs if rec else 1,
                repr(event.exception),
            )

    scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
