"""Making, checking and restoring backup archives (README, "Backups").

* :func:`create_archive` reads every table in one read-only snapshot (PostgreSQL: REPEATABLE
  READ; SQLite: one deferred transaction, a WAL snapshot), streaming rows into the archive, so
  neither the database nor the archive is ever held in memory. Recording blobs (already
  encrypted under the recordings' keys) are only referenced unless asked for, and are then read
  from the store after the snapshot's transaction has ended: the store may be across a network.
* :func:`verify_archive` authenticates every byte and checks the manifest.
* :func:`restore_archive` verifies first, then loads the rows into an empty database in one
  transaction (migrating it to the archive's revision inside that transaction), so a failure at
  any point leaves the database as it was and the command can simply be run again.

The commands (``backup/cli.py``) commit; these functions take connections and plain values.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..audit.models import AuditEvent
from ..audit.services import GENESIS
from ..audit.services import record as audit
from ..db import READ_OPTION, utcnow
from ..keysets import KeySet
from ..recordings.storage import RecordingStorage
from . import archive, content, tables
from .archive import ArchiveError, ArchiveWriter
from .content import Manifest, RecordWriter
from .tables import TableSpec
from .trail import VERIFIED, VERIFY_FAILED

Progress = Callable[[str], None]
ROW_BATCH = 1000
# Rows between two progress lines of one table.
PROGRESS_EVERY = 50_000


def _quiet(_message: str) -> None:
    pass


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction that sees one consistent state of the whole database."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
        return
    # A deferred BEGIN takes no write lock; under WAL its first read fixes the snapshot.
    with engine.execution_options(**{READ_OPTION: True}).connect() as conn, conn.begin():
        yield conn


@dataclass(frozen=True)
class BlobRef:
    key: str


def _dump_table(
    conn: Connection, spec: TableSpec, out: RecordWriter, progress: Progress
) -> tuple[int, list[BlobRef]]:
    table = spec.core()
    out.record(
        {
            "record": "table",
            "name": spec.name,
            "columns": [list(c) for c in spec.columns],
            "primary_key": list(spec.primary_key),
        }
    )
    kinds = [kind for _, kind in spec.columns]
    order = [table.c[name] for name in spec.primary_key] or list(table.c)
    refs: list[BlobRef] = []
    blob_columns = None
    if spec.name == "recording_files":
        names = [name for name, _ in spec.columns]
        blob_columns = (names.index("blob_key"), names.index("wrapped_dek"))
    count = 0
    # Per statement: Connection.execution_options would change the caller's connection too.
    result = conn.execute(
        select(table).order_by(*order), execution_options={"yield_per": ROW_BATCH}
    )
    for partition in result.partitions():
        for row in partition:
            out.record([tables.encode(kind, value) for kind, value in zip(kinds, row, strict=True)])
            # A file whose key was destroyed (crypto-shredded) has nothing left to copy.
            if blob_columns and row[blob_columns[0]] and row[blob_columns[1]] is not None:
                refs.append(BlobRef(str(row[blob_columns[0]])))
        count += len(partition)
        if count % PROGRESS_EVERY < len(partition):
            progress(f"  {spec.name}: {count} rows so far")
    out.record({"record": "table_end", "name": spec.name, "rows": count})
    return count, refs


@dataclass(frozen=True)
class Created:
    path: str
    archive_id: str
    size: int
    manifest: Manifest


def create_archive(
    path: str | os.PathLike[str],
    keyset: KeySet,
    *,
    snapshot: Callable[[], contextlib.AbstractContextManager[Connection]],
    storage: RecordingStorage | None = None,
    with_recordings: bool = False,
    progress: Progress = _quiet,
    now: dt.datetime | None = None,
) -> Created:
    """Write one archive of the whole database to ``path`` (refused if it exists)."""
    created_at = (now or utcnow()).astimezone(dt.UTC)
    with ArchiveWriter(path, keyset) as sink:
        out = RecordWriter(sink)
        refs: list[BlobRef] = []
        with snapshot() as conn:
            revision = _revision(conn)
            found = tables.specs(conn)
            manifest = Manifest(
                archive_id=str(sink.archive_id),
                created_at=created_at.isoformat(),
                dialect=conn.dialect.name,
                revision=revision,
                with_recordings=with_recordings,
            )
            out.record(
                {
                    "record": "archive",
                    "format": content.FORMAT,
                    "archive_id": manifest.archive_id,
                    "created_at": manifest.created_at,
                    "dialect": manifest.dialect,
                    "revision": revision,
                    "tables": [spec.name for spec in found],
                    "with_recordings": with_recordings,
                }
            )
            for spec in found:
                count, table_refs = _dump_table(conn, spec, out, progress)
                manifest.tables[spec.name] = count
                refs += table_refs
                if count:
                    progress(f"  {spec.name}: {count} rows")
        # The snapshot's transaction has ended: the store may be across a network.
        manifest.referenced_blobs = len(refs)
        if with_recordings:
            if storage is None:
                raise ValueError("with_recordings needs the recordings' storage")
            _dump_blobs(storage, refs, out, manifest, progress)
        out.record(
            {
                "record": "end",
                "tables": manifest.tables,
                "blobs": manifest.blobs,
                "blob_bytes": manifest.blob_bytes,
                "referenced_blobs": manifest.referenced_blobs,
                "revision": revision,
            }
        )
        out.flush()
    return Created(str(path), manifest.archive_id, sink.size, manifest)


def _dump_blobs(
    storage: RecordingStorage,
    refs: list[BlobRef],
    out: RecordWriter,
    manifest: Manifest,
    progress: Progress,
) -> None:
    for number, ref in enumerate(refs, start=1):
        src = storage.open_reader(ref.key)
        try:
            size = storage.size(ref.key)
            out.record({"record": "blob", "key": ref.key, "size": size})
            done = 0
            while chunk := src.read(content.BLOB_CHUNK):
                out.record(base64.b64encode(chunk).decode("ascii"))
                done += len(chunk)
            if done != size:
                raise ArchiveError(f"recording blob {ref.key} changed while it was copied")
        finally:
            src.close()
        out.record({"record": "blob_end", "key": ref.key, "size": size})
        manifest.blobs += 1
        manifest.blob_bytes += size
        progress(f"  recording {number}/{len(refs)}: {size / 1e6:.1f} MB")


# --- verifying ---------------------------------------------------------------------------------


def read_records(path: str | os.PathLike[str], keyset: KeySet) -> Iterator[tuple[str, Any]]:
    return content.records(archive.lines(archive.read_plaintext(path, keyset)), str(path))


def verify_archive(
    path: str | os.PathLike[str], keyset: KeySet, *, progress: Progress = _quiet
) -> Manifest:
    """Authenticate every byte of the archive and check its manifest; ArchiveError if not."""
    for what, value in read_records(path, keyset):
        if what == "blob_end":
            progress(f"  recording blob {value}: checked")
        elif what == "end":
            assert isinstance(value, Manifest)
            return value
    raise AssertionError("records() ends with the end record or raises")  # pragma: no cover


def record_verification(
    session: Session,
    path: str | os.PathLike[str],
    manifest: Manifest | None,
    *,
    problem: str | None = None,
    archive_size: int | None = None,
) -> AuditEvent:
    """Put a verification's result on the audit trail (installation-wide, as key rotations):
    the security review shows the last good one."""
    name = os.path.basename(os.fspath(path))
    if manifest is None:
        found = archive.archive_id_of(path)
        return audit(
            session,
            VERIFY_FAILED,
            actor_label="companion backup",
            subject=("backup", str(found) if found else name),
            file=name,
            problem=problem or "",
        )
    return audit(
        session,
        VERIFIED,
        actor_label="companion backup",
        subject=("backup", manifest.archive_id),
        file=name,
        created_at=manifest.created_at,
        revision=manifest.revision,
        rows=manifest.rows,
        tables=len(manifest.tables),
        blobs=manifest.blobs,
        referenced_blobs=manifest.referenced_blobs,
        size=archive_size,
    )


# --- restoring ---------------------------------------------------------------------------------


class NotEmpty(ArchiveError):
    code = "backup_target_not_empty"


def _count(conn: Connection, name: str) -> int:
    table = sa.table(name)
    return int(conn.execute(select(sa.func.count()).select_from(table)).scalar_one())


def _is_seed(conn: Connection, name: str) -> bool:
    """Whether the only rows of ``name`` are those the migrations themselves put there."""
    if name != "audit_head":
        return False
    rows = conn.execute(sa.text("SELECT id, last_id, last_hash FROM audit_head")).all()
    return [tuple(r) for r in rows] == [(1, 0, GENESIS)]


def check_empty(conn: Connection) -> str | None:
    """The database's revision (None when it has no tables); NotEmpty if it holds any row."""
    names = set(sa.inspect(conn).get_table_names())
    if not names:
        return None
    if "alembic_version" not in names:
        raise NotEmpty(
            "the database has tables that companion did not create "
            f"({', '.join(sorted(names)[:5])}): restore only into an empty database"
        )
    full = []
    for name in sorted(names - tables.SKIPPED):
        count = _count(conn, name)
        if count and not _is_seed(conn, name):
            full.append(f"{name}: {count}")
    if full:
        shown = ", ".join(full[:6]) + (", ..." if len(full) > 6 else "")
        raise NotEmpty(
            f"the database is not empty ({shown} row(s)): a backup is restored only into an "
            "empty database; create a new database for it"
        )
    return _revision(conn)


