"""Backups under test: an archive of the test's own (rolled-back) database, a fresh database to
restore into, and companion served on that database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from companion.backup import services
from companion.backup.keys import BACKUP
from companion.db import make_engine
from companion.keysets import KeySet, parse_lines
from companion.recordings import vault as vault_module
from companion.recordings.storage import RecordingStorage

from ..conftest import make_app

# A backup key of the suite (fixed, like the suite's other keys), and another one.
BACKUP_LINE = "backup-test:" + "QkFDS1VQLXRlc3Qta2V5LW9mLXRoZS1zdWl0ZS0wMDA="
OTHER_LINE = "backup-other:" + "T1RIRVItYmFja3VwLWtleS1vZi10aGUtc3VpdGUtMDA="


def keyset(*lines: str) -> KeySet:
    return parse_lines(BACKUP, list(lines or (BACKUP_LINE,)), "the test's backup keys")


def archive_of(
    session: Session, path: Path, storage: RecordingStorage | None = None, **options: Any
) -> services.Created:
    """An archive of what the test's session sees (its transaction is the snapshot)."""
    session.flush()
    connection = session.connection()
    return services.create_archive(
        path,
        options.pop("keys", None) or keyset(),
        snapshot=lambda: contextlib.nullcontext(connection),
        storage=storage,
        **options,
    )


def row_counts(engine_or_session: Engine | Session) -> dict[str, int]:
    """Rows per table (Alembic's left out), to compare two databases."""
    if isinstance(engine_or_session, Session):
        conn = engine_or_session.connection()
        return _counts(conn)
    with engine_or_session.connect() as conn:
        return _counts(conn)


def _counts(conn: Any) -> dict[str, int]:
    names = sorted(set(sa.inspect(conn).get_table_names()) - {"alembic_version"})
    return {
        n: int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(n))).scalar_one())
        for n in names
    }


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


@contextlib.contextmanager
def served(url: str, instance_dir: Path, storage: RecordingStorage) -> Iterator[Flask]:
    """companion on the restored database (real commits), with the recordings' storage."""
    app = make_app(url, instance_dir)
    app.extensions[vault_module.STORAGE_EXTENSION] = storage
    try:
        # No app context is kept pushed: each request pushes its own, as in production (a
        # shared one would share `g`, and with it one request's CSRF token, with the next).
        yield app
    finally:
        app.extensions["companion.engine"].dispose()
