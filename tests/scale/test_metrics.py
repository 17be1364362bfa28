"""Issue 14, item 5: `GET /metrics` is off by default, needs its bearer token, and shows the work
queues as the tables hold them at the scrape; JSON logs on request."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion import logs
from companion.db import utcnow
from companion.mail import services as mail_services

from ..metrics_helpers import TOKEN, scrape


def test_metrics_are_off_by_default(app: Flask, client: FlaskClient) -> None:
    assert not app.config["METRICS_TOKEN"]
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "not_found"
    assert "companion_" not in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-of-the-right-length-00000000", f"Basic {TOKEN}", "Bearer"],
)
def test_without_the_token_the_answer_is_401(
    app: Flask, client: FlaskClient, header: str | None
) -> None:
    app.config["METRICS_TOKEN"] = TOKEN
    answer = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json["error"]["code"] == "unauthorized"
    assert "companion_" not in answer.get_data(as_text=True)
    assert TOKEN not in answer.get_data(as_text=True)


def test_a_short_token_is_refused_at_start() -> None:
    from companion.config import ConfigError, load

    with pytest.raises(ConfigError, match="COMPANION_METRICS_TOKEN must be at least 32"):
        load(
            __import__("pathlib").Path("/nonexistent-instance"),
            environ={"COMPANION_SECRET_KEY": "x" * 40, "COMPANION_METRICS_TOKEN": "short"},
        )


def test_every_metric_is_listed_with_the_token(app: Flask) -> None:
    names = scrape(app).names()
    for name in (
        "companion_queue_depth",
        "companion_queue_oldest_pending_seconds",
        "companion_mail_sent_total",
        "companion_ingest_bytes_total",
    ):
        assert name in names, names
    text = scrape(app).text
    for family in (
        "companion_zoom_calls_total",
        "companion_zoom_errors_total",
        "companion_mail_sent_total",
        "companion_mail_failed_total",
        "companion_ingest_bytes_total",
        "companion_ingest_seconds",
        "companion_webhook_seconds",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text


def test_queue_depth_and_oldest_item_follow_the_outbox(
    app: Flask, db_session: Session, org: Any, clock: Any
) -> None:
    before = scrape(app)
    assert before.value("companion_queue_depth", queue="outbox") == 0
    assert before.value("companion_queue_oldest_pending_seconds", queue="outbox") == 0
    for n in range(3):
        mail_services.queue(
            db_session,
            organisation_id=org.id,
            to_address=f"parent{n}@families.test",
            subject="Hello",
            body="A message.",
            kind="test",
            now=utcnow(),
            smtp_enabled=True,
        )
    db_session.flush()
    clock.advance(minutes=5)

    after = scrape(app)

    assert after.value("companion_queue_depth", queue="outbox") == 3
    age = after.value("companion_queue_oldest_pending_seconds", queue="outbox")
    assert dt.timedelta(minutes=5) <= dt.timedelta(seconds=age) < dt.timedelta(minutes=6)
    # Every queue of the work engine is listed, empty or not.
    for queue in ("webhook_events", "recording_copies", "courses.zoom", "family registrant"):
        assert (("companion_queue_depth", frozenset({("queue", queue)}))) in after.samples


def test_json_logs_are_one_object_per_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("companion.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("course %s is not safe", 42)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line[:1] == "{")
    assert first["message"] == "course 42 is not safe"
    assert first["level"] == "warning" and first["logger"] == "companion.test.json"
    assert first["time"].endswith("+00:00") and isinstance(first["process"], int)
    assert "ValueError: boom" in second["exception"]


def test_log_format_json_makes_the_apps_logs_json(tmp_path: Any) -> None:
    root = logging.getLogger()
    saved = [(h, h.formatter) for h in root.handlers]
    try:
        logs.configure({"LOG_LEVEL": "info", "LOG_FORMAT": "json"})
        assert root.handlers
        assert all(isinstance(h.formatter, logs.JsonFormatter) for h in root.handlers)
    finally:
        for handler, formatter in saved:
            handler.setFormatter(formatter)
