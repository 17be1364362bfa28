"""Alembic migrations build exactly the schema the models describe, and undo it cleanly.

Runs on the suite's database kind: SQLite by default, PostgreSQL when
COMPANION_TEST_DATABASE_URL names one (a scratch database beside the suite's is used there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from companion import migrate
from companion.db import make_engine
from companion.models import Base

VERSIONS = migrate.MIGRATIONS / "versions"


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        return compare_metadata(context, Base.metadata)


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the suite's kind, dropped afterwards."""
    suite = os.environ.get("COMPANION_TEST_DATABASE_URL", "")
    if not suite.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    url = make_url(suite).set(drivername="postgresql+psycopg")
    name = f"{url.database}_migrations"
    server = make_engine(url.render_as_string(hide_password=False))
    with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_suite_database_matches_the_models(engine: Engine) -> None:
    assert differences(engine) == []


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    engine = make_engine(scratch_url)
    try:
        migrate.upgrade(scratch_url)
        assert table_names(engine) == set(Base.metadata.tables) | {"alembic_version"}
        assert differences(engine) == []
        with engine.connect() as conn:
            assert (
                migrate.current_revision(conn)
                == ScriptDirectory.from_config(
                    migrate.alembic_config(scratch_url)
                ).get_current_head()
            )

        migrate.downgrade(scratch_url, "base")
        assert table_names(engine) <= {"alembic_version"}
        with engine.connect() as conn:
            assert migrate.current_revision(conn) is None

        migrate.upgrade(scratch_url)
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_each_step_downgrades_to_the_one_before(scratch_url: str) -> None:
    """Walk up one revision at a time and back down, so every downgrade() is exercised alone."""
    script = ScriptDirectory.from_config(migrate.alembic_config(scratch_url))
    order = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    engine = make_engine(scratch_url)
    try:
        for index, revision in enumerate(order):
            migrate.upgrade(scratch_url, revision)
            before = table_names(engine)
            migrate.downgrade(scratch_url, order[index - 1] if index else "base")
            migrate.upgrade(scratch_url, revision)
            assert table_names(engine) == before, revision
    finally:
        engine.dispose()


def test_migration_files_form_one_line_and_are_named_by_number() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, f"more than one head: {script.get_heads()}"
    revisions = list(reversed(list(script.walk_revisions())))
    files = sorted(p.name for p in VERSIONS.glob("*.py") if p.name != "__init__.py")
    assert len(files) == len(revisions)
    previous = None
    for number, rev in enumerate(revisions, start=1):
        stem = Path(rev.path).stem
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+", stem), stem
        assert int(stem[:4]) == number, f"{stem}: expected number {number:04d}"
        assert rev.revision == stem, f"{stem}: revision id must equal the file name"
        assert rev.down_revision == previous, f"{stem} does not follow {previous}"
        previous = rev.revision
