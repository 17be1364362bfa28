"""db.after_commit: work a request hands on runs once its transaction has committed and its
answer has gone out, with no transaction open, and never when the request rolled back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from companion import db, migrate
from companion.access import public
from companion.db import make_engine
from companion.orgs.models import Organisation

from .conftest import make_app


@pytest.fixture
def committed_app(tmp_path: Path) -> Flask:
    """An app on a SQLite file of its own, with real commits (no rollback provider)."""
    url = f"sqlite:///{tmp_path / 'after.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(url, connection=conn)
    engine.dispose()
    app = make_app(url, tmp_path)
    # These routes exist only in this test; a form token is not what it is about.
    app.config["WTF_CSRF_ENABLED"] = False
    return app


def test_callbacks_run_after_commit_with_the_write_lock_free(
    committed_app: Flask, tmp_path: Path
) -> None:
    seen: list[Any] = []

    def callback() -> None:
        # Another connection can take SQLite's write lock at once: the request's is gone.
        other = sqlite3.connect(tmp_path / "after.db", timeout=0.1, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            seen.append("lock free")
        finally:
            other.close()
        with db.job_session(committed_app) as session:
            seen.append(session.execute(text("SELECT count(*) FROM organisations")).scalar())

    @committed_app.post("/_test/after")
    @public
    def after() -> Any:
        db.get_session().add(Organisation(name="After commit", timezone="Europe/London"))
        db.after_commit(callback)
        seen.append("answered")
        return "ok"

    response = committed_app.test_client().post("/_test/after")
    assert response.status_code == 200
    # The answer came first, then the callback, which saw the committed row.
    assert seen == ["answered", "lock free", 1]


def test_callbacks_never_run_when_the_request_rolled_back(committed_app: Flask) -> None:
    seen: list[str] = []

    @committed_app.post("/_test/refused")
    @public
    def refused() -> Any:
        db.after_commit(lambda: seen.append("ran"))
        return "no", 400

    assert committed_app.test_client().post("/_test/refused").status_code == 400
    assert seen == []


def test_a_failing_callback_is_logged_not_raised(
    committed_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    @committed_app.post("/_test/broken")
    @public
    def route() -> Any:
        db.after_commit(broken)
        return "ok"

    assert committed_app.test_client().post("/_test/broken").status_code == 200
    assert "work after the request failed" in caplog.text
