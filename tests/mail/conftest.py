"""Fixtures for mail tests: real SMTP servers on loopback, and the app pointed at one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from .smtp_server import PASSWORD, USERNAME, Certs, SmtpServer, make_certs

MAIL_FROM = "classes@school.example.org"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("smtp-certs"))


@pytest.fixture
def smtp_server(certs: Certs) -> Iterator[Callable[..., SmtpServer]]:
    """Start SMTP servers: ``smtp_server(security="starttls", auth=True, start=True, hold=0)``
    (``hold``: seconds each message is kept before the server answers)."""
    started: list[SmtpServer] = []

    def start(
        *,
        security: str = "none",
        auth: bool = False,
        port: int | None = None,
        start: bool = True,
        hold: float = 0.0,
    ) -> SmtpServer:
        server = SmtpServer(certs, security=security, auth=auth, port=port, hold=hold)
        if start:
            server.start()
            started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def use_smtp(
    app: Flask,
    server: SmtpServer,
    certs: Certs | None = None,
    *,
    security: str | None = None,
    login: bool = False,
    **extra: Any,
) -> None:
    """Point the app's mail settings at ``server`` (as COMPANION_SMTP_* would)."""
    app.config.update(
        SMTP_HOST=server.host,
        SMTP_PORT=server.port,
        SMTP_SECURITY=security or server.security,
        SMTP_CA_FILE=str(certs.ca_file) if certs else "",
        SMTP_USERNAME=USERNAME if login else "",
        SMTP_PASSWORD=PASSWORD if login else "",
        MAIL_FROM=MAIL_FROM,
    )
    app.config.update(extra)


def fresh_database(folder: Path, name: str) -> str:
    """A migrated database of its own, for tests that need real commits from several
    connections at once."""
    from ..conftest import own_database_url

    return own_database_url(folder, name, migrated=True)
