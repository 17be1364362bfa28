"""Prometheus metrics: ``GET /metrics``, off unless ``COMPANION_METRICS_TOKEN`` is set.

Two kinds of figure, so that every process answers the same for what the database knows:

* **From the work tables, computed at each scrape** (:class:`QueueCollector`): how many items
  of each queue wait for work now, and how long the oldest of them has waited. Any web process
  answers this alike, whichever the load balancer picks.
* **Counted where the thing happens** (the counters and histograms below): ingest bytes and
  seconds, Zoom calls and errors by operation, mail sent and failed, webhook latency. They live
  in the process that did the thing; a ``companion worker`` sends the mail and calls Zoom. With
  ``PROMETHEUS_MULTIPROC_DIR`` set to one folder for every companion process on a host (web
  processes and workers; emptied before they start), prometheus_client's multiprocess mode adds
  them up, and any web process's ``/metrics`` shows the host's totals.
  ``companion serve --processes N`` sets up such a folder for its own processes when the
  variable is not set.

The token is compared in constant time and never logged; without it the endpoint answers 404
(metrics are off) or 401 (on, but not this caller), as JSON like every other refusal.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy import func, select

from .access import public
from .errors import error_response

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WEBHOOK_ENDPOINT = "webhooks.zoom_webhook"


@dataclass(frozen=True)
class _Counted:
    zoom_calls: Any
    zoom_errors: Any
    mail_sent: Any
    mail_failed: Any
    ingest_bytes: Any
    ingest_seconds: Any
    webhook_seconds: Any


_made: list[_Counted] = []
_making = threading.Lock()


def _counted() -> _Counted:
    """The counters, made at first use: prometheus_client decides when it is first imported
    whether it counts in this process's memory or in PROMETHEUS_MULTIPROC_DIR, and
    ``companion serve --processes`` sets that variable only once it starts. Made under a lock:
    two threads' first requests would otherwise both register them, and the second fail."""
    if _made:
        return _made[0]
    with _making:
        if not _made:
            _made.append(_make())
        return _made[0]


def _make() -> _Counted:
    from prometheus_client import Counter, Histogram

    return _Counted(
        zoom_calls=Counter(
            "companion_zoom_calls_total",
            "HTTP requests sent to Zoom, retries and token fetches included, by operation.",
            ["operation"],
        ),
        zoom_errors=Counter(
            "companion_zoom_errors_total",
            "Zoom requests that failed (no answer, or an error status), by operation and kind.",
            ["operation", "kind"],
        ),
        mail_sent=Counter("companion_mail_sent_total", "Messages the SMTP server accepted."),
        mail_failed=Counter(
            "companion_mail_failed_total",
            "Attempts to send a message that failed, by outcome (failed, unavailable, uncertain).",
            ["outcome"],
        ),
        ingest_bytes=Counter(
            "companion_ingest_bytes_total",
            "Bytes of recordings copied from Zoom and stored encrypted.",
        ),
        ingest_seconds=Histogram(
            "companion_ingest_seconds",
            "Time to download, encrypt and store one recording file.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, float("inf")),
        ),
        webhook_seconds=Histogram(
            "companion_webhook_seconds",
            "Time from receiving a Zoom webhook to answering it, by status code.",
            ["status"],
            # Zoom waits 3 s for an answer before it counts a delivery as failed.
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, float("inf")),
        ),
    )


def zoom_call(operation: str) -> None:
    _counted().zoom_calls.labels(operation=operation).inc()


def zoom_error(operation: str, kind: str) -> None:
    _counted().zoom_errors.labels(operation=operation, kind=kind).inc()


def mail_sent() -> None:
    _counted().mail_sent.inc()


def mail_failed(outcome: str) -> None:
    _counted().mail_failed.labels(outcome=outcome).inc()


def ingested(plaintext_bytes: int, seconds: float) -> None:
    _counted().ingest_bytes.inc(plaintext_bytes)
    _counted().ingest_seconds.observe(seconds)


def work_queues() -> list[Any]:
    """Every queue of the work engine (companion/work.py), imported here and not the other way
    round so that no domain package needs to know about metrics."""
    from .courses import zoomwork
    from .families import registrants
    from .mail import jobs as mail_jobs
    from .recordings import ingest
    from .webhooks import services as webhooks

    return [
        zoomwork.QUEUE,
        registrants.REGISTRANTS,
        webhooks.QUEUE,
        mail_jobs.OUTBOX,
        ingest.COPY,
        ingest.ZOOM_PURGE,
    ]


class QueueCollector:
    """Queue depth and oldest waiting item per queue, read from the work tables at scrape."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        from .db import job_session, utcnow

        depth = GaugeMetricFamily(
            "companion_queue_depth",
            "Work items due now that nobody holds, by queue.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "companion_queue_oldest_pending_seconds",
            "How long the longest-waiting due item of each queue has waited: since its due "
            "time, or since the row was made when it was due from the start; 0 when empty.",
            labels=["queue"],
        )
        now = utcnow()
        with job_session(self.app) as session:
            for queue in work_queues():
                made = getattr(queue.model, "created_at", None) or getattr(
                    queue.model, "received_at", None
                )
                since = func.coalesce(queue.due, made) if made is not None else queue.due
                count, first = session.execute(
                    select(func.count(), func.min(since)).where(queue._waiting(now))
                ).one()
                depth.add_metric([queue.name], float(count))
                age = 0.0
                if first is not None:
                    first = _as_utc(first)
                    age = max(0.0, (now - first).total_seconds())
                oldest.add_metric([queue.name], age)
        yield depth
        yield oldest


def _as_utc(value: Any) -> Any:
    if isinstance(value, str):  # SQLite's min() over a column answers its text
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _refusal() -> Response | None:
    """None when the caller sent the configured token; else the JSON answer for a machine."""
    token = current_app.config.get("METRICS_TOKEN") or ""
    if not token:
        return error_response(404, "not_found", "Metrics are off on this server.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    refused = error_response(
        401, "unauthorized", "Send the metrics token as 'Authorization: Bearer <token>'."
    )
    refused.headers["WWW-Authenticate"] = 'Bearer realm="companion metrics"'
    return refused


@bp.get("/metrics")
@public  # the view checks its own bearer token (off by default), like the webhook its signature
def metrics_view() -> Response:
    refused = _refusal()
    if refused is not None:
        return refused
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    _counted()  # listed from the first scrape, before anything was counted
    if os.environ.get(MULTIPROC_ENV):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    from_tables = CollectorRegistry(auto_describe=False)
    from_tables.register(QueueCollector(app))
    body = generate_latest(counted) + generate_latest(from_tables)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Time the webhook's answers (before any other hook, so the whole request is counted)."""

    @app.before_request
    def _start_clock() -> None:
        if request.endpoint == WEBHOOK_ENDPOINT:
            g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            _counted().webhook_seconds.labels(status=str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges are dropped (its counters stay)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
