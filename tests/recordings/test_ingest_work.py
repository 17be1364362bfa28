"""The ingest on the work engine: copying and deleting Zoom's copy are claimed steps, a crash
between any two phases is recovered once by a later run, and failures wait with the one backoff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from companion import work
from companion.audit.models import AuditEvent
from companion.db import utcnow
from companion.recordings import ingest
from companion.recordings import jobs as recording_jobs

from ..crashes import Crash, crash_fixture
from .vault_helpers import Vault, file_of

crash_at = crash_fixture()


def audits(session: Any, kind: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.kind == kind)))


def test_the_old_claims_and_backoffs_are_gone() -> None:
    for name in ("backoff", "claim_file", "due_files", "zoom_delete_due", "MAX_BACKOFF"):
        assert not hasattr(ingest, name), name


@pytest.mark.parametrize("point", ["after_claim", "after_call"])
def test_a_crash_while_copying_is_copied_again_once_the_claim_runs_out(
    point: str,
    vault: Vault,
    course_in_zoom: Any,
    db_session: Any,
    clock: Any,
    crash_at: Callable[[str, str], None],
) -> None:
    """after_claim: claimed, nothing downloaded; after_call: the blob is written but the worker
    died before recording it (the next attempt writes the same key again)."""
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    crash_at(ingest.COPY.name, point)

    with pytest.raises(Crash):
        vault.ingest()

    first = [f for f in vault.files() if f.state == "downloading"]
    assert len(first) == 1
    crashed = first[0]
    assert crashed.attempts == 1 and crashed.claimed_until is not None
    assert crashed.sha256 is None and crashed.wrapped_dek is None
    rec = vault.recordings()[0]
    assert crashed.zoom_file_id in vault.zoom_files(rec.zoom_uuid)  # Zoom's copy untouched

    # The other file goes on; the crashed one is held by the dead worker's claim, and Zoom's
    # copy of the class stays until it too is verified.
    assert vault.ingest() == {"verified": 1}
    assert {f.id: f.state for f in vault.files()}[crashed.id] == "downloading"
    assert len(vault.zoom_files(rec.zoom_uuid)) == 2

    clock.advance(ingest.COPY.claim_for + dt.timedelta(seconds=1))
    assert vault.ingest() == {"verified": 1, "zoom_deleted": 1}
    assert vault.ingest() == {}
    files = vault.files()
    assert {f.state for f in files} == {"zoom_deleted"}
    again = next(f for f in files if f.id == crashed.id)
    assert again.attempts == 2
    assert sorted(vault.blob_names()) == sorted(f"{f.id}.krec" for f in files)
    assert vault.zoom_holds(rec.zoom_uuid) == []
    assert len(audits(db_session, "recording.zoom_copy_deleted")) == 1


def test_a_crash_after_zoom_deleted_its_copy_is_recorded_later_without_harm(
    vault: Vault,
    course_in_zoom: Any,
    db_session: Any,
    app: Any,
    clock: Any,
    crash_at: Callable[[str, str], None],
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    crash_at(ingest.ZOOM_PURGE.name, "after_call")

    with pytest.raises(Crash):
        vault.ingest()
    rec = vault.recordings()[0]
    assert vault.zoom_holds(rec.zoom_uuid) == []  # Zoom did delete it, for good
    assert rec.zoom_purged_at is None
    assert {f.state for f in vault.files()} == {"verified"}

    assert recording_jobs.delete_from_zoom_pending(app) == {}  # still claimed
    clock.advance(ingest.ZOOM_PURGE.claim_for + dt.timedelta(seconds=1))
    # Asked again, Zoom lists nothing for the class (trash included): recorded as done.
    assert recording_jobs.delete_from_zoom_pending(app) == {"zoom_deleted": 1}
    assert {f.state for f in vault.files()} == {"zoom_deleted"}
    assert len(audits(db_session, "recording.zoom_copy_deleted")) == 1
    assert recording_jobs.delete_from_zoom_pending(app) == {}


def test_a_failed_copy_waits_with_the_engines_backoff(
    vault: Vault, course_in_zoom: Any, clock: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    vault.fault(path="/rec/download/*", method="GET", status=500, count=50)

    before = utcnow()
    assert vault.ingest().get("failed") == 2
    waits = []
    for f in vault.files():
        assert f.state == "failed" and f.claimed_until is None and f.attempts == 1
        assert f.next_attempt_at is not None
        waits.append(f.next_attempt_at - before)
    first = work.backoff(1, base=ingest.COPY.backoff_base, cap=ingest.COPY.backoff_cap)
    assert first == dt.timedelta(minutes=1)
    assert all(first <= w <= first + (utcnow() - before) for w in waits)

    clock.advance(minutes=1, seconds=5)
    assert vault.ingest().get("failed") == 2
    assert {f.attempts for f in vault.files()} == {2}
    second = work.backoff(2, base=ingest.COPY.backoff_base, cap=ingest.COPY.backoff_cap)
    assert all(
        f.next_attempt_at is not None and f.next_attempt_at - utcnow() <= second
        for f in vault.files()
    )
    assert vault.ingest() == {}  # not due yet

    vault.sandbox.clear_faults()
    clock.advance(minutes=3)
    assert vault.ingest() == {"verified": 2, "zoom_deleted": 1}


def test_zooms_retry_after_sets_the_next_delete(
    vault: Vault, course_in_zoom: Any, app: Any, clock: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    vault.fault(
        path="/v2/meetings/*/recordings",
        method="DELETE",
        status=429,
        retry_after="300",
        count=50,
    )
    before = utcnow()
    assert vault.ingest() == {"verified": 2, "retry": 1}
    (rec,) = vault.recordings()
    assert rec.zoom_purge_attempts == 1 and rec.zoom_purge_due is not None
    assert dt.timedelta(seconds=299) <= rec.zoom_purge_due - before <= dt.timedelta(seconds=330)
    assert rec.zoom_refused_at is None  # a rate limit is not a refusal: nobody is told
    vault.sandbox.clear_faults()
    clock.advance(minutes=4)
    assert recording_jobs.delete_from_zoom_pending(app) == {}  # Zoom said five minutes
    clock.advance(minutes=1, seconds=30)
    assert recording_jobs.delete_from_zoom_pending(app) == {"zoom_deleted": 1}


def test_a_file_of_a_recording_being_deleted_is_never_claimed(
    vault: Vault, course_in_zoom: Any, db_session: Any
) -> None:
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    rec = vault.recordings()[0]
    rec.state = "deleting"
    db_session.commit()
    assert work.due_ids(db_session, ingest.COPY, utcnow()) == []
    mp4 = file_of(vault.files(), "MP4")
    assert not work.claim(db_session, ingest.COPY, mp4.id, utcnow())
    assert vault.ingest() == {}
