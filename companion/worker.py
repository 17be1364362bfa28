"""`companion worker`: the processes that run the schedule and work the queues.

However many web processes and workers are started, only the worker holding the **scheduler
lease** runs the periodic schedule; the others wait and take over when it dies. On PostgreSQL
every worker also runs the jobs that work a queue (``JobSpec.shared``: mail, webhook events,
course and registrant Zoom work, Zoom deletions), whose items are claimed one at a time with
``FOR UPDATE SKIP LOCKED`` (``companion.work.claim_next``), so that any number of workers share
the items and each is done once. On SQLite (one writer at a time) the lease holder runs it all.

The lease:

* PostgreSQL: a session-level ``pg_try_advisory_lock`` held on a dedicated connection for the
  life of the worker. The server releases it the moment that connection ends, so a killed
  worker hands over without a timeout to wait for.
* SQLite: an exclusive ``flock`` on a lock file next to the database; the kernel releases it
  when the process exits, however it exits.

Jobs are also written to be harmless if they ever run twice (see ``companion.mail.jobs``), so
the lease is the guarantee of "exactly one scheduler" and not the only line of defence.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from flask import Flask
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from .scheduler import JOBS, JobSpec, JobStatus, make_scheduler, register_jobs, run_job

log = logging.getLogger(__name__)

# pg_advisory_lock key: the ASCII bytes of "companio" read as a big-endian bigint, so the
# lock is recognisable in pg_locks (classid/objid) and unlikely to collide with another app.
ADVISORY_LOCK_KEY = int.from_bytes(b"companio", "big")

WAITING_MESSAGE = "another worker holds the scheduler lease"


class Lease(Protocol):
    """Exclusive right to run the scheduler."""

    description: str

    def try_acquire(self) -> bool:
        """Take the lease if it is free; never blocks."""

    def still_held(self) -> bool:
        """Whether the lease taken earlier is still ours (the connection or file is intact)."""

    def release(self) -> None:
        """Give the lease up; safe to call when not held."""


class FileLease:
    """An exclusive ``flock`` on a file; for SQLite, whose database is a local file anyway."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.description = f"lock file {self.path}"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for a person looking at the file; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {dt.datetime.now(dt.UTC).isoformat()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lease, as the holder wrote it into the file (best effort)."""
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip()[:200]
        except OSError:
            return ""

    def still_held(self) -> bool:
        if self._fd is None:
            return False
        # The file is never deleted by us; if someone deletes or replaces it, a new worker
        # would lock the new file, so treat that as losing the lease.
        try:
            return os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class PostgresLease:
    """A session-level advisory lock on a connection of its own, outside the pool."""

    def __init__(self, url: str, key: int = ADVISORY_LOCK_KEY):
        self.key = key
        self.description = f"PostgreSQL advisory lock {key}"
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={
                "application_name": "companion scheduler lease",
                "connect_timeout": 10,
                # Notice a dead server or network within about half a minute.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
            },
        )
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def holder(self) -> str:
        """The server process holding the lock and where it connects from (best effort)."""
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                        "AND l.classid = :hi AND l.objid = :lo"
                    ),
                    {"hi": self.key >> 32, "lo": self.key & 0xFFFFFFFF},
                ).first()
        except Exception:
            return ""
        if row is None:
            return ""
        since = row.backend_start.isoformat(timespec="seconds") if row.backend_start else "?"
        return f"backend pid {row.pid} from {row.client_addr or 'local socket'} since {since}"

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            # A session lock lives exactly as long as its session; a live session means held.
            self._conn.execute(text("SELECT 1"))
        except Exception as exc:
            first_line = (str(exc).splitlines() or [repr(exc)])[0]
            log.error("the scheduler lease connection failed: %s", first_line)
            self._close()
            return False
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()


