"""Issue 14, item 5: after a class's recording is delivered by webhook and copied, a scrape of
`/metrics` shows the webhook's latency, the Zoom calls by operation, the bytes and seconds of
ingest, and the copy queue filling and emptying."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..metrics_helpers import scrape
from .vault_helpers import Vault


def test_a_recording_ingested_shows_in_the_metrics(
    app: Flask, vault: Vault, course_in_zoom: Any
) -> None:
    before = scrape(app)
    cls = course_in_zoom.classes[0]

    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    delivered = scrape(app)
    answered = [s for s in vault.webhook_statuses if s == 200]
    assert answered
    assert delivered.value("companion_webhook_seconds_count", status="200") == (
        before.value("companion_webhook_seconds_count", status="200") + len(answered)
    )
    assert delivered.value("companion_webhook_seconds_sum", status="200") > before.value(
        "companion_webhook_seconds_sum", status="200"
    )

    vault.process_webhooks()
    waiting = scrape(app)
    files = len(vault.files())
    assert files and waiting.value("companion_queue_depth", queue="recording_copies") == files

    vault.ingest()
    after = scrape(app)
    stored = sum(f.size or 0 for f in vault.files())
    assert stored > 0
    assert (
        after.value("companion_ingest_bytes_total") - before.value("companion_ingest_bytes_total")
        == stored
    )
    assert (
        after.value("companion_ingest_seconds_count")
        - before.value("companion_ingest_seconds_count")
        == files
    )
    assert (
        after.value("companion_zoom_calls_total", operation="download")
        - before.value("companion_zoom_calls_total", operation="download")
        == files
    )
    assert after.value("companion_queue_depth", queue="recording_copies") == 0


def test_zoom_errors_are_counted_by_operation(app: Flask, vault: Vault) -> None:
    from companion.zoom import zoom_for
    from companion.zoom.errors import ZoomError

    zoom = zoom_for(app)
    before = scrape(app)
    try:
        zoom.get_meeting(999_999_999)
    except ZoomError as exc:
        operation = exc.operation
    else:  # pragma: no cover - the sandbox knows no such meeting
        raise AssertionError("Zoom found a meeting that does not exist")
    after = scrape(app)
    assert after.value("companion_zoom_errors_total", operation=operation, kind="404") == (
        before.value("companion_zoom_errors_total", operation=operation, kind="404") + 1
    )
    assert after.value("companion_zoom_calls_total", operation=operation) > before.value(
        "companion_zoom_calls_total", operation=operation
    )
