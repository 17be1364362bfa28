"""The worker: one schedule table, one scheduler however many workers, jobs run once on demand."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from companion import mail, migrate, scheduler, worker
from companion.cli import main as cli_main
from companion.scheduler import JOBS, JobSpec, JobStatus, every, register_jobs
from companion.worker import FileLease, PostgresLease, Worker, wait_for_lease

from .conftest import SECRET, TEST_KEYS_ENV, database_kind, make_app
from .mail.conftest import use_smtp
from .mail.smtp_server import SmtpServer
from .polling import poll

# --- jobs used by these tests (a job is any function taking the app) ----------------------

CALLS: list[str] = []


def count_job(app: Flask) -> int:
    CALLS.append("count")
    return len(CALLS)


def failing_job(app: Flask) -> None:
    raise RuntimeError("the job broke")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@pytest.fixture
def smtp(app: Flask) -> Iterator[SmtpServer]:
    server = SmtpServer(security="none").start()
    use_smtp(app, server)
    yield server
    server.stop()


def queue(session: Session, org: Any, to: str = "pat@example.net") -> Any:
    return mail.send(
        session,
        to_address=to,
        subject="Class reminder",
        body="See you on Tuesday.",
        kind="reminder",
        organisation_id=org.id,
    )


def postgres_url(database_url: str) -> str:
    if database_kind() != "postgresql":
        pytest.skip("PostgreSQL lease: set COMPANION_TEST_DATABASE_URL to a PostgreSQL database")
    return database_url


# --- the schedule table ----------------------------------------------------------------------


def test_the_table_lists_only_real_jobs_with_unique_names() -> None:
    names = [spec.name for spec in JOBS]
    assert len(names) == len(set(names))
    assert "deliver_pending" in names
    assert not any("cleanup" in n for n in names)
    for spec in JOBS:
        func = spec.resolve()  # the module exists and has the function
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        assert len(params) == 1, f"{spec.name} must take exactly (app)"
        assert spec.trigger["trigger"] in ("interval", "cron")


def test_register_jobs_schedules_every_row_with_safe_options(app: Flask) -> None:
    sched = BackgroundScheduler(timezone=dt.UTC)
    names = register_jobs(sched, app)

    assert names == [spec.name for spec in JOBS]
    jobs = {job.id: job for job in sched.get_jobs()}
    assert sorted(jobs) == sorted(names)
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time is None or job.misfire_grace_time >= 600
        assert str(job.trigger.timezone) == "UTC"
    deliver = jobs["deliver_pending"]
    assert deliver.trigger.interval == dt.timedelta(seconds=30)
    assert deliver.args[0] is app
    assert not sched.running


def test_a_job_whose_module_is_missing_cannot_be_registered(app: Flask) -> None:
    sched = BackgroundScheduler(timezone=dt.UTC)
    missing = JobSpec("zoom_drift", "companion.not_written_yet.jobs:check", every(minutes=5))
    with pytest.raises(ModuleNotFoundError):
        register_jobs(sched, app, jobs=[*JOBS, missing])
    with pytest.raises(ValueError, match="unique"):
        register_jobs(sched, app, jobs=[JOBS[0], JOBS[0]])
    assert sched.get_jobs() == []


def test_creating_the_web_app_starts_no_scheduler(database_url: str, tmp_path: Path) -> None:
    make_app(database_url, tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "APScheduler"]


# --- the lease -------------------------------------------------------------------------------


def test_file_lease_is_exclusive_and_taken_over_after_release(tmp_path: Path) -> None:
    first = FileLease(tmp_path / "companion.db.scheduler-lock")
    second = FileLease(tmp_path / "companion.db.scheduler-lock")

    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.still_held() and not second.still_held()

    first.release()
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()


def test_file_lease_counts_as_lost_when_its_file_is_replaced(tmp_path: Path) -> None:
    lease = FileLease(tmp_path / "lock")
    assert lease.try_acquire()
    (tmp_path / "lock").unlink()
    assert not lease.still_held()  # a new worker could lock a new file now
    lease.release()


def test_postgres_lease_is_exclusive_and_taken_over_after_release(database_url: str) -> None:
    url = postgres_url(database_url)
    first, second = PostgresLease(url), PostgresLease(url)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.still_held()
        assert second.holder().startswith("backend pid ")
        first.release()
        assert second.holder() == ""
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.dispose()
        second.dispose()


def test_postgres_lease_passes_on_when_the_holders_connection_dies(database_url: str) -> None:
    url = postgres_url(database_url)
    first, second = PostgresLease(url), PostgresLease(url)
    admin = create_engine(url)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        # What the server sees when the worker process is killed: its session ends.
        with admin.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'companion scheduler lease' "
                    "AND pid <> pg_backend_pid()"
                )
            ).all()
        assert killed
        poll(second.try_acquire, "the killed session's lease to be released")
        assert not first.still_held()
    finally:
        first.dispose()
        second.dispose()
        admin.dispose()


def test_the_lease_follows_the_database(app: Flask) -> None:
    lease = worker.lease_for(app)
    if database_kind() == "postgresql":
        assert isinstance(lease, PostgresLease)
        lease.dispose()
    else:
        assert isinstance(lease, FileLease)
        db_file = Path(app.config["DATABASE_URL"].removeprefix("sqlite:///"))
        assert lease.path == db_file.with_name(db_file.name + ".scheduler-lock")


def test_waiting_for_the_lease_logs_and_takes_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder, waiter = FileLease(tmp_path / "lock"), FileLease(tmp_path / "lock")
    assert holder.try_acquire()
    caplog.set_level(logging.INFO, logger="companion.worker")

    def release_once_the_waiter_waits() -> None:
        # Released when the waiter says it is waiting, not after a fixed time: on a loaded
        # machine the waiter's first try can come later than any timer.
        poll(lambda: worker.WAITING_MESSAGE in caplog.text, "the waiter to say it waits")
        holder.release()

    releaser = threading.Thread(target=release_once_the_waiter_waits, daemon=True)
    releaser.start()
    assert wait_for_lease(waiter, threading.Event(), poll_seconds=0.05, timeout=30)
    releaser.join(5)

    assert "another worker holds the scheduler lease" in caplog.text
    assert f"held by pid {os.getpid()} since" in caplog.text
    assert "taking over" in caplog.text
    waiter.release()


class UnreachableLease:
    """A lease whose database is down for the first few attempts."""

    description = "test lease"

    def __init__(self, failures: int):
        self.failures = failures

    def try_acquire(self) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection refused")
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        pass


def test_an_unreachable_database_is_retried_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="companion.worker")
    lease = UnreachableLease(failures=3)
    assert wait_for_lease(lease, threading.Event(), poll_seconds=0.01, timeout=5)
    assert caplog.text.count("cannot take the scheduler lease") == 1  # said once, not per try
    assert "reachable again" in caplog.text


def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    holder, waiter = FileLease(tmp_path / "lock"), FileLease(tmp_path / "lock")
    assert holder.try_acquire()
    started = time.monotonic()
    assert not wait_for_lease(waiter, threading.Event(), poll_seconds=0.05, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    holder.release()


# --- `companion worker --once` / `--job` -----------------------------------------------------


def test_worker_once_delivers_pending_mail(
    app: Flask, db_session: Session, org: Any, smtp: SmtpServer
) -> None:
    msg = queue(db_session, org)

    result = app.test_cli_runner().invoke(cli_main, ["worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "deliver_pending: ok (1)" in result.output
    assert [r.rcpt_tos for r in smtp.received] == [["pat@example.net"]]
    db_session.refresh(msg)
    assert msg.status == "sent"


def test_worker_job_runs_only_that_job(app: Flask, db_session: Session, org: Any) -> None:
    queue(db_session, org)  # held: no SMTP server configured
    result = app.test_cli_runner().invoke(cli_main, ["worker", "--job", "deliver_pending"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == ["deliver_pending: ok (0)"]


def test_worker_job_with_an_unknown_name_fails_clearly(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli_main, ["worker", "--job", "cleanup"])
    assert result.exit_code == 2
    assert "unknown job cleanup" in result.output


def test_worker_once_leaves_the_jobs_to_a_running_worker(app: Flask) -> None:
    holder = worker.lease_for(app)
    assert holder.try_acquire()
    try:
        result = app.test_cli_runner().invoke(cli_main, ["worker", "--once", "--wait", "0.2"])
    finally:
        holder.release()
    assert result.exit_code == 75
    assert "another worker holds the scheduler lease" in result.output


def test_run_once_reports_a_failing_job_and_still_runs_the_others(
    app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    specs = [
        JobSpec("boom", f"{__name__}:failing_job", every(minutes=1)),
        JobSpec("count", f"{__name__}:count_job", every(minutes=1)),
    ]
    w = Worker(app, jobs=specs, lease=FileLease(tmp_path / "lock"))

    assert w.run_once() is False

    assert CALLS == ["count"]
    status = w.status.snapshot()
    assert status["boom"]["failures"] == 1
    assert status["boom"]["last_error"] == "RuntimeError: the job broke"
    assert status["count"]["last_success_at"] is not None
    assert "job boom failed" in caplog.text
    with pytest.raises(KeyError):
        w.run_once(["nope"])


# --- the running scheduler -------------------------------------------------------------------


def run_in_thread(w: Worker) -> threading.Thread:
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    assert w.running.wait(10), "the worker did not start its scheduler"
    return thread


def test_worker_runs_deliver_pending_at_start_and_stops_cleanly(
    app: Flask, db_session: Session, org: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    queue(db_session, org)
    lease = FileLease(tmp_path / "lock")
    # Only the mail job: in this test every job shares the one rolled-back session, and jobs
    # running in parallel threads on one session race (in production each has its own).
    mail_only = [spec for spec in scheduler.JOBS if spec.name == "deliver_pending"]
    w = Worker(app, jobs=mail_only, lease=lease, check_seconds=0.05)
    thread = run_in_thread(w)
    try:
        assert len(smtp.handler.wait_for(1)) == 1
    finally:
        w.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert w.status.snapshot()["deliver_pending"]["last_result"] == 1
    assert FileLease(tmp_path / "lock").try_acquire()  # released on stop


def test_job_errors_are_logged_and_recorded(
    app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    specs = [JobSpec("boom", f"{__name__}:failing_job", every(hours=1), run_at_start=True)]
    w = Worker(app, jobs=specs, lease=FileLease(tmp_path / "lock"), check_seconds=0.05)
    thread = run_in_thread(w)
    try:
        poll(
            lambda: "boom" in w.status.snapshot() and w.status.records["boom"].failures,
            "the failing job to be recorded",
        )
    finally:
        w.stop()
        thread.join(10)
    assert "job boom failed" in caplog.text
    assert "RuntimeError('the job broke')" in caplog.text


def test_missed_runs_are_logged(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="companion.scheduler")
    status = JobStatus()
    sched = scheduler.make_scheduler()
    late = JobSpec(
        "late", f"{__name__}:count_job", every(hours=1), run_at_start=True, misfire_grace_time=1
    )
    register_jobs(sched, app, jobs=[late], status=status)
    sched.start(paused=True)
    try:
        # As if the process had been suspended past the run time and its grace: the run time is
        # moved into the past rather than waited for.
        job = sched.get_job("late")
        assert job is not None
        job.modify(next_run_time=job.next_run_time - dt.timedelta(seconds=5))
        sched.resume()
        poll(lambda: "late" in status.records, "the late run to be recorded")
    finally:
        sched.shutdown(wait=True)
    assert status.records["late"].missed == 1
    assert CALLS == []
    assert "job late missed its run" in caplog.text


class FlakyLease:
    """A lease that is lost once while held, as when the database connection drops."""

    description = "test lease"

    def __init__(self) -> None:
        self.acquired = 0
        self.lose = threading.Event()

    def try_acquire(self) -> bool:
        self.acquired += 1
        return True

    def still_held(self) -> bool:
        if self.lose.is_set():
            self.lose.clear()
            return False
        return True

    def release(self) -> None:
        pass


def test_a_lost_lease_stops_the_jobs_until_it_is_retaken(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    lease = FlakyLease()
    specs = [JobSpec("count", f"{__name__}:count_job", every(hours=1), run_at_start=True)]
    w = Worker(app, jobs=specs, lease=lease, check_seconds=0.05, poll_seconds=0.05)
    thread = run_in_thread(w)
    try:
        lease.lose.set()
        poll(
            lambda: lease.acquired >= 2 and w.running.is_set(),
            "the worker to take the lease again and run",
        )
    finally:
        w.stop()
        thread.join(10)
    assert "lost the scheduler lease" in caplog.text
    assert len(CALLS) == 2  # one run per time it held the lease


# --- two real worker processes ---------------------------------------------------------------


def _start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "companion", "worker", "--poll", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> str:
    """Read the process's output until a line contains ``needle``."""
    assert proc.stdout is not None
    found: list[str] = []
    seen: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if needle in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, f"no {needle!r} in output:\n{''.join(seen)}"
    return found[0]


@pytest.mark.slow
def test_a_second_worker_waits_and_takes_over_when_the_first_dies(
    database_url: str, tmp_path: Path
) -> None:
    if database_kind() == "postgresql":
        url = database_url
    else:
        url = f"sqlite:///{tmp_path / 'companion.db'}"
        migrate.upgrade(url)
    env = {
        **os.environ,
        "COMPANION_INSTANCE_PATH": str(tmp_path),
        "COMPANION_SECRET_KEY": SECRET,
        **TEST_KEYS_ENV,
        "COMPANION_DATABASE_URL": url,
        "COMPANION_SMTP_HOST": "",
        "PYTHONUNBUFFERED": "1",
    }
    first = _start_worker(env)
    second: subprocess.Popen[str] | None = None
    try:
        _wait_for_line(first, "worker holds the scheduler lease")
        second = _start_worker(env)
        _wait_for_line(second, "another worker holds the scheduler lease")
        # It goes on waiting rather than exiting: it is still there to take over below.
        assert second.poll() is None

        first.kill()  # no clean shutdown: the lease must still pass on
        first.wait(10)
        _wait_for_line(second, "worker holds the scheduler lease")

        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
