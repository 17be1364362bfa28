"""Shared fixtures: a real database migrated once, a transaction rolled back after every test.

The database is SQLite by default; set COMPANION_TEST_DATABASE_URL to a PostgreSQL URL to run the
same suite there (`make test` does both). Nothing here reaches the network beyond loopback.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from companion import create_app, migrate
from companion.db import make_engine

from . import factories

SECRET = "test-secret-key-that-is-long-enough-0123456789"


def pytest_report_header(config: Any) -> str:
    return f"companion database: {database_kind()}"


def database_kind() -> str:
    url = os.environ.get("COMPANION_TEST_DATABASE_URL", "")
    return "postgresql" if url.startswith("postgres") else "sqlite"


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect anywhere but this machine."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host in ("localhost", "::1") or host.startswith("127.") or host.startswith("/")
        ):
            raise RuntimeError(f"test tried to reach {host}; only loopback is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("COMPANION_TEST_DATABASE_URL")
    if url:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    if database_url.startswith("postgresql"):
        # Each run starts from an empty schema so that migrations are what is tested.
        with eng.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    with eng.begin() as conn:
        migrate.upgrade(database_url, connection=conn)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance")


class RollbackProvider:
    """Gives every request the test's session; commits inside it are savepoints."""

    def __init__(self, session: Session):
        self.session = session

    def open(self) -> Session:
        return self.session

    def close(self, session: Session) -> None:
        # Keep the test's objects usable after a request, as a second request would see them.
        pass


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    conn = engine.connect()
    trans = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        trans.rollback()
        conn.close()


def make_app(database_url: str, instance_dir: Path, **overrides: Any) -> Flask:
    config = {
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "TESTING": True,
        "STORAGE_DIR": str(instance_dir / "recordings"),
    }
    config.update(overrides)
    return create_app(config, instance_path=instance_dir, environ={})


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override per test (e.g. with a parametrised fixture) to change settings."""
    return {}


@pytest.fixture
def app(
    database_url: str, instance_dir: Path, db_session: Session, app_config: dict[str, Any]
) -> Iterator[Flask]:
    application = make_app(database_url, instance_dir, **app_config)
    application.extensions["companion.sessions"] = RollbackProvider(db_session)
    with application.app_context():
        yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def org(db_session: Session) -> Any:
    return factories.organisation(db_session)


@pytest.fixture
def admin(db_session: Session, org: Any) -> Any:
    return factories.user(db_session, org, role="admin", email="admin@example.org")


@pytest.fixture
def teacher(db_session: Session, org: Any) -> Any:
    return factories.user(db_session, org, role="teacher", email="teacher@example.org")


@pytest.fixture
def lead(db_session: Session, org: Any) -> Any:
    return factories.user(db_session, org, role="safeguarding_lead", email="lead@example.org")


CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


class Browser:
    """A test client that signs in and fills forms like a person, CSRF token included."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def csrf(self, path: str = "/login") -> str:
        return csrf_from(self.client.get(path).get_data(as_text=True))

    def login(self, email: str, password: str = factories.PASSWORD) -> Any:
        token = self.csrf("/login")
        return self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )

    def post(self, path: str, data: dict[str, Any] | None = None, *, form_page: str = "/") -> Any:
        payload = dict(data or {})
        payload["csrf_token"] = self.csrf(form_page)
        return self.client.post(path, data=payload)


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)


def ci_requires(what: str) -> None:
    """Skip when a local machine lacks something; in CI a missing server is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine (make test installs it)")
