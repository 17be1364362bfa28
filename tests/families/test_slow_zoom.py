"""While Zoom holds a registrant call for seconds, nothing else waits: another connection writes
and a signed /zoom/webhook is answered at once (enrol, CSV import, retry, withdraw, the sync job).

A real committed database of its own and real HTTP servers: companion and the Zoom sandbox.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, select, text

from companion import migrate, work
from companion.accounts import services as accounts
from companion.courses import schedule as sched
from companion.courses import zoomwork
from companion.courses.models import Course
from companion.courses.provisioning import create_course
from companion.db import job_session, make_engine
from companion.families import jobs
from companion.families.models import Family
from companion.zoom import EXTENSION_KEY, client_from_config
from companion.zoom.webhooks import sandbox_webhook_secret, sign

from .. import factories
from ..conftest import WsgiServer, _live_database_url, make_app
from ..courses.test_sandbox_integration import SandboxZoom

REAL_CLOCK = True
HOLD = 4.0  # how long the sandbox holds the call
AT_ONCE = 1.0
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


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

    def family(self, family_id: int) -> Family:
        with job_session(self.app) as session:
            family = session.get(Family, family_id)
            assert family is not None
            session.expunge(family)
            return family

    def families(self) -> list[Family]:
        with job_session(self.app) as session:
            found = list(session.scalars(select(Family).order_by(Family.id)))
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


def poll(done: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    url = _live_database_url(tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(url, connection=conn)
    server = WsgiServer()
    app = make_app(url, tmp_path, TESTING=False, BASE_URL=server.url)
    zoom = SandboxZoom(str(tmp_path / "sandbox.sqlite3"))
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
        course = create_course(
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


REGISTRANTS = "/v2/meetings/*/registrants"


def enrol_over_http(live: Live, first: str = "Amira") -> int:
    started = time.monotonic()
    answer = live.api(
        "POST",
        "/families",
        json={
            "course_id": live.course_id,
            "child_first_name": first,
            "child_last_name": "Khan",
            "contacts": [{"name": "Rana Khan", "email": f"{first.lower()}@example.net"}],
        },
    )
    assert answer.status_code == 201, answer.text
    # The teacher has the family at once, pending in Zoom, however slow Zoom is.
    assert time.monotonic() - started < AT_ONCE
    assert answer.json()["zoom"]["state"] == "pending"
    return int(answer.json()["id"])


def registered(live: Live, family_id: int) -> Family:
    return poll(
        lambda: (f := live.family(family_id)).zoom_state == "registered" and f,
        "the family to be registered",
    )


def test_enrol_while_zoom_is_slow(live: Live) -> None:
    live.hold_next(REGISTRANTS, "POST")
    family_id = enrol_over_http(live)
    live.wait_until_held()
    live.nothing_waits()
    assert live.family(family_id).zoom_state == "pending"  # a reload shows the progress
    family = registered(live, family_id)
    (registrant,) = live.zoom.state.registrants_of(live.zoom.meetings()[0]["id"])
    assert family.zoom_registrant_id == registrant["id"]


def test_retry_while_zoom_is_slow(live: Live) -> None:
    live.zoom.state.add_fault({"path": REGISTRANTS, "method": "POST", "status": 400})
    family_id = enrol_over_http(live)
    poll(lambda: live.family(family_id).zoom_state == "failed", "Zoom to refuse")
    web = live.staff()
    detail = f"{live.url}/courses/{live.course_id}/families/{family_id}"
    token = csrf(web.get(detail, timeout=30).text)
    live.hold_next(REGISTRANTS, "POST")
    started = time.monotonic()
    answer = web.post(detail + "/retry", data={"csrf_token": token}, timeout=30)
    assert answer.status_code == 200 and time.monotonic() - started < AT_ONCE
    assert "trying Zoom again now" in answer.text
    live.wait_until_held()
    live.nothing_waits()
    registered(live, family_id)
    assert len(live.zoom.state.registrants_of(live.zoom.meetings()[0]["id"])) == 1


def test_withdraw_while_zoom_is_slow(live: Live) -> None:
    family_id = enrol_over_http(live)
    registered(live, family_id)
    live.hold_next(REGISTRANTS + "/status", "PUT")
    started = time.monotonic()
    answer = live.api("POST", f"/families/{family_id}/withdraw")
    assert answer.status_code == 200 and time.monotonic() - started < AT_ONCE
    assert answer.json()["zoom"]["state"] == "cancelling"
    live.wait_until_held()
    live.nothing_waits()
    poll(lambda: live.family(family_id).zoom_state == "cancelled", "the cancellation")
    meeting = live.zoom.meetings()[0]["id"]
    assert live.zoom.state.registrants_of(meeting) == []
    assert len(live.zoom.state.registrants_of(meeting, "denied")) == 1


def test_a_csv_import_calls_zoom_only_in_the_sync_job_and_nothing_waits(live: Live) -> None:
    rows = ["child_first_name,child_last_name,contact1_name,contact1_email"]
    rows += [f"Child{n},Khan,Parent {n},parent{n}@example.net" for n in range(200)]
    web = live.staff()
    page = f"{live.url}/courses/{live.course_id}/families/import"
    token = csrf(web.get(page, timeout=30).text)
    live.zoom.state.reset_stats()
    answer = web.post(
        page,
        data={"csrf_token": token},
        files={"file": ("families.csv", "\n".join(rows).encode(), "text/csv")},
        timeout=60,
    )
    assert answer.status_code == 200 and "200 families enrolled" in answer.text, answer.text[-800:]
    # The request recorded 200 families and asked Zoom nothing.
    assert live.zoom.state.stats()["total"] == 0
    families = live.families()
    assert len(families) == 200 and {f.zoom_state for f in families} == {"pending"}

    # The worker registers them; the first call is held.
    live.hold_next(REGISTRANTS, "POST")
    ids = [f.id for f in families[:3]]
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(jobs.sync_zoom(live.app, ids)))
    worker.start()
    try:
        live.wait_until_held()
        live.nothing_waits()
    finally:
        worker.join(timeout=60)
    assert result == {"registered": 3}
    assert len(live.zoom.state.registrants_of(live.zoom.meetings()[0]["id"])) == 3


def test_the_sync_job_while_zoom_is_slow(live: Live) -> None:
    live.zoom.state.add_fault({"path": REGISTRANTS, "method": "POST", "status": 503})
    family_id = enrol_over_http(live)
    family = poll(
        lambda: (f := live.family(family_id)).zoom_next_attempt_at is not None and f,
        "the attempt to be postponed",
    )
    live.hold_next(REGISTRANTS, "GET")  # the retry first looks for a registrant
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(jobs.sync_zoom(live.app, now=family.zoom_next_attempt_at))
    )
    worker.start()
    try:
        live.wait_until_held()
        live.nothing_waits()
    finally:
        worker.join(timeout=60)
    assert result == {"registered": 1}
    assert len(live.zoom.state.registrants_of(live.zoom.meetings()[0]["id"])) == 1