def _revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _ancestors(url: str, revision: str) -> set[str]:
    from alembic.script import ScriptDirectory

    from .. import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    return {r.revision for r in script.iterate_revisions(revision, "base")}


def check_revision(url: str, current: str | None, wanted: str | None) -> None:
    """Refuse a restore that the migrations cannot bring to the archive's revision."""
    if wanted is None:
        raise ArchiveError("the archive names no schema revision; it cannot be restored")
    try:
        ancestors = _ancestors(url, wanted)
    except Exception:
        raise ArchiveError(
            f"the archive is at schema revision {wanted}, which this version of companion does "
            "not know: restore it with the version that made it (or a newer one)"
        ) from None
    if current is not None and current not in ancestors:
        raise NotEmpty(
            f"the empty database is at schema revision {current}, past the archive's "
            f"{wanted}: restore into a new database without tables"
        )


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    blobs_written: int
    blobs_present: int


def restore_blobs(
    path: str | os.PathLike[str],
    keyset: KeySet,
    storage: RecordingStorage,
    *,
    progress: Progress = _quiet,
) -> tuple[int, int]:
    """Write the archive's recording blobs to ``storage`` (no transaction is open); a blob
    already there with the same size is kept, so running it again is safe. (written, kept)"""
    written = kept = 0
    records = read_records(path, keyset)
    for what, value in records:
        if what != "blob":
            continue
        key, size = value
        if storage.exists(key) and storage.size(key) == size:
            kept += 1
            for inner, _ in records:
                if inner == "blob_end":
                    break
            continue
        with storage.open_writer(key) as dest:
            for inner, data in records:
                if inner == "blob_end":
                    break
                dest.write(data)
        written += 1
        progress(f"  recording blob {key}: {size / 1e6:.1f} MB written")
    return written, kept


