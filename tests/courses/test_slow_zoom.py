"""While Zoom holds a course's call for seconds, nothing else waits: the teacher's change is
answered at once with the course page showing what companion is doing in Zoom, another connection
writes, and a signed /zoom/webhook is answered at once; then the work finishes and the course is
right. For every course Zoom path: create, retry, edit the series, move a class, cancel a class,
cancel the course, rotate the passcode, re-check now, start class, the drift check, closing.

A real committed database of its own and real HTTP servers: companion and the Zoom sandbox
(:mod:`tests.slow_zoom`). The teacher drives the staff web pages (CSRF included) as a browser
does; the JSON API answers with what Zoom did, so only its own client waits for Zoom.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from companion.courses import jobs, lifecycle, passcodes, timetable
from companion.courses import schedule as sched
from companion.courses.models import ZOOM_WORK_LABELS, Course
from companion.db import job_session

from ..polling import poll
from ..slow_zoom import AT_ONCE, HOLD, Live, csrf, serve

MEETING = "/v2/meetings/*"
MEETINGS = "/v2/users/*/meetings"

Send = Callable[[], requests.Response]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serve(tmp_path) as running:
        yield running


@contextmanager
def reading(live: Live, course_id: int) -> Iterator[Course]:
    """The course as committed now, with its classes, in a session of its own."""
    with live.app.app_context(), job_session(live.app) as session:
        course = session.get(Course, course_id)
        assert course is not None
        yield course


def zoom_state(live: Live, web: requests.Session, course_id: int) -> dict[str, Any]:
    """What the course page polls; it is answered at once whatever Zoom is doing."""
    started = time.monotonic()
    answer = web.get(f"{live.url}/courses/{course_id}/zoom-state", timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    assert time.monotonic() - started < AT_ONCE
    return dict(answer.json())


def settled(live: Live, web: requests.Session, course_id: int) -> dict[str, Any]:
    return poll(
        lambda: not (state := zoom_state(live, web, course_id))["busy"] and state,
        "the course's Zoom work to finish",
    )


def form_post(
    live: Live, web: requests.Session, page: str, path: str | None = None, **data: Any
) -> Send:
    """The form on ``page`` (its CSRF token read now), sent to ``path`` when called."""
    token = csrf(web.get(live.url + page, timeout=30).text)
    return lambda: web.post(
        live.url + (path or page), data={**data, "csrf_token": token}, timeout=30
    )


def course_form(title: str, series: sched.Series) -> dict[str, Any]:
    return {
        "title": title,
        "first_date": series.first_date.isoformat(),
        "weekdays": list(series.weekdays),
        "start_time": series.start_time.strftime("%H:%M"),
        "timezone": series.timezone,
        "duration_minutes": str(series.duration_minutes),
        "end_mode": "date" if series.end_date else "count",
        "class_count": "" if series.end_date else str(series.class_count),
        "end_date": series.end_date.isoformat() if series.end_date else "",
    }


def new_course_form(title: str = "Viola for beginners") -> dict[str, Any]:
    first = dt.date.today() + dt.timedelta(days=8)
    return course_form(
        title,
        sched.Series(
            first_date=first,
            weekdays=(sched.WEEKDAYS[first.weekday()],),
            start_time=dt.time(16, 0),
            duration_minutes=45,
            timezone="Europe/London",
            class_count=3,
            end_date=None,
        ),
    )


def class_id(live: Live, number: int) -> int:
    with reading(live, live.course_id) as course:
        return timetable.class_sessions(course)[number].id


def zoom_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meeting_of(live: Live, course_id: int) -> dict[str, Any]:
    """The course's meeting as Zoom has it (asked with no transaction open)."""
    meeting_id = live.row(Course, course_id).zoom_meeting_id
    assert meeting_id is not None
    return dict(live.client.get_meeting(meeting_id))


def in_zoom_as_planned(live: Live, course_id: int) -> None:
    """The meeting's live occurrences are the course's classes, and the course is safe."""
    with reading(live, course_id) as course:
        assert course.safety_state == "safe", course.safety_problems
        planned = [
            zoom_time(c.starts_at) for c in timetable.class_sessions(course) if c.takes_place
        ]
    occurrences = meeting_of(live, course_id)["occurrences"]
    assert [o["start_time"] for o in occurrences if o["status"] == "available"] == planned


def one_meeting_of(live: Live, course_id: int) -> None:
    """The course has exactly one meeting in Zoom (found by companion's reference)."""
    course = live.row(Course, course_id)
    mine = [
        m["id"] for m in live.zoom.meetings() if course.companion_ref in (m.get("agenda") or "")
    ]
    assert mine == [course.zoom_meeting_id]


# --- the teacher's changes: answered at once, the page shows the Zoom work under way ----------


