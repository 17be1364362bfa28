"""Issue 10, items 2 and 7: short transactions, reads without the write lock, streams that end.

Each test serves companion over real HTTP on a committed database of its own (SQLite or the
suite's PostgreSQL), holds a page in the middle of rendering (a template hook waiting on an
Event), and meanwhile another connection writes: it must get in at once, not after the page.

* A GET page takes no write lock: a writer (``BEGIN IMMEDIATE`` on SQLite, the audit head's row
  lock on PostgreSQL) gets in while it renders.
* A POST holds the lock for its own statements only: its writes are committed (or, for an error
  page, rolled back) before its page renders.
* The webhook intake answers at once while a long read and a page render are open.
* The audit export reads from a transaction of its own: while a client reads it slowly, a
  signed webhook, a sign-in and `companion audit verify` all succeed promptly, and once it
  ended nothing holds the database.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import (
    Blueprint,
    Flask,
    before_render_template,
    has_request_context,
    render_template,
    request,
)
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session
from wtforms import Form, StringField
from wtforms.validators import DataRequired

from companion.access import public
from companion.audit import services as audit
from companion.audit import views as audit_views
from companion.audit.models import AuditEvent
from companion.db import get_session, kept_transaction, make_engine
from companion.errors import Conflict
from companion.security import csrf
from companion.webhooks.models import WebhookEvent
from companion.zoom.webhooks import sandbox_webhook_secret, sign

from . import factories
from .conftest import database_kind, make_app, own_database_url
from .live_db import companion_command, companion_env, signed_in_cookie
from .servers import WsgiServer

# Longer than any prompt answer may take; a gate that is never released fails the test here.
GATE_SECONDS = 15.0
PROMPT = 2.0  # "at once": well under the gate, and under Zoom's 3 s for the webhook


class RenderGate:
    """Holds the rendering of one template on one path until released."""

    def __init__(self, app: Flask, template: str, path: str):
        self.template, self.path = template, path
        self.entered = threading.Event()
        self.release = threading.Event()
        self.app = app
        before_render_template.connect(self._hold, app, weak=False)

    def _hold(self, _sender: Any, template: Any, context: Any, **_: Any) -> None:
        if template.name == self.template and request.path == self.path:
            self.entered.set()
            self.release.wait(GATE_SECONDS)

    def close(self) -> None:
        self.release.set()
        before_render_template.disconnect(self._hold, self.app)


class _RequiredForm(Form):
    name = StringField(validators=[DataRequired()])


# Views of the tests' own, to see what the request boundary does with a write request's
# transaction when the page renders: a success, a form re-shown with errors, a domain error,
# and an error answer whose changes are kept.
probe = Blueprint("tx_probe", __name__, url_prefix="/_tx")


@probe.post("/ok")
@public
@csrf.exempt
def probe_ok() -> Any:
    audit.record(get_session(), "tx.ok", actor_label="probe")
    return render_template("error.html", status=200, message="done")


@probe.post("/form-error")
@public
@csrf.exempt
def probe_form_error() -> Any:
    audit.record(get_session(), "tx.form_error", actor_label="probe")
    form = _RequiredForm()
    form.validate()
    return render_template("error.html", status=422, message="again", form=form), 422


@probe.post("/raise")
@public
@csrf.exempt
def probe_raise() -> Any:
    audit.record(get_session(), "tx.raise", actor_label="probe")
    raise Conflict("refused")


@probe.post("/keep")
@public
@csrf.exempt
def probe_keep() -> Any:
    with kept_transaction() as db:
        audit.record(db, "tx.keep", actor_label="probe")
    # Written after the kept block by the same failing request: rolled back with it.
    audit.record(get_session(), "tx.keep_after", actor_label="probe")
    return render_template("error.html", status=429, message="counted"), 429


# A GET that (wrongly) writes through its read session after another writer committed: the
# read transaction is swapped for a write one rather than upgraded (which SQLite refuses with
# "database is locked" once its snapshot is stale).
unplanned_read = threading.Event()
unplanned_go_on = threading.Event()


@probe.get("/unplanned")
@public
def probe_unplanned() -> Any:
    session = get_session()
    before = session.scalar(select(func.count(AuditEvent.id)))
    unplanned_read.set()
    unplanned_go_on.wait(GATE_SECONDS)
    audit.record(session, "tx.unplanned", actor_label="probe")
    return {"before": before}


@dataclass
class World:
    app: Flask
    engine: Engine
    url: str
    database_url: str
    instance: Path
    teacher_id: int
    lead_id: int
    teacher_email: str
    threads: list[threading.Thread] = field(default_factory=list)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    database_url = own_database_url(tmp_path, "tx", migrated=True)
    engine = make_engine(database_url)
    server = WsgiServer()
    app = make_app(database_url, tmp_path, TESTING=False, BASE_URL=server.url)
    app.register_blueprint(probe)
    with Session(engine) as session, session.begin():
        org = factories.organisation(session)
        teacher = factories.user(session, org, role="teacher", email="teacher@tx.example.org")
        lead = factories.user(session, org, role="safeguarding_lead", email="lead@tx.example.org")
        ids = (teacher.id, lead.id)
    server.start(app)
    try:
        yield World(app, engine, server.url, database_url, tmp_path, *ids, "teacher@tx.example.org")
    finally:
        server.stop()
        engine.dispose()


def write_elsewhere(engine: Engine) -> float:
    """Append to the audit trail from another connection; return how long it took.

    On SQLite this begins with BEGIN IMMEDIATE (the write lock); on PostgreSQL it locks the
    audit head's row, which any request that writes to the trail locks too.
    """
    started = time.monotonic()
    with Session(engine) as session, session.begin():
        audit.record(session, "tx.elsewhere", actor_label="another connection")
    return time.monotonic() - started


def in_thread(target: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run ``target`` in a thread; the returned dict gets its "result" or "error" and "thread"."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = target(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    out["thread"] = thread
    thread.start()
    return out


def finished(out: dict[str, Any], timeout: float = GATE_SECONDS + 5) -> Any:
    out["thread"].join(timeout)
    assert not out["thread"].is_alive(), "the request never finished"
    if "error" in out:
        raise out["error"]
    return out["result"]


def kinds(engine: Engine, kind: str) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.kind == kind)) or 0


def test_a_page_being_rendered_holds_no_write_lock(world: World) -> None:
    cookies = signed_in_cookie(world.app, world.engine, world.teacher_id)
    gate = RenderGate(world.app, "home.html", "/")
    try:
        page = in_thread(requests.get, world.url + "/", cookies=cookies, timeout=GATE_SECONDS + 5)
        assert gate.entered.wait(10), "the page never started rendering"
        assert write_elsewhere(world.engine) < PROMPT
        gate.release.set()
        response = finished(page)
    finally:
        gate.close()
    assert response.status_code == 200
    assert "Person" in response.text or "teacher" in response.text.lower()


def test_a_staff_page_touching_the_session_writes_it_in_a_short_transaction(
    world: World, clock: Any
) -> None:
    from companion.accounts.models import StaffSession

    cookies = signed_in_cookie(world.app, world.engine, world.teacher_id)
    clock.advance(minutes=5)  # the idle-time touch is due on the next page
    gate = RenderGate(world.app, "home.html", "/")
    try:
        page = in_thread(requests.get, world.url + "/", cookies=cookies, timeout=GATE_SECONDS + 5)
        assert gate.entered.wait(10)
        # The touch is already committed while the page renders, and nothing is locked.
        assert write_elsewhere(world.engine) < PROMPT
        with Session(world.engine) as session:
            touched = session.scalars(
                select(StaffSession).where(StaffSession.user_id == world.teacher_id)
            ).one()
            assert touched.last_seen_at > touched.created_at
        gate.release.set()
        assert finished(page).status_code == 200
    finally:
        gate.close()


@pytest.mark.parametrize(
    ("path", "status", "kept"),
    [("/_tx/ok", 200, True), ("/_tx/keep", 429, True), ("/_tx/form-error", 422, False)],
)
def test_a_write_request_ends_its_transaction_before_its_page_renders(
    world: World, path: str, status: int, kept: bool
) -> None:
    kind = "tx." + path.rsplit("/", 1)[1].replace("-", "_")
    gate = RenderGate(world.app, "error.html", path)
    try:
        answer = in_thread(requests.post, world.url + path, timeout=GATE_SECONDS + 5)
        assert gate.entered.wait(10), "the page never started rendering"
        assert write_elsewhere(world.engine) < PROMPT
        # Decided before the page: committed (a success, or kept), or rolled back (a form
        # shown again with its errors), whatever the page then takes to render.
        assert kinds(world.engine, kind) == (1 if kept else 0)
        gate.release.set()
        assert finished(answer).status_code == status
    finally:
        gate.close()
    assert kinds(world.engine, kind) == (1 if kept else 0)
    assert kinds(world.engine, "tx.keep_after") == 0


def test_kept_transaction_refuses_to_keep_earlier_writes(app: Flask, db_session: Any) -> None:
    """Only the block is kept: after another write it would keep that too, so it refuses."""
    with app.test_request_context("/", method="POST"):
        audit.record(get_session(), "tx.before", actor_label="probe")
        with (
            pytest.raises(RuntimeError, match="before the request's other writes"),
            kept_transaction(),
        ):
            pass


def test_an_error_page_rolls_back_and_holds_no_lock_while_it_renders(world: World) -> None:
    gate = RenderGate(world.app, "error.html", "/_tx/raise")
    try:
        answer = in_thread(requests.post, world.url + "/_tx/raise", timeout=GATE_SECONDS + 5)
        assert gate.entered.wait(10)
        assert write_elsewhere(world.engine) < PROMPT
        gate.release.set()
        assert finished(answer).status_code == 409
    finally:
        gate.close()
    assert kinds(world.engine, "tx.raise") == 0


def test_a_failed_sign_in_is_counted_and_the_lock_is_free_while_the_form_renders(
    world: World,
) -> None:
    http = requests.Session()
    login = http.get(world.url + "/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)  # type: ignore[union-attr]
    gate = RenderGate(world.app, "accounts/login.html", "/login")
    try:
        answer = in_thread(
            http.post,
            world.url + "/login",
            data={"email": world.teacher_email, "password": "wrong password", "csrf_token": token},
            timeout=GATE_SECONDS + 5,
        )
        assert gate.entered.wait(10)
        assert write_elsewhere(world.engine) < PROMPT
        assert kinds(world.engine, "signin.failed") == 1  # kept, and already committed
        gate.release.set()
        assert finished(answer).status_code in (401, 422)
    finally:
        gate.close()


def signed_webhook(world: World, uuid: str) -> requests.Response:
    document = {
        "event": "meeting.started",
        "payload": {
            "account_id": "AAAA",
            "object": {"id": "85746065", "uuid": uuid, "topic": "Class", "type": 8},
        },
        "event_ts": int(time.time() * 1000),
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "x-zm-request-timestamp": timestamp,
        "x-zm-signature": sign(sandbox_webhook_secret(world.app.config), timestamp, body),
        "Content-Type": "application/json",
    }
    return requests.post(world.url + "/zoom/webhook", data=body, headers=headers, timeout=10)


def long_read(engine: Engine) -> Any:
    """Another connection in the middle of a read transaction (a report, a backup)."""
    conn = engine.execution_options(companion_read=True).connect()
    conn.begin()
    conn.execute(text("SELECT count(*) FROM audit_events")).scalar()
    return conn


def test_the_webhook_intake_answers_at_once_while_a_long_read_and_a_page_are_open(
    world: World,
) -> None:
    cookies = signed_in_cookie(world.app, world.engine, world.teacher_id)
    reader = long_read(world.engine)
    gate = RenderGate(world.app, "home.html", "/")
    try:
        page = in_thread(requests.get, world.url + "/", cookies=cookies, timeout=GATE_SECONDS + 5)
        assert gate.entered.wait(10)
        started = time.monotonic()
        response = signed_webhook(world, "TxLongReadAAAAAAAAAAAA==")
        assert response.status_code == 200
        assert time.monotonic() - started < PROMPT
        gate.release.set()
        assert finished(page).status_code == 200
    finally:
        gate.close()
        reader.close()
    with Session(world.engine) as session:
        assert session.scalar(select(func.count(WebhookEvent.id))) == 1


def nothing_holds_the_database(engine: Engine) -> None:
    assert write_elsewhere(engine) < PROMPT
    if engine.dialect.name == "sqlite":
        # A checkpoint that truncates the log succeeds only when no reader holds a snapshot
        # (outside any transaction: the raw connection is in autocommit mode).
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _log, _done = cursor.fetchone()
            assert busy == 0
        finally:
            raw.close()
        return
    with engine.connect() as conn:
        open_transactions = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        ).scalar()
        assert open_transactions == 0


def test_a_slow_audit_export_holds_nothing_and_ends_cleanly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(world.engine) as session, session.begin():
        for n in range(400):
            audit.record(session, "tx.filler", actor_label=f"filler {n}", note="x" * 200)
    # The client reads the first part, then stops reading for a while; the body's generator is
    # held there, inside its own read session.
    first_part_sent = threading.Event()
    go_on = threading.Event()
    real_rows = audit_views._csv_rows

    def slow_rows(*args: Any, **kwargs: Any) -> Iterator[str]:
        rows = real_rows(*args, **kwargs)
        yield next(rows)
        first_part_sent.set()
        go_on.wait(GATE_SECONDS)
        yield from rows

    monkeypatch.setattr(audit_views, "_csv_rows", slow_rows)
    cookies = signed_in_cookie(world.app, world.engine, world.lead_id)
    export = requests.get(
        world.url + "/audit/export.csv", cookies=cookies, stream=True, timeout=GATE_SECONDS + 5
    )
    try:
        assert export.status_code == 200
        chunks = export.iter_content(chunk_size=4096)
        first = next(chunks)
        assert first.startswith(b"id,at_utc")
        assert first_part_sent.wait(10)

        # Meanwhile: a signed webhook, a sign-in and `companion audit verify`, all at once.
        started = time.monotonic()
        webhook = signed_webhook(world, "TxExportAAAAAAAAAAAAAA==")
        assert webhook.status_code == 200 and time.monotonic() - started < PROMPT

        http = requests.Session()
        login = http.get(world.url + "/login", timeout=10).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)  # type: ignore[union-attr]
        started = time.monotonic()
        signed_in = http.post(
            world.url + "/login",
            data={
                "email": world.teacher_email,
                "password": factories.PASSWORD,
                "csrf_token": token,
            },
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302 and "/login" not in signed_in.headers["Location"]
        assert time.monotonic() - started < PROMPT

        env = companion_env(world.database_url, world.instance)
        verified = companion_command(["audit", "verify"], env, timeout=60)
        assert verified.returncode == 0, verified.stderr
        assert "Audit trail intact" in verified.stdout
        assert export.raw is not None and not export.raw.closed  # still streaming

        go_on.set()
        body = first + b"".join(chunks)
    finally:
        go_on.set()
        export.close()
    lines = body.decode().splitlines()
    assert sum(1 for line in lines if ",tx.filler," in line) == 400
    nothing_holds_the_database(world.engine)


def test_read_only_requests_use_deferred_transactions_and_writes_wait_their_turn(
    world: World,
) -> None:
    """On SQLite, what a GET and a POST begin with (the statement log of the served app)."""
    if database_kind() != "sqlite":
        pytest.skip("BEGIN IMMEDIATE is SQLite's")
    from sqlalchemy import event

    engine = world.app.extensions["companion.engine"]
    seen: list[tuple[str, str]] = []

    def log(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(("BEGIN", "COMMIT")) and has_request_context():
            seen.append((request.method, statement))

    event.listen(engine, "before_cursor_execute", log)
    try:
        cookies = signed_in_cookie(world.app, world.engine, world.teacher_id)
        assert requests.get(world.url + "/", cookies=cookies, timeout=10).status_code == 200
        assert requests.post(world.url + "/_tx/ok", timeout=10).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", log)
    gets = [s for m, s in seen if m == "GET"]
    posts = [s for m, s in seen if m == "POST"]
    assert gets and "BEGIN IMMEDIATE" not in gets
    assert "BEGIN IMMEDIATE" in posts


def test_a_get_writing_through_its_read_session_after_another_commit_still_succeeds(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    unplanned_read.clear()
    unplanned_go_on.clear()
    answer = in_thread(requests.get, world.url + "/_tx/unplanned", timeout=GATE_SECONDS + 5)
    try:
        assert unplanned_read.wait(10)
        assert write_elsewhere(world.engine) < PROMPT  # committed after the GET's first read
    finally:
        unplanned_go_on.set()
    response = finished(answer)
    assert response.status_code == 200, response.text
    assert kinds(world.engine, "tx.unplanned") == 1
    # And the code that did it is named in the log, to be moved into write_transaction().
    assert any("GET /_tx/unplanned wrote through" in r.getMessage() for r in caplog.records)
