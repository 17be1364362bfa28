"""Issue 14, item 3: several `companion worker` processes on one PostgreSQL database.

Three real workers (subprocesses) share 60 messages sent to a real SMTP server on loopback:

* every message reaches the server exactly once, and more than one worker sent some (the
  claims are ``FOR UPDATE SKIP LOCKED``, one item at a time: ``companion.work.claim_next``);
* exactly one worker holds the scheduler lease and only it runs the periodic schedule; killed
  with SIGKILL, another takes the lease over;
* a worker killed (SIGKILL) while the SMTP server holds its message leaves the message
  ``sending``; once its claim runs out, a remaining worker hands it over as the outbox's rule
  says (``uncertain``: it may have been sent, so the admin decides), and it is never sent twice.
  The claim's ten minutes are not waited out: the test moves the claim's end into the past,
  which is what the passing of those minutes does to the row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from companion import ROOT
from companion.db import make_engine, utcnow
from companion.mail import services as mail_services
from companion.mail.models import OutboxMessage

from ..conftest import own_database_url
from ..live_db import companion_env
from ..mail.smtp_server import SmtpServer
from ..polling import poll

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.serial]

MESSAGES = 60
# Periodic jobs that run at a worker's start and belong to the lease holder only.
LEASED_AT_START = ("course_drift_check", "reconcile_recordings", "recordings_retention")


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for raw in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if raw.startswith("{"):
                found.append(json.loads(raw))
        return found

    def said(self, text: str) -> list[str]:
        return [line["message"] for line in self.lines() if text in line["message"]]

    def holds_lease(self) -> bool:
        return any(m.startswith("worker holds the scheduler lease") for m in self.said("lease"))

    def sent(self) -> int:
        total = 0
        for message in self.said("mail: "):
            for part in message.removeprefix("mail: ").split(", "):
                count, _, what = part.partition(" ")
                if what == "sent":
                    total += int(count)
        return total


def tcp_inode(local_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                return fields[9]
    return None


def pid_holding(local_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` has the socket whose local port is ``local_port`` (the SMTP client)."""
    inode = tcp_inode(local_port)
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[str, Any, SmtpServer]]:
    if not os.environ.get("COMPANION_TEST_DATABASE_URL", "").startswith("postgres"):
        pytest.skip("several workers share queues on PostgreSQL: set COMPANION_TEST_DATABASE_URL")
    url = own_database_url(tmp_path, "workers", migrated=True)
    engine = make_engine(url)
    server = SmtpServer(hold=0.2).start()
    peers: list[int] = []
    original = server.handler.handle_DATA

    async def note_peer(smtp: Any, session: Any, envelope: Any) -> str:
        peers.append(int(session.peer[1]))
        return await original(smtp, session, envelope)

    server.handler.handle_DATA = note_peer  # type: ignore[method-assign]
    server.peers = peers  # type: ignore[attr-defined]
    try:
        yield url, engine, server
    finally:
        server.stop()
        engine.dispose()


def start_worker(tmp_path: Path, url: str, server: SmtpServer, n: int) -> WorkerProcess:
    env = companion_env(
        url,
        tmp_path,
        COMPANION_SMTP_HOST=server.host,
        COMPANION_SMTP_PORT=str(server.port),
        COMPANION_SMTP_SECURITY="none",
        COMPANION_LOG_LEVEL="debug",
        COMPANION_LOG_FORMAT="json",
    )
    log = tmp_path / f"worker-{n}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "companion", "worker", "--poll", "0.2"],
            env=env,
            cwd=str(ROOT),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(process, log)


def queue_messages(engine: Any, addresses: list[str]) -> None:
    with Session(engine) as session, session.begin():
        for address in addresses:
            mail_services.queue(
                session,
                to_address=address,
                subject="Your class",
                body="Hello.\n",
                kind="test",
                now=utcnow(),
                smtp_enabled=True,
            )


def statuses(engine: Any) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return {str(status): int(count) for status, count in rows}


def stop_all(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.process.wait()


def test_workers_share_the_queues_and_one_runs_the_schedule(
    tmp_path: Path, setting: tuple[str, Any, SmtpServer]
) -> None:
    url, engine, server = setting
    addresses = [f"parent{n:02d}@families.test" for n in range(MESSAGES)]
    queue_messages(engine, addresses)
    workers = [start_worker(tmp_path, url, server, n) for n in range(3)]
    try:
        poll(
            lambda: statuses(engine) == {"sent": MESSAGES},
            f"the workers to send all {MESSAGES} messages",
            timeout=240,
        )
        # Each message reached the server exactly once.
        received = sorted(r.rcpt_tos[0] for r in server.received)
        assert received == addresses
        ids = [r.message["Message-ID"] for r in server.received]
        assert len(set(ids)) == MESSAGES
        poll(lambda: all(w.said("worker works the shared queues") for w in workers), "starts")
        sent = {w.pid: w.sent() for w in workers}
        assert sum(sent.values()) == MESSAGES, sent
        assert sum(1 for n in sent.values() if n) >= 2, f"one worker sent everything: {sent}"

        # One lease holder, and only it runs the periodic jobs.
        holders = poll(
            lambda: [w for w in workers if w.holds_lease()],
            "a worker to take the lease",
        )
        assert len(holders) == 1
        [holder] = holders
        poll(
            lambda: all(holder.said(f"job {job} done") for job in LEASED_AT_START),
            "the lease holder to run the schedule's start-up jobs",
        )
        others = [w for w in workers if w is not holder]
        for other in others:
            for job in LEASED_AT_START:
                assert not other.said(f"job {job} done"), (job, other.pid)
            assert other.said("another worker holds the scheduler lease")

        # The holder is killed: another takes the lease over, only one.
        os.kill(holder.pid, signal.SIGKILL)
        holder.process.wait()
        successors = poll(
            lambda: [w for w in others if w.holds_lease()],
            "another worker to take the lease over",
            timeout=60,
        )
        assert len(successors) == 1
        [successor] = successors
        poll(
            lambda: all(successor.said(f"job {job} done") for job in LEASED_AT_START),
            "the new holder to run the schedule",
        )

        # A worker killed while the server holds its message.
        server.handler.hold = 120
        queue_messages(engine, ["late@families.test"])
        poll(server.handler.holding.is_set, "a worker to hand the late message over", timeout=90)
        alive = [w for w in others if w.process.poll() is None]
        sender = pid_holding(server.peers[-1], [w.pid for w in alive])  # type: ignore[attr-defined]
        assert sender is not None
        os.kill(sender, signal.SIGKILL)
        [survivor] = [w for w in alive if w.pid != sender]
        assert statuses(engine) == {"sent": MESSAGES, "sending": 1}
        with Session(engine) as session, session.begin():
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "sending")
                .values(claimed_until=utcnow().replace(year=2000))
            )
        poll(
            lambda: statuses(engine) == {"sent": MESSAGES, "uncertain": 1},
            "the surviving worker to hand the killed worker's message to the admin",
            timeout=90,
        )
        assert survivor.said("may have been sent")
        assert [r.rcpt_tos[0] for r in server.received].count("late@families.test") == 1
    finally:
        stop_all(workers)