@dataclass(frozen=True)
class Change:
    name: str
    # The Zoom call the sandbox holds (the step's first call of that kind).
    hold: tuple[str, str]
    # What companion is doing meanwhile (the course's Zoom work), and its state afterwards.
    work: str
    state: str
    # Gets the form ready (before the hold) and returns what sends it.
    make: Callable[[Live, requests.Session], Send]
    # What is true once the work is done.
    check: Callable[[Live, int], None]


def create_course(live: Live, web: requests.Session) -> Send:
    return form_post(live, web, "/courses/new", **new_course_form())


def created(live: Live, course_id: int) -> None:
    assert course_id != live.course_id
    in_zoom_as_planned(live, course_id)
    one_meeting_of(live, course_id)


def retry_refused(live: Live, web: requests.Session) -> Send:
    # Zoom refuses the meeting first; the teacher presses "Try Zoom again" on the course page.
    live.zoom.state.add_fault({"path": MEETINGS, "method": "POST", "status": 400})
    answer = form_post(live, web, "/courses/new", **new_course_form())()
    match = re.fullmatch(re.escape(live.url) + r"/courses/(\d+)", answer.url)
    assert answer.status_code == 200 and match, answer.url
    course_id = int(match.group(1))
    assert settled(live, web, course_id)["state"] == "failed"
    return form_post(live, web, f"/courses/{course_id}", f"/courses/{course_id}/retry")


def edit_series(live: Live, web: requests.Session) -> Send:
    with reading(live, live.course_id) as course:
        series = timetable.edit_defaults(course, dt.datetime.now(dt.UTC))
        title = course.title
    edited = dataclasses.replace(series, start_time=dt.time(17, 30))
    page = f"/courses/{live.course_id}/edit"
    return form_post(live, web, page, **course_form(title, edited))


def series_edited(live: Live, course_id: int) -> None:
    in_zoom_as_planned(live, course_id)
    assert live.row(Course, course_id).start_time == dt.time(17, 30)


def move_class(live: Live, web: requests.Session) -> Send:
    with reading(live, live.course_id) as course:
        cls = timetable.class_sessions(course)[1]
        day = timetable.local_time(course, cls.starts_at).date() + dt.timedelta(days=1)
    page = f"/courses/{live.course_id}/classes/{cls.id}/move"
    return form_post(
        live, web, page, date=day.isoformat(), start_time="18:00", duration_minutes="45"
    )


def class_moved(live: Live, course_id: int) -> None:
    in_zoom_as_planned(live, course_id)
    with reading(live, course_id) as course:
        cls = timetable.class_sessions(course)[1]
        assert cls.status == "moved"
        assert timetable.local_time(course, cls.starts_at).time() == dt.time(18, 0)


def cancel_class(live: Live, web: requests.Session) -> Send:
    page = f"/courses/{live.course_id}"
    return form_post(live, web, page, f"{page}/classes/{class_id(live, 2)}/cancel")


def class_cancelled(live: Live, course_id: int) -> None:
    in_zoom_as_planned(live, course_id)
    with reading(live, course_id) as course:
        cls = timetable.class_sessions(course)[2]
        status, occurrence_id = cls.status, cls.occurrence_id
    assert status == "cancelled"
    statuses = {o["occurrence_id"]: o["status"] for o in meeting_of(live, course_id)["occurrences"]}
    assert statuses[occurrence_id] == "deleted"


def cancel_course(live: Live, web: requests.Session) -> Send:
    return form_post(live, web, f"/courses/{live.course_id}/cancel")


def course_cancelled(live: Live, course_id: int) -> None:
    assert live.zoom.meetings() == []
    assert live.row(Course, course_id).zoom_state == "cancelled"


def rotate_passcode(live: Live, web: requests.Session) -> Send:
    page = f"/courses/{live.course_id}"
    return form_post(live, web, page, f"{page}/passcode")


def passcode_rotated(live: Live, course_id: int) -> None:
    with reading(live, course_id) as course:
        passcode = passcodes.passcode_of(course)
        assert course.safety_state == "safe"
    assert meeting_of(live, course_id)["password"] == passcode


def verify_now(live: Live, web: requests.Session) -> Send:
    # Someone turned the waiting room off in Zoom; the teacher presses "Re-check now".
    meeting_id = live.row(Course, live.course_id).zoom_meeting_id
    live.zoom.state.tamper_settings(meeting_id, {"waiting_room": False})
    page = f"/courses/{live.course_id}"
    return form_post(live, web, page, f"{page}/verify")


def put_back(live: Live, course_id: int) -> None:
    in_zoom_as_planned(live, course_id)
    assert meeting_of(live, course_id)["settings"]["waiting_room"] is True