def restore_rows(
    conn: Connection,
    path: str | os.PathLike[str],
    keyset: KeySet,
    url: str,
    manifest: Manifest,
    *,
    progress: Progress = _quiet,
) -> None:
    """Migrate the empty database to the archive's revision and load every row, all inside the
    caller's transaction, then check every table's count against the manifest."""
    current = check_empty(conn)
    check_revision(url, current, manifest.revision)
    if current != manifest.revision:
        from .. import migrate

        progress(f"Migrating the database to revision {manifest.revision}.")
        migrate.upgrade(url, manifest.revision or "head", connection=conn)
    conn.execute(sa.text("DELETE FROM audit_head"))  # the migrations' genesis row, if any
    if conn.dialect.name == "sqlite":
        # Rows come parents first, but a table may refer to itself; checked at commit instead.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    present = tables.reflect(conn).tables
    table: sa.Table | None = None
    spec: TableSpec | None = None
    count = 0
    for what, value in read_records(path, keyset):
        if what == "table":
            spec = value
            target = present.get(spec.name)
            missing = [n for n, _ in spec.columns if target is None or n not in target.c]
            if missing:
                raise ArchiveError(
                    f"the database at revision {manifest.revision} has no "
                    + (
                        f"table {spec.name}"
                        if target is None
                        else f"column(s) {missing} in {spec.name}"
                    )
                    + ": the archive does not match its own revision; nothing was restored"
                )
            table = spec.core()
            count = 0
        elif what == "rows":
            assert spec is not None and table is not None
            names = [n for n, _ in spec.columns]
            kinds = [k for _, k in spec.columns]
            conn.execute(
                table.insert(),
                [
                    {n: tables.decode(k, v) for n, k, v in zip(names, kinds, row, strict=True)}
                    for row in value
                ],
            )
            count += len(value)
            if count % PROGRESS_EVERY < len(value):
                progress(f"  {spec.name}: {count} rows so far")
        elif what == "table_end":
            if count:
                progress(f"  {value}: {count} rows")
            table = spec = None
        elif what == "blob":
            break  # the rest was authenticated by the verification before
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, present)
    for name, expected in manifest.tables.items():
        if _count(conn, name) != expected:
            raise ArchiveError(
                f"{name} holds {_count(conn, name)} rows after the restore, not {expected}"
            )


