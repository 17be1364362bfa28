"""While the Zoom sandbox holds a call for seconds, nothing else waits: what the slow-Zoom tests
of every package share.

A real committed database of the test's own, companion served by a real WSGI server (not under
TESTING, so a request hands its Zoom work to a thread of its own as in production), and the Zoom
sandbox over loopback HTTP with a course already in Zoom. A test makes the sandbox hold the next
matching call (:meth:`Live.hold_next`), drives a request as a person does, waits until the call
is being held (:meth:`Live.wait_until_held`), and then checks that another connection writes and
a signed ``/zoom/webhook`` is answered at once (:meth:`Live.nothing_waits`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from flask import Flask
from sqlalchemy import Engine, select, text

from companion import migrate, work
from companion.accounts import services as accounts
from companion.courses import provisioning, zoomwork
from companion.courses import schedule as sched
from companion.courses.models import Course
from companion.db import job_session, make_engine
from companion.zoom import EXTENSION_KEY, client_from_config
from companion.zoom.webhooks import sandbox_webhook_secret, sign

from . import factories
from .conftest import _live_database_url, make_app
from .polling import poll
from .servers import WsgiServer
from .zoom_sandbox import SandboxZoom

HOLD = 4.0  # how long the sandbox holds the call
# An answer that waited for Zoom takes HOLD at least; one that did not comes back in well under a
# second on a quiet machine. The bound sits between the two with room for a CI machine whose two
# cores are busy with the other half of the suite (1.1 s was seen there), and under Zoom's 3 s.
AT_ONCE = 2.0
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

RowT = TypeVar("RowT")


@dataclass
class Live:
    app: Flask
    url: str
    engine: Engine
    zoom: SandboxZoom
    client: Any
    teacher_email: str
    token: str
    course_id: int
    held_at: float = 0.0

    def row(self, model: type[RowT], row_id: int) -> RowT:
        """One row as committed now, read in a session of its own."""
        with job_session(self.app) as session:
            found = session.get(model, row_id)
            assert found is not None, f"no {model.__name__} {row_id}"
            session.expunge(found)
            return found

    def rows(self, model: type[RowT]) -> list[RowT]:
        with job_session(self.app) as session:
            found = list(session.scalars(select(model).order_by(model.id)))  # type: ignore[attr-defined]
            session.expunge_all()
            return found

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(
            method, self.url + "/api/v1" + path, headers=headers, timeout=30, **kw
        )

    def hold_next(self, path: str, method: str) -> None:
        self.zoom.state.add_fault({"path": path, "method": method, "delay": HOLD})

    def wait_until_held(self) -> None:
        """Until the sandbox has taken the fault: the call is being held now."""
        poll(lambda: not self.zoom.state.faults(), "the sandbox to receive the Zoom call")
        self.held_at = time.monotonic()

    def nothing_waits(self) -> None:
        """Another connection writes, and a signed webhook is answered, at once."""
        started = time.monotonic()
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE organisations SET name = name"))
        wrote = time.monotonic() - started
        body = json.dumps(
            {
                "event": "meeting.started",
                "payload": {"account_id": "x", "object": {"id": "1", "uuid": "u==", "type": 8}},
                "event_ts": int(time.time() * 1000),
            }
        ).encode()
        stamp = str(int(time.time()))
        headers = {
            "x-zm-request-timestamp": stamp,
            "x-zm-signature": sign(sandbox_webhook_secret(self.app.config), stamp, body),
            "Content-Type": "application/json",
        }
        started = time.monotonic()
        answer = requests.post(self.url + "/zoom/webhook", data=body, headers=headers, timeout=30)
        answered = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert wrote < AT_ONCE, f"a write waited {wrote:.2f} s"
        assert answered < AT_ONCE, f"the webhook waited {answered:.2f} s"
        # ...and Zoom was still holding the call all that time.
        assert time.monotonic() - self.held_at < HOLD - 0.5

    def staff(self) -> requests.Session:
        web = requests.Session()
        token = csrf(web.get(self.url + "/login", timeout=30).text)
        signed_in = web.post(
            self.url + "/login",
            data={"email": self.teacher_email, "password": factories.PASSWORD, "csrf_token": token},
            timeout=30,
        )
        assert signed_in.status_code == 200 and "Sign out" in signed_in.text, signed_in.text[:500]
        return web


def csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token"
    return match.group(1)


@contextmanager
def serve(tmp_path: Path) -> Iterator[Live]:
    """companion and the Zoom sandbox served for real, with a teacher, an API token and a course
    already in Zoom (four weekly classes from next week)."""
    url = _live_database_url(tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(url, connection=conn)
    server = WsgiServer()
    app = make_app(url, tmp_path, TESTING=False, BASE_URL=server.url)
    zoom = SandboxZoom(str(tmp_path / "sandbox.sqlite3"), http=True)
    # Long enough to wait for the held answer (the tests' point is that nothing else waits).
    client = client_from_config(
        {"ZOOM_MODE": "sandbox", "SANDBOX_URL": zoom.server.url, "ZOOM_TIMEOUT_SECONDS": 15},
        max_retries=1,
        retry_base=0.01,
        retry_cap=0.05,
    )
    app.extensions[EXTENSION_KEY] = client
    start = dt.date.today() + dt.timedelta(days=7)
    with app.app_context(), job_session(app) as session:
        org = factories.organisation(session)
        teacher = factories.user(session, org, role="teacher")
        course = provisioning.create_course(
            session,
            actor=teacher,
            title="Cello ensemble",
            series=sched.Series(
                first_date=start,
                weekdays=(sched.WEEKDAYS[start.weekday()],),
                start_time=dt.time(17, 0),
                duration_minutes=45,
                timezone="Europe/London",
                class_count=4,
                end_date=None,
            ),
            now=dt.datetime.now(dt.UTC),
        ).course
        token = accounts.create_token(session, user=teacher, name="slow zoom")
        teacher_email, course_id = teacher.email, course.id
    # The course's meeting is made as after a request: committed first, then its Zoom work.
    with app.app_context():
        work.run_one(app, zoomwork.QUEUE, zoomwork.ZoomStep(client), course_id)
    with app.app_context(), job_session(app) as session:
        course = session.get(Course, course_id)
        assert course is not None and course.zoom_state == "created", course and course.zoom_error
    server.start(app)
    try:
        yield Live(app, server.url, engine, zoom, client, teacher_email, token, course_id)
    finally:
        server.stop()
        client.close()
        zoom.close()
        engine.dispose()
