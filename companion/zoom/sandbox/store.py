"""The sandbox's own state: one SQLite file, independent of companion's database.

Plain ``sqlite3`` with one connection shared by all threads behind a lock: the sandbox is a
single process serving a few requests at a time, so a lock is simpler than a pool and makes
every operation one serialised transaction. Documents (meetings, registrants, recording files)
are stored as JSON next to the columns that are searched on, so the sandbox can grow Zoom fields
without migrations. The state survives a restart of ``companion sandbox serve``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- access | download | zak
    scope TEXT NOT NULL DEFAULT '',
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meetings (
    id INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    created_at REAL NOT NULL,
    deleted_at REAL
);
CREATE TABLE IF NOT EXISTS registrants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    meeting_id INTEGER NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    tk TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_registrants_meeting ON registrants (meeting_id, status);
CREATE TABLE IF NOT EXISTS instances (
    uuid TEXT PRIMARY KEY,
    meeting_id INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_instances_meeting ON instances (meeting_id, started_at);
CREATE TABLE IF NOT EXISTS recording_files (
    id TEXT PRIMARY KEY,
    instance_uuid TEXT NOT NULL,
    meeting_id INTEGER NOT NULL,
    status TEXT NOT NULL,          -- completed | trashed
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_recording_files_instance ON recording_files (instance_uuid);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,           -- pending | delivered | failed | undeliverable
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    delivered_at REAL,
    last_status INTEGER,
    last_error TEXT,
    log TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS ix_deliveries_due ON deliveries (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Query parameters: positional (a tuple) or named (a dict).
Params = tuple[Any, ...] | dict[str, Any]


class Store:
    """Serialised access to the sandbox's SQLite file (``":memory:"`` works for tests)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        self._depth = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit; nested calls join the outer transaction."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth -= 1
                if outer:
                    self._conn.execute("COMMIT")

    # --- small helpers --------------------------------------------------------------------

    def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        with self.transaction() as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        with self.transaction() as conn:
            row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
            return row

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        with self.transaction() as conn:
            return conn.execute(sql, params)

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def bump(self, key: str, by: int = 1) -> int:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO counters (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, by),
            )
            value: int = conn.execute(
                "SELECT value FROM counters WHERE key = ?", (key,)
            ).fetchone()[0]
            return value

    def reset(self) -> None:
        """Forget everything except the schema and the download signing key."""
        with self.transaction() as conn:
            for table in (
                "tokens",
                "meetings",
                "registrants",
                "instances",
                "recording_files",
                "deliveries",
                "faults",
                "counters",
            ):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            conn.execute("DELETE FROM meta WHERE key NOT IN ('schema_version', 'signing_key')")


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text)
