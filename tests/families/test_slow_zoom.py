"""While Zoom holds a registrant call for seconds, nothing else waits: another connection writes
and a signed /zoom/webhook is answered at once (enrol, CSV import, retry, withdraw, the sync job).

A real committed database of its own and real HTTP servers: companion and the Zoom sandbox
(:mod:`tests.slow_zoom`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from companion.families import jobs
from companion.families.models import Family

from ..polling import poll
from ..slow_zoom import AT_ONCE, Live, csrf, serve

REAL_CLOCK = True


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serve(tmp_path) as running:
        yield running


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
        lambda: (f := live.row(Family, family_id)).zoom_state == "registered" and f,
        "the family to be registered",
    )


def test_enrol_while_zoom_is_slow(live: Live) -> None:
    live.hold_next(REGISTRANTS, "POST")
    family_id = enrol_over_http(live)
    live.wait_until_held()
    live.nothing_waits()
    assert live.row(Family, family_id).zoom_state == "pending"  # a reload shows the progress
    family = registered(live, family_id)
    (registrant,) = live.zoom.state.registrants_of(live.zoom.meetings()[0]["id"])
    assert family.zoom_registrant_id == registrant["id"]


def test_retry_while_zoom_is_slow(live: Live) -> None:
    live.zoom.state.add_fault({"path": REGISTRANTS, "method": "POST", "status": 400})
    family_id = enrol_over_http(live)
    poll(lambda: live.row(Family, family_id).zoom_state == "failed", "Zoom to refuse")
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
    poll(lambda: live.row(Family, family_id).zoom_state == "cancelled", "the cancellation")
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
    families = live.rows(Family)
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
        lambda: (f := live.row(Family, family_id)).zoom_next_attempt_at is not None and f,
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