def lease_for(app: Flask) -> FileLease | PostgresLease:
    """The lease that matches the app's database."""
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() == "postgresql":
        return PostgresLease(app.config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            db_path = Path(database)
            return FileLease(db_path.with_name(db_path.name + ".scheduler-lock"))
        return FileLease(Path(app.instance_path) / "scheduler.lock")
    raise ValueError(f"no scheduler lease for the {url.get_backend_name()} database")


def wait_for_lease(
    lease: Lease,
    stop: threading.Event,
    *,
    poll_seconds: float = 5,
    timeout: float | None = None,
    log_every_seconds: float = 60,
) -> bool:
    """Take the lease, polling while another worker holds it; False if stopped or timed out."""
    started = time.monotonic()
    last_logged: float | None = None
    last_failure: str | None = None
    while not stop.is_set():
        try:
            acquired = lease.try_acquire()
        except Exception as exc:
            # The database may be restarting; a worker that exits here would leave no scheduler
            # at all, so it keeps trying (and says so once per distinct error).
            if str(exc) != last_failure:
                log.warning(
                    "cannot take the scheduler lease (%s): %s; retrying", lease.description, exc
                )
                last_failure = str(exc)
        else:
            if acquired:
                if last_logged is not None:
                    log.info("the other worker is gone; taking over the scheduler")
                elif last_failure is not None:
                    log.info("the scheduler lease is reachable again; taking it")
                return True
            last_failure = None
        now = time.monotonic()
        if timeout is not None and now - started >= timeout:
            return False
        if last_failure is None and (last_logged is None or now - last_logged >= log_every_seconds):
            holder = getattr(lease, "holder", lambda: "")()
            log.info(
                "%s (%s%s); waiting to take over",
                WAITING_MESSAGE,
                lease.description,
                f", held by {holder}" if holder else "",
            )
            last_logged = now
        wait = poll_seconds if timeout is None else min(poll_seconds, timeout - (now - started))
        stop.wait(max(wait, 0.01))
    return False


class Worker:
    """Runs the schedule while it holds the lease; waits for the lease otherwise."""

    def __init__(
        self,
        app: Flask,
        *,
        jobs: Iterable[JobSpec] = JOBS,
        lease: Lease | None = None,
        poll_seconds: float = 5,
        check_seconds: float = 10,
        share_queues: bool | None = None,
    ):
        self.app = app
        self.jobs = tuple(jobs)
        self.lease: Lease = lease if lease is not None else lease_for(app)
        if share_queues is None:
            share_queues = make_url(app.config["DATABASE_URL"]).get_backend_name() == "postgresql"
        self.share_queues = share_queues
        self.poll_seconds = poll_seconds
        self.check_seconds = check_seconds
        self.status = JobStatus()
        self.stop_event = threading.Event()
        # Set while this worker holds the lease and its scheduler runs (tests and health).
        self.running = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT via :meth:`run_until_signalled`)."""
        for spec in self.jobs:
            spec.resolve()  # a broken row stops the worker now, not when the job is due
        shared = [spec for spec in self.jobs if spec.shared and self.share_queues]
        leased = [spec for spec in self.jobs if spec not in shared]
        queues = None
        if shared:
            queues = make_scheduler()
            names = register_jobs(queues, self.app, jobs=shared, status=self.status)
            queues.start()
            log.info("worker works the shared queues: %s", ", ".join(names))
        try:
            while not self.stop_event.is_set():
                if not wait_for_lease(self.lease, self.stop_event, poll_seconds=self.poll_seconds):
                    break
                try:
                    self._run_scheduler(leased)
                finally:
                    self.lease.release()
        finally:
            if queues is not None:
                # As for the schedule: the running item finishes, no new one starts.
                queues.shutdown(wait=True)
        log.info("worker stopped")

    def _run_scheduler(self, jobs: Iterable[JobSpec]) -> None:
        scheduler = make_scheduler()
        names = register_jobs(scheduler, self.app, jobs=jobs, status=self.status)
        scheduler.start()
        self.running.set()
        log.info(
            "worker holds the scheduler lease (%s); jobs: %s",
            self.lease.description,
            ", ".join(names),
        )
        try:
            while not self.stop_event.wait(self.check_seconds):
                if not self.lease.still_held():
                    log.error("lost the scheduler lease; stopping jobs and waiting to retake it")
                    break
        finally:
            self.running.clear()
            # Let a running job finish: every job commits its own work and is safe to stop
            # between runs, not halfway through one.
            scheduler.shutdown(wait=True)
            log.info("scheduler stopped; %s", self.status.summary())

    def run_until_signalled(self) -> None:
        """Run in the foreground; SIGTERM or SIGINT stops the worker after the running job."""

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping after the running job", signal.Signals(signum).name)
            self.stop()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def run_once(self, names: Iterable[str] | None = None, *, wait_seconds: float = 10) -> bool:
        """Run the given jobs (default: all) once, in order, under the lease.

        Returns True when every job succeeded. Raises :class:`LeaseBusy` when another worker
        keeps the lease for longer than ``wait_seconds``.
        """
        wanted = list(names) if names is not None else [spec.name for spec in self.jobs]
        by_name = {spec.name: spec for spec in self.jobs}
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise KeyError(f"unknown job {', '.join(unknown)}; known: {', '.join(by_name)}")
        if not wait_for_lease(
            self.lease,
            self.stop_event,
            poll_seconds=min(self.poll_seconds, 1),
            timeout=wait_seconds,
        ):
            raise LeaseBusy(f"{WAITING_MESSAGE} ({self.lease.description}); it runs the jobs")
        ok = True
        try:
            for name in wanted:
                try:
                    result = run_job(self.app, by_name[name], self.status)
                except Exception:
                    log.exception("job %s failed", name)
                    ok = False
                else:
                    log.info("job %s: %r", name, result)
        finally:
            self.lease.release()
        return ok


class LeaseBusy(Exception):
    """Another worker holds the scheduler lease."""


@contextlib.contextmanager
def quiet_scheduler_logs(level: int) -> Iterator[None]:
    """APScheduler logs every run at INFO; keep that for debug logging only."""
    logger = logging.getLogger("apscheduler.executors.default")
    previous = logger.level
    if level > logging.DEBUG:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)
