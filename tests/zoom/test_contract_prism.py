"""CONTRACT: every kind of request companion's Zoom client sends is one Zoom's own spec accepts.

The real :class:`ZoomClient` (its URL building, query parameters, encoding and JSON) sends each
request to Stoplight Prism serving Zoom's OpenAPI document (``tests/zoom_spec``, patched).
Prism names whatever the spec does not allow in an ``sl-violations`` header; a hook on the
client's ``requests.Session`` records that header for every answer. Each request must come back
with no violations and with a 2xx status the spec documents for its operation.

The bodies are the ones companion builds, not hand-written copies: the courses and families
services run against the Zoom sandbox (in process, through the real client) behind a recorder,
and every call they made is sent again through the real client to Prism. Options the services
do not use (yet) are sent by calling the client directly. A negative control proves the check
can fail: a broken body sent the same way is reported.

One disagreement between the spec and Zoom's own prose is excused, narrowly: a series' local
``start_time`` (see LOCAL_START below); the same request with the start in UTC must pass in full.

Prism's spec has no OAuth endpoint, so a tiny loopback token endpoint stands in for Zoom's.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, current_app
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from companion.courses import changes, safety, timetable
from companion.courses import schedule as sched
from companion.db import Clock
from companion.families import enrolment, registrants
from companion.families import jobs as family_jobs
from companion.families.people import ContactInput
from companion.zoom import (
    EXTENSION_KEY,
    RequestBudget,
    TokenCache,
    ZoomClient,
    ZoomError,
    ZoomValidationError,
)

from ..factories import NOW, check, make_course, series, settle, start
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.prism

MEETING_ID = 81234567890  # Zoom meeting ids are 11 digits: more than 32 bits
REGISTRANT_ID = "9tboDiHUQAeOnbmudzWa5g"
# An instance UUID that starts with "/" and holds "//": Zoom asks for it to be encoded twice.
AWKWARD_UUID = "/ajXp112QmuoKj4854875//w=="
AWKWARD_UUID_IN_PATH = "%252FajXp112QmuoKj4854875%252F%252Fw%253D%253D"
RECORDING_FILE_ID = "a2f19f96-9294-4f51-8134-6f0eea108eb2"


# --- a stand-in for Zoom's OAuth endpoint --------------------------------------------------------


def _token_endpoint(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Zoom's Server-to-Server grant, as far as the client needs it."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    form = parse_qs(environ["wsgi.input"].read(size).decode())
    ok = (
        environ["REQUEST_METHOD"] == "POST"
        and form.get("grant_type") == ["account_credentials"]
        and environ.get("HTTP_AUTHORIZATION", "").startswith("Basic ")
    )
    if not ok:
        start_response("400 Bad Request", [("Content-Type", "application/json")])
        return [b'{"reason":"unsupported grant type","error":"unsupported_grant_type"}']
    body = {
        "access_token": "contract-test-token",
        "token_type": "bearer",
        "expires_in": 3599,
        "scope": "meeting:read:admin meeting:write:admin recording:read:admin",
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, _token_endpoint, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/oauth/token"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- what Prism said about each request ----------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    method: str
    url: str
    body: Any
    status: int
    violations: list[dict[str, Any]] | None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


class Wire:
    """The client's ``requests.Session``, with a hook that keeps Prism's verdict on each request."""

    def __init__(self, prism_url: str):
        self.prism_url = prism_url
        self.session = requests.Session()
        self.session.hooks["response"].append(self._record)
        self._exchanges: list[Exchange] = []

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        url = str(request.url)
        if not url.startswith(self.prism_url + "/"):
            return  # the token endpoint is not in Zoom's spec
        raw = request.body
        body = json.loads(raw) if raw else None
        header = response.headers.get("sl-violations")
        self._exchanges.append(
            Exchange(
                str(request.method),
                url,
                body,
                response.status_code,
                json.loads(header) if header is not None else None,
            )
        )

    def take(self) -> list[Exchange]:
        taken, self._exchanges = self._exchanges, []
        return taken


@pytest.fixture
def wire(prism_url: str) -> Iterator[Wire]:
    w = Wire(prism_url)
    yield w
    w.session.close()


@pytest.fixture
def client(prism_url: str, token_url: str, wire: Wire) -> ZoomClient:
    fast = 1e9  # Prism has no rate limits; do not pace the test
    return ZoomClient(
        account_id="contract-account",
        client_id="contract-client",
        client_secret="contract-secret",
        api_url=prism_url,
        oauth_url=token_url,
        timeout=30,
        http=wire.session,
        token_cache=TokenCache(),
        budget=RequestBudget(
            {"light": fast, "medium": fast, "heavy": fast, "resource_intensive": fast}, burst=1e6
        ),
        # A refused request must surface at once, not be retried.
        max_retries=0,
    )


# --- the spec's documented statuses --------------------------------------------------------------


@cache
def _operations(spec_path: Path) -> tuple[tuple[re.Pattern[str], int, str, dict[str, Any]], ...]:
    """(path regex, number of literal segments, template, path item) for every spec path."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    found = []
    for template, item in spec["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        literal = sum(1 for part in template.split("/") if part and not part.startswith("{"))
        found.append((re.compile(f"^{pattern}$"), literal, template, item))
    return tuple(found)


def documented(spec_path: Path, method: str, path: str) -> tuple[str, set[str]]:
    """The spec's template for ``path`` (the most literal match, as Prism routes) and the 2xx
    statuses it documents for ``method``."""
    matches = [
        (literal, template, item)
        for regex, literal, template, item in _operations(spec_path)
        if regex.match(path) and method.lower() in item
    ]
    assert matches, f"{method} {path} is no operation in Zoom's spec"
    _, template, item = max(matches, key=lambda m: m[0])
    statuses = {code for code in item[method.lower()]["responses"] if code.startswith("2")}
    return template, statuses


# Zoom's spec gives the meetings' request `start_time` `format: date-time` (RFC 3339: an offset is
# required), while its own description of that very field, and the live API, also take local time
# `yyyy-MM-ddTHH:mm:ss` with the zone in `timezone` ("To set a meeting's start time using a
# specific timezone, use the yyyy-MM-ddTHH:mm:ss date-time format and specify the timezone ID").
# companion sends a series in that local form (schedule.meeting_times; zoom-api-notes §2), so
# Prism refuses it. Like `weekly_days` (fixed in the patched spec, tests/zoom_spec), this is
# the spec disagreeing with Zoom's prose, so exactly that violation, on exactly that form, is
# excused; `send` then proves the same body with the equivalent UTC start is accepted in full.
LOCAL_START = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _excused(violation: dict[str, Any], body: Any) -> bool:
    return (
        violation.get("location") == ["request", "body", "start_time"]
        and violation.get("code") == "format"
        and isinstance(body, dict)
        and isinstance(body.get("start_time"), str)
        and LOCAL_START.fullmatch(body["start_time"]) is not None
        and bool(body.get("timezone"))
    )


def violations(exchange: Exchange) -> list[dict[str, Any]]:
    """What Prism reported about the request, less the excused local ``start_time``."""
    return [v for v in exchange.violations or [] if not _excused(v, exchange.body)]


def excused_only(exchange: Exchange) -> bool:
    """Prism refused the request for the local ``start_time`` form and nothing else."""
    return bool(exchange.violations) and not violations(exchange)


def assert_clean(spec_path: Path, exchange: Exchange) -> str:
    """No violations and a documented 2xx; returns the operation as "METHOD template"."""
    found = violations(exchange)
    assert not found, (
        f"{exchange}: Zoom's spec refuses the request\n"
        + json.dumps(found, indent=1)
        + f"\nbody: {json.dumps(exchange.body)}"
    )
    template, statuses = documented(spec_path, exchange.method, exchange.path)
    if excused_only(exchange):
        # Prism answers a refused request 400; the UTC re-send in `send` checks the 2xx.
        assert exchange.status == 400, str(exchange)
    else:
        assert str(exchange.status) in statuses, (
            f"{exchange}: the spec documents {sorted(statuses)} for {exchange.method} {template}"
        )
    return f"{exchange.method} {template}"


def _utc_start(value: Any) -> Any:
    """A body with its local ``start_time`` given as the same instant in UTC."""
    if not (isinstance(value, dict) and LOCAL_START.fullmatch(str(value.get("start_time")))):
        return value
    local = dt.datetime.fromisoformat(value["start_time"]).replace(
        tzinfo=sched.zone(value["timezone"])
    )
    return {**value, "start_time": local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def send(
    client: ZoomClient, wire: Wire, spec_path: Path, name: str, *args: Any, **kwargs: Any
) -> list[Exchange]:
    """Call one client method against Prism; every request it sent must be clean."""
    method = getattr(client, name)
    error: ZoomError | None = None
    try:
        result = method(*args, **kwargs)
        if name.startswith("iter_"):
            list(result)
    except ZoomError as exc:
        error = exc
    exchanges = wire.take()
    assert exchanges, f"{name} sent nothing"
    for exchange in exchanges:
        assert_clean(spec_path, exchange)
    if name.startswith("iter_"):
        # Prism answers every page with the spec's example, whose next_page_token is never
        # empty, so the client asks for the next page and then (rightly) refuses a repeated
        # token. Both the first page and the follow-up page request were checked above; the
        # parsing of a real last page is covered by test_client.py.
        assert error is not None and "repeated a next_page_token" in error.message, error
        assert len(exchanges) == 2
        assert "next_page_token" not in exchanges[0].query
        assert exchanges[1].query["next_page_token"]
    elif any(excused_only(e) for e in exchanges):
        assert isinstance(error, ZoomValidationError), error
        # The same request with the start given in UTC: accepted in full, answered 2xx, parsed.
        utc_args = tuple(_utc_start(a) for a in args)
        assert utc_args != args
        for exchange in send(client, wire, spec_path, name, *utc_args, **kwargs):
            assert not exchange.violations
    else:
        assert error is None, f"{name}: {error!r}"
    return exchanges


# --- companion's own requests: the services against a recorder -----------------------------------

CLIENT_OPERATIONS = frozenset(
    name
    for name, value in vars(ZoomClient).items()
    if callable(value) and not name.startswith("_") and name not in ("close", "open_download")
)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Recorder:
    """Stands where the client stands: records each client call a service makes, with copies of
    its arguments, and lets the client answer it from the Zoom sandbox."""

    def __init__(self, sandbox: SandboxZoom):
        self.sandbox = sandbox
        self.calls: list[Call] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.sandbox.client, name)
        if name not in CLIENT_OPERATIONS:
            return target

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(Call(name, copy.deepcopy(args), copy.deepcopy(kwargs)))
            return target(*args, **kwargs)

        return recorded

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


@pytest.fixture
def recorder(app: Flask, clock: Clock) -> Iterator[Recorder]:
    # The services' own clock (utcnow) agrees with the `now` the test passes them.
    clock.offset = NOW - dt.datetime.now(dt.UTC)
    sandbox = SandboxZoom(now=lambda: NOW)
    zoom = Recorder(sandbox)
    app.extensions[EXTENSION_KEY] = zoom
    yield zoom
    sandbox.close()


def run_lifecycle(session: Session, zoom: Recorder, org: Any, teacher: Any, lead: Any) -> Any:
    """What a course and its families go through, done by the services as companion does it."""
    org.lead_as_alternative_host = True
    org.safeguarding_contact_email = "lead@example.org"
    # Zoom makes the meeting but the answer is lost: the retry lists the user's meetings, finds
    # it by the agenda reference and brings it up to date with one PATCH.
    zoom.sandbox.fail("create_meeting", drop=True, after=True)
    course = make_course(session, zoom, teacher, weekdays=("mon", "thu"), class_count=12)
    assert course.zoom_state == "pending"
    settle(zoom, course, now=NOW + dt.timedelta(minutes=5))
    assert (course.zoom_state, course.safety_state) == ("created", "safe")

    # The whole series changes (title, time, number of classes).
    changes.update_course(
        session,
        actor=teacher,
        course_id=course.id,
        now=NOW,
        title="Art club (spring)",
        series=series(weekdays=("mon", "thu"), start_time=dt.time(17, 30), class_count=10),
    )
    settle(zoom, course)  # each change goes to Zoom after its commit
    classes = timetable.upcoming_classes(course, NOW)
    # One class moves (Thursday 19 March to Friday), another is cancelled.
    changes.move_class(
        session,
        actor=teacher,
        course_id=course.id,
        class_id=classes[3].id,
        day=dt.date(2026, 3, 20),
        at=dt.time(16, 0),
        duration_minutes=50,
        now=NOW,
    )
    settle(zoom, course)
    changes.cancel_class(
        session, actor=teacher, course_id=course.id, class_id=classes[-1].id, now=NOW
    )
    settle(zoom, course)
    changes.rotate_passcode(session, actor=lead, course_id=course.id, now=NOW)
    settle(zoom, course)
    # Someone turned the waiting room off in Zoom's portal: the check puts every setting back.
    zoom.sandbox.state.tamper_settings(
        course.zoom_meeting_id, {"waiting_room": False, "waiting_room_options": {"mode": "none"}}
    )
    later = NOW + dt.timedelta(hours=1)
    assert check(zoom, course, now=later) == []
    assert start(zoom, course, teacher, now=later)

    # Two families: one registered at once, one whose answer was lost and is found again.
    # (Each request commits what it wants, then runs the Zoom work, as the views do.)
    def enrol(first_name: str, last_name: str, parent: tuple[str, str]) -> Any:
        family = enrolment.enrol(
            session,
            actor=teacher,
            course_id=course.id,
            child_first_name=first_name,
            child_last_name=last_name,
            contacts=[ContactInput(*parent)],
            now=NOW,
        )
        return after_the_answer(family)

    def after_the_answer(family: Any) -> Any:
        session.commit()
        family_jobs.work_family(current_app, family.id, zoom=zoom)
        session.expire_all()
        return family

    first = enrol("Amira", "Khan", ("Rana Khan", "rana@example.net"))
    zoom.sandbox.fail("add_registrant", drop=True, after=True)
    second = enrol("Yusuf", "Okafor", ("Ada Okafor", "ada@example.net"))
    assert second.zoom_state == "pending"
    registrants.retry_zoom(
        session, actor=teacher, course_id=course.id, family_id=second.id, now=NOW
    )
    after_the_answer(second)
    assert (first.zoom_state, second.zoom_state) == ("registered", "registered")
    # Withdrawing a family cancels its registrant, so its personal link stops working.
    registrants.withdraw(session, actor=teacher, course_id=course.id, family_id=first.id, now=NOW)
    after_the_answer(first)
    assert first.zoom_state == "cancelled"

    changes.cancel_course(session, actor=teacher, course_id=course.id, now=NOW)
    settle(zoom, course)
    return course


def test_every_request_companion_makes_is_one_zooms_spec_accepts(
    db_session: Session,
    recorder: Recorder,
    org: Any,
    teacher: Any,
    lead: Any,
    client: ZoomClient,
    wire: Wire,
    zoom_spec_path: Path,
) -> None:
    course = run_lifecycle(db_session, recorder, org, teacher, lead)

    # What was captured is what this test claims to check (so a change to the services that
    # drops one of these is noticed here, not silently left unchecked).
    (create,) = recorder.of("create_meeting")
    body = create.args[1]
    assert body["type"] == 8
    assert body["recurrence"]["weekly_days"] == "2,5"
    assert body["settings"]["waiting_room_options"] == {
        "mode": "custom",
        "who_goes_to_waiting_room": "everyone",
    }
    assert body["settings"]["alternative_hosts"] == "lead@example.org"
    assert body["settings"]["encryption_type"] == "enhanced_encryption"
    assert body["settings"]["approval_type"] == 1
    assert body["settings"]["registrants_email_notification"] is False
    updates = recorder.of("update_meeting")
    adopt, series_change, move, rotation, repair = updates
    assert "agenda" not in adopt.args[1] and "settings" in adopt.args[1]
    assert "recurrence" in series_change.args[1] and "topic" in series_change.args[1]
    assert move.kwargs["occurrence_id"] and set(move.args[1]) == {"start_time", "duration"}
    # A new passcode goes with every enforced setting: the sync sends the one repair body.
    assert set(rotation.args[1]) == {"password", "settings"}
    assert set(repair.args[1]) == {"password", "settings"}
    deletes = recorder.of("delete_meeting")
    assert [bool(d.kwargs.get("occurrence_id")) for d in deletes] == [True, False]
    (cancel,) = recorder.of("update_registrant_status")
    assert cancel.args[1] == "cancel"
    assert recorder.of("iter_meetings") and recorder.of("iter_registrants")
    assert course.zoom_state == "cancelled"

    checked: set[str] = set()
    for call in recorder.calls:
        for exchange in send(client, wire, zoom_spec_path, call.name, *call.args, **call.kwargs):
            checked.add(assert_clean(zoom_spec_path, exchange))
    assert checked == {
        "POST /users/{userId}/meetings",
        "GET /users/{userId}/meetings",
        "GET /meetings/{meetingId}",
        "PATCH /meetings/{meetingId}",
        "DELETE /meetings/{meetingId}",
        "POST /meetings/{meetingId}/registrants",
        "GET /meetings/{meetingId}/registrants",
        "PUT /meetings/{meetingId}/registrants/status",
    }


# --- the client's other operations and options ---------------------------------------------------

OCCURRENCE = "1773075600000"  # Zoom's occurrence ids are start times in epoch milliseconds
REGISTRANT_BODY = {  # the fields the families service sends
    "email": "family-k3q9z2@example.org",
    "first_name": "Amira",
    "last_name": "K",
    "auto_approve": True,
}


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    operation: str
    path_contains: str = ""


CASES = [
    Case(
        "get_meeting",
        (MEETING_ID,),
        {"occurrence_id": OCCURRENCE, "show_previous_occurrences": True},
        "GET /meetings/{meetingId}",
    ),
    Case(
        "delete_meeting",
        (MEETING_ID,),
        {"schedule_for_reminder": True, "cancel_meeting_reminder": True},
        "DELETE /meetings/{meetingId}",
    ),
    Case(
        "delete_meeting",
        (MEETING_ID,),
        {"occurrence_id": OCCURRENCE, "cancel_meeting_reminder": True},
        "DELETE /meetings/{meetingId}",
    ),
    Case("update_meeting_status", (MEETING_ID, "end"), {}, "PUT /meetings/{meetingId}/status"),
    Case(
        "iter_meetings",
        ("teacher+art@example.org",),
        {"type": "upcoming", "page_size": 30},
        "GET /users/{userId}/meetings",
        "/users/teacher%2Bart@example.org/",
    ),
    Case(
        "add_registrant",
        (MEETING_ID, REGISTRANT_BODY),
        {"occurrence_ids": [OCCURRENCE, "1773680400000"]},
        "POST /meetings/{meetingId}/registrants",
    ),
    Case(
        "get_registrant",
        (MEETING_ID, REGISTRANT_ID),
        {},
        "GET /meetings/{meetingId}/registrants/{registrantId}",
    ),
    Case(
        "iter_registrants",
        (MEETING_ID,),
        {"status": "pending", "occurrence_id": OCCURRENCE, "page_size": 100},
        "GET /meetings/{meetingId}/registrants",
    ),
    Case(
        "update_registrant_status",
        (MEETING_ID, "deny", [{"id": REGISTRANT_ID, "email": REGISTRANT_BODY["email"]}]),
        {"occurrence_id": OCCURRENCE},
        "PUT /meetings/{meetingId}/registrants/status",
    ),
    Case(
        "delete_registrant",
        (MEETING_ID, REGISTRANT_ID),
        {"occurrence_id": OCCURRENCE},
        "DELETE /meetings/{meetingId}/registrants/{registrantId}",
    ),
    Case(
        "get_meeting_recordings",
        (AWKWARD_UUID,),
        {"include_download_token": True, "ttl": 3600},
        "GET /meetings/{meetingId}/recordings",
        f"/meetings/{AWKWARD_UUID_IN_PATH}/recordings",
    ),
    Case("get_meeting_recordings", (MEETING_ID,), {}, "GET /meetings/{meetingId}/recordings"),
    Case(
        "iter_user_recordings",
        ("me",),
        {"from_date": dt.date(2026, 3, 1), "to_date": dt.date(2026, 3, 30)},
        "GET /users/{userId}/recordings",
    ),
    Case(
        "iter_trashed_recordings",
        ("me",),
        {"meeting_id": MEETING_ID},
        "GET /users/{userId}/recordings",
    ),
    Case(
        "iter_trashed_recordings",
        ("me",),
        {"meeting_id": MEETING_ID, "trash_type": "recording_file"},
        "GET /users/{userId}/recordings",
    ),
    Case(
        "recover_meeting_recordings",
        (AWKWARD_UUID,),
        {},
        "PUT /meetings/{meetingUUID}/recordings/status",
        f"/meetings/{AWKWARD_UUID_IN_PATH}/recordings/status",
    ),
    Case(
        "delete_meeting_recordings",
        (AWKWARD_UUID,),
        {"action": "trash"},
        "DELETE /meetings/{meetingId}/recordings",
        f"/meetings/{AWKWARD_UUID_IN_PATH}/recordings",
    ),
    Case(
        "delete_meeting_recordings",
        (MEETING_ID,),
        {"action": "delete"},
        "DELETE /meetings/{meetingId}/recordings",
    ),
    Case(
        "delete_recording_file",
        ("aDYlohsHRtCd4ii1uC2+hA==", RECORDING_FILE_ID),
        {"action": "trash"},
        "DELETE /meetings/{meetingId}/recordings/{recordingId}",
        f"/meetings/aDYlohsHRtCd4ii1uC2%2BhA%3D%3D/recordings/{RECORDING_FILE_ID}",
    ),
    Case(
        "delete_recording_file",
        (MEETING_ID, RECORDING_FILE_ID),
        {"action": "delete"},
        "DELETE /meetings/{meetingId}/recordings/{recordingId}",
    ),
]


def _case_id(case: Case) -> str:
    first = str(case.args[0])
    parts = ["uuid" if "=" in first else "email" if "@" in first else ""]
    parts += [
        f"{key}={value}" if key in ("action", "type", "status") else key
        for key, value in case.kwargs.items()
    ]
    return f"{case.name}[{'-'.join(p for p in parts if p) or 'plain'}]"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_each_client_operation_and_option_matches_zooms_spec(
    case: Case, client: ZoomClient, wire: Wire, zoom_spec_path: Path
) -> None:
    exchanges = send(client, wire, zoom_spec_path, case.name, *case.args, **case.kwargs)
    for exchange in exchanges:
        assert assert_clean(zoom_spec_path, exchange) == case.operation
        assert case.path_contains in exchange.path
    sent = exchanges[0].query
    for key, value in case.kwargs.items():
        if key in ("occurrence_id", "status", "type", "action"):
            assert sent[key] == [value]
    if case.name == "iter_user_recordings":
        assert (sent["from"], sent["to"]) == (["2026-03-01"], ["2026-03-30"])
    if case.name == "iter_trashed_recordings":
        # The trash is not filtered by date (the spec's note on ``from``): none is sent.
        assert sent["trash"] == ["true"] and "from" not in sent and "to" not in sent
        assert sent["trash_type"] == [case.kwargs.get("trash_type", "meeting_recordings")]
        assert sent["meeting_id"] == [str(MEETING_ID)]
    if case.name == "get_meeting_recordings" and case.kwargs:
        assert (sent["include_fields"], sent["ttl"]) == (["download_access_token"], ["3600"])


def test_registrant_status_is_sent_in_batches_zoom_accepts(
    client: ZoomClient, wire: Wire, zoom_spec_path: Path
) -> None:
    people = [{"id": f"reg{n:03d}", "email": f"family-{n}@example.org"} for n in range(31)]
    exchanges = send(
        client, wire, zoom_spec_path, "update_registrant_status", MEETING_ID, "approve", people
    )
    assert [len(e.body["registrants"]) for e in exchanges] == [30, 1]
    assert all(e.body["action"] == "approve" for e in exchanges)


# --- the check can fail --------------------------------------------------------------------------


def companion_create_body() -> dict[str, Any]:
    """A create body from the same builders the courses service uses."""
    plan = sched.compute(series(weekdays=("mon", "thu")), now=NOW)
    expected = safety.Expected(
        passcode=safety.generate_passcode(), alternative_hosts=("lead@example.org",)
    )
    return {
        "topic": "Art club",
        **sched.meeting_times(plan),
        "password": expected.passcode,
        "settings": safety.meeting_settings(expected),
    }


_DROP = object()  # a change that removes the field


def _broken(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    broken = copy.deepcopy(body)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = broken
        for part in parents:
            node = node[part]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return broken


NEGATIVE = [
    pytest.param("create_meeting", ("me",), {"type": 99}, "request.body.type", id="create-type-99"),
    pytest.param(
        "create_meeting",
        ("me",),
        {"duration": "x"},
        "request.body.duration",
        id="create-duration-x",
    ),
    pytest.param(
        "update_meeting",
        (MEETING_ID,),
        {"settings__approval_type": 7},
        "request.body.settings.approval_type",
        id="update-approval-type-7",
    ),
    pytest.param(
        "add_registrant", (MEETING_ID,), {"email": _DROP}, "request.body", id="registrant-no-email"
    ),
]


@pytest.mark.parametrize(("name", "args", "changes", "where"), NEGATIVE)
def test_a_body_zoom_would_refuse_is_reported(
    name: str,
    args: tuple[Any, ...],
    changes: dict[str, Any],
    where: str,
    client: ZoomClient,
    wire: Wire,
    zoom_spec_path: Path,
) -> None:
    good = REGISTRANT_BODY if name == "add_registrant" else companion_create_body()
    # The same body unbroken passes, so the violation below is the change and nothing else.
    send(client, wire, zoom_spec_path, name, *args, good)
    with pytest.raises(ZoomValidationError):
        getattr(client, name)(*args, _broken(good, **changes))
    (exchange,) = wire.take()
    assert exchange.status == 400
    assert exchange.violations, "Prism accepted a body Zoom's spec refuses"
    # Exactly the broken field is named (and the excused local start_time, if present).
    assert {".".join(v["location"]) for v in violations(exchange)} == {where}


def test_a_query_zoom_would_refuse_is_reported(client: ZoomClient, wire: Wire) -> None:
    # The client passes the meeting-list type through; Zoom's spec has a fixed set.
    with pytest.raises(ZoomValidationError):
        list(client.iter_meetings("me", type="everything"))
    (exchange,) = wire.take()
    assert exchange.violations
    assert {".".join(v["location"]) for v in exchange.violations} == {"request.query.type"}