CHANGES = [
    Change("create", (MEETINGS, "POST"), "create", "created", create_course, created),
    Change("retry", (MEETINGS, "POST"), "create", "created", retry_refused, created),
    Change("edit", (MEETING, "PATCH"), "sync", "created", edit_series, series_edited),
    Change("move_class", (MEETING, "PATCH"), "sync", "created", move_class, class_moved),
    Change("cancel_class", (MEETING, "DELETE"), "sync", "created", cancel_class, class_cancelled),
    Change(
        "cancel_course", (MEETING, "DELETE"), "delete", "cancelled", cancel_course, course_cancelled
    ),
    Change("passcode", (MEETING, "PATCH"), "sync", "created", rotate_passcode, passcode_rotated),
    Change("verify", (MEETING, "GET"), "sync", "created", verify_now, put_back),
]


@pytest.mark.parametrize("change", CHANGES, ids=[c.name for c in CHANGES])
def test_a_change_is_answered_at_once_while_zoom_is_slow(live: Live, change: Change) -> None:
    web = live.staff()
    send = change.make(live, web)
    live.hold_next(*change.hold)
    started = time.monotonic()
    answer = send()
    # The teacher is on the course page at once, however slow Zoom is...
    assert answer.status_code == 200, answer.text[-800:]
    assert time.monotonic() - started < AT_ONCE
    match = re.fullmatch(re.escape(live.url) + r"/courses/(\d+)", answer.url)
    assert match, answer.url
    course_id = int(match.group(1))
    # ...which says what companion is doing in Zoom, and refreshes itself until it is done.
    assert ZOOM_WORK_LABELS[change.work] in answer.text
    assert "data-poll" in answer.text
    live.wait_until_held()
    state = zoom_state(live, web, course_id)
    assert state["busy"] and state["work"] == change.work
    live.nothing_waits()

    done = settled(live, web, course_id)
    assert (done["state"], done["work"], done["error"]) == (change.state, None, None)
    change.check(live, course_id)


# --- start class: the teacher waits for the link, nobody else does ----------------------------


def test_start_class_while_zoom_is_slow(live: Live) -> None:
    web = live.staff()
    page = f"{live.url}/courses/{live.course_id}"
    token = csrf(web.get(page, timeout=30).text)
    live.hold_next(MEETING, "GET")
    answers: list[requests.Response] = []
    started = time.monotonic()
    teacher = threading.Thread(
        target=lambda: answers.append(
            web.post(page + "/start", data={"csrf_token": token}, allow_redirects=False, timeout=30)
        )
    )
    teacher.start()
    try:
        live.wait_until_held()
        # The link is Zoom's to give, so this request waits for it; another page does not.
        other = live.staff()
        assert zoom_state(live, other, live.course_id)["state"] == "created"
        live.nothing_waits()
    finally:
        teacher.join(timeout=60)
    (answer,) = answers
    assert time.monotonic() - started >= HOLD - 0.5
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith(live.zoom.server.url + "/s/")
    course = live.row(Course, live.course_id)
    assert course.safety_state == "safe" and course.zoom_work == ""


# --- the worker's jobs ------------------------------------------------------------------------


def in_worker(job: Callable[[], dict[str, int]]) -> tuple[threading.Thread, dict[str, int]]:
    result: dict[str, int] = {}
    worker = threading.Thread(target=lambda: result.update(job()))
    worker.start()
    return worker, result


def test_the_drift_check_while_zoom_is_slow(live: Live) -> None:
    meeting_id = live.row(Course, live.course_id).zoom_meeting_id
    live.zoom.state.tamper_settings(meeting_id, {"waiting_room": False, "join_before_host": True})
    web = live.staff()
    live.hold_next(MEETING, "GET")
    worker, result = in_worker(lambda: jobs.drift_check(live.app))
    try:
        live.wait_until_held()
        state = zoom_state(live, web, live.course_id)
        assert state["busy"] and state["work"] == "sync"
        live.nothing_waits()
    finally:
        worker.join(timeout=60)
    assert result == {"safe": 1}
    settings = live.client.get_meeting(meeting_id)["settings"]
    assert settings["waiting_room"] is True and settings["join_before_host"] is False
    done = settled(live, web, live.course_id)
    assert (done["state"], done["safety"], done["error"]) == ("created", "safe", None)


def test_closing_a_finished_course_while_zoom_is_slow(live: Live) -> None:
    ends_at = live.row(Course, live.course_id).ends_at
    assert ends_at is not None
    web = live.staff()
    live.hold_next(MEETING, "DELETE")
    later = ends_at + lifecycle.CLOSE_GRACE + dt.timedelta(minutes=1)
    worker, result = in_worker(lambda: jobs.close_finished(live.app, now=later))
    try:
        live.wait_until_held()
        state = zoom_state(live, web, live.course_id)
        assert (state["state"], state["work"]) == ("closed", "delete")
        live.nothing_waits()
    finally:
        worker.join(timeout=60)
    assert result == {"closed": 1}
    assert live.zoom.meetings() == []
    done = settled(live, web, live.course_id)
    assert (done["state"], done["work"], done["error"]) == ("closed", None, None)