def _reset_sequences(conn: Connection, present: Any) -> None:
    """Rows came with their ids; move each id sequence past them so new rows get new ids."""
    for name, table in present.items():
        for column in table.columns:
            seq = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": name, "c": column.name}
            ).scalar()
            if seq is None:
                continue
            quoted_t = conn.dialect.identifier_preparer.quote(name)
            quoted_c = conn.dialect.identifier_preparer.quote(column.name)
            # Identifiers come from the database's own catalogue, quoted.
            conn.execute(
                sa.text(
                    f"SELECT setval(:seq, COALESCE((SELECT MAX({quoted_c}) FROM {quoted_t}), 1), "  # noqa: S608
                    f"(SELECT MAX({quoted_c}) FROM {quoted_t}) IS NOT NULL)"
                ),
                {"seq": seq},
            )


def restore_archive(
    path: str | os.PathLike[str],
    keyset: KeySet,
    *,
    engine: Engine,
    url: str,
    storage: RecordingStorage | None = None,
    progress: Progress = _quiet,
) -> Restored:
    """Verify the archive, check the database is empty, write any recording blobs it holds,
    then load the rows in one transaction. Nothing in the database changes unless all of it
    is restored; blobs written before a failure are harmless (the restored rows, or none,
    decide what exists) and are reused by the next run."""
    progress("Checking the archive.")
    manifest = verify_archive(path, keyset, progress=progress)
    with engine.connect() as conn, conn.begin():
        check_revision(url, check_empty(conn), manifest.revision)
    written = kept = 0
    if manifest.blobs:
        if storage is None:
            raise ValueError("the archive holds recordings; restoring needs the storage")
        progress(f"Writing {manifest.blobs} recording blob(s) to the recordings storage.")
        written, kept = restore_blobs(path, keyset, storage, progress=progress)
    progress("Restoring the database in one transaction.")
    with engine.connect() as conn, conn.begin():
        restore_rows(conn, path, keyset, url, manifest, progress=progress)
    return Restored(manifest, written, kept)


def missing_blobs(engine: Engine, storage: RecordingStorage) -> tuple[int, int]:
    """(referenced, missing) recording blobs after a restore; the store is asked with no
    transaction open."""
    with Session(engine) as session:
        keys = [
            str(k)
            for k in session.scalars(
                sa.text(
                    "SELECT blob_key FROM recording_files "
                    "WHERE blob_key IS NOT NULL AND wrapped_dek IS NOT NULL"
                )
            )
        ]
    return len(keys), sum(1 for k in keys if not storage.exists(k))
