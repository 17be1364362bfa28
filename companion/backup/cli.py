"""`companion backup ...`: encrypted backups of the database (README, "Backups").

    companion backup create [--output PATH] [--with-recordings]
    companion backup verify PATH
    companion backup restore PATH          into an empty database only

Every command reads the backup keys (``COMPANION_BACKUP_KEYS`` / ``_FILE``); the database is
the configured one. ``create`` reads the archive back once written, and every verification's
result goes on the audit trail, where the security review finds the last good one.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click
from flask import Flask

from ..config import ConfigError
from ..keysets import KeySet
from .content import Manifest


def _app() -> Flask:
    from ..cli import _app as build

    return build()


def _keys(app: Flask) -> KeySet:
    from . import keys

    try:
        return keys.load(app.config)
    except ConfigError as exc:
        raise click.ClickException("no usable backup key: " + "; ".join(exc.problems)) from None


def _say(message: str) -> None:
    click.echo(message)


def _record(app: Flask, path: Path, manifest: Manifest | None, problem: str | None = None) -> None:
    """Put the result on the audit trail; a database without companion's tables (a spare
    machine checking an archive) only gets a note, the check itself stands."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..db import job_session
    from . import services

    size = path.stat().st_size if path.exists() else None
    try:
        with job_session(app) as session:
            services.record_verification(
                session, path, manifest, problem=problem, archive_size=size
            )
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        click.echo(f"(The result could not be recorded in the database: {reason}.)", err=True)


@click.group("backup")
def backup_group() -> None:
    """Encrypted backups of the database: create, verify, restore."""


@backup_group.command("create")
@click.option(
    "--output",
    "output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Archive to write (default: backups/companion-<UTC time>.backup in the instance folder).",
)
@click.option(
    "--with-recordings",
    is_flag=True,
    help="Copy the recordings' encrypted blobs into the archive too (default: referenced only).",
)
def create_command(output: Path | None, with_recordings: bool) -> None:
    """Write one encrypted, authenticated archive of every table, then check it."""
    from ..audit.services import record as audit
    from ..db import get_engine, job_session, utcnow
    from ..recordings import vault
    from ..recordings.storage import StorageError
    from . import services
    from .archive import ArchiveError

    app = _app()
    keyset = _keys(app)
    if output is None:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        output = Path(app.instance_path) / "backups" / f"companion-{stamp}.backup"
    engine = get_engine(app)
    started = time.monotonic()
    click.echo(f"Backing up the database to {output} (backup key {keyset.current_id}).")
    try:
        created = services.create_archive(
            output,
            keyset,
            snapshot=lambda: services.snapshot(engine),
            storage=vault.storage_for(app) if with_recordings else None,
            with_recordings=with_recordings,
            progress=_say,
        )
    except (ArchiveError, StorageError) as exc:
        raise click.ClickException(f"{exc.message}; no archive was written") from None
    except OSError as exc:
        raise click.ClickException(
            f"could not write {output}: {exc.strerror or exc}; no archive was written"
        ) from None
    m = created.manifest
    click.echo(
        f"Wrote {created.size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s: "
        f"{len(m.tables)} tables, {m.rows} rows, "
        + (
            f"{m.blobs} recording blob(s) included."
            if with_recordings
            else f"{m.referenced_blobs} recording blob(s) referenced, not copied."
        )
    )
    with job_session(app) as session:
        audit(
            session,
            "backup.created",
            actor_label="companion backup",
            subject=("backup", created.archive_id),
            file=output.name,
            rows=m.rows,
            blobs=m.blobs,
            key_id=keyset.current_id,
        )
    click.echo("Reading it back.")
    _verify(app, output, keyset)


def _verify(app: Flask, path: Path, keyset: KeySet) -> None:
    from . import services
    from .archive import ArchiveError

    try:
        manifest = services.verify_archive(path, keyset)
    except ArchiveError as exc:
        _record(app, path, None, exc.message)
        click.echo(f"Backup NOT verified: {exc.message}", err=True)
        sys.exit(1)
    _record(app, path, manifest)
    made = dt.datetime.fromisoformat(manifest.created_at).astimezone(dt.UTC)
    click.echo(
        f"Backup verified: {path.name}, made {made:%Y-%m-%d %H:%M} UTC from {manifest.dialect} "
        f"at schema revision {manifest.revision}; {len(manifest.tables)} tables, "
        f"{manifest.rows} rows, {manifest.blobs} recording blob(s) included, "
        f"{manifest.referenced_blobs} referenced."
    )


@backup_group.command("verify")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def verify_command(path: Path) -> None:
    """Authenticate the whole archive and check its manifest. Exit 1 if it is not intact."""
    app = _app()
    _verify(app, path, _keys(app))


@backup_group.command("restore")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def restore_command(path: Path) -> None:
    """Restore an archive into the configured database, which must be empty."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..audit.services import record as audit
    from ..db import get_engine, job_session
    from ..recordings import vault
    from ..recordings.storage import StorageError
    from . import services
    from .archive import ArchiveError

    app = _app()
    keyset = _keys(app)
    engine = get_engine(app)
    started = time.monotonic()
    try:
        restored = services.restore_archive(
            path,
            keyset,
            engine=engine,
            url=app.config["DATABASE_URL"],
            storage=vault.storage_for(app),
            progress=_say,
        )
    except (ArchiveError, StorageError) as exc:
        raise click.ClickException(exc.message + " (the database was not changed)") from None
    except SQLAlchemyError as exc:
        # Another restore into the same database at the same time, a server gone away: the
        # transaction was rolled back whole.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(
            f"the restore failed and was rolled back, the database was not changed: {reason}"
        ) from None
    m = restored.manifest
    with job_session(app) as session:
        audit(
            session,
            "backup.restored",
            actor_label="companion backup",
            subject=("backup", m.archive_id),
            file=path.name,
            created_at=m.created_at,
            rows=m.rows,
        )
    referenced, missing = services.missing_blobs(engine, vault.storage_for(app))
    click.echo(
        f"Restored {m.rows} rows of {len(m.tables)} tables in "
        f"{time.monotonic() - started:.1f} s (archive made {m.created_at})."
    )
    if restored.blobs_written or restored.blobs_present:
        click.echo(
            f"Recording blobs: {restored.blobs_written} written, "
            f"{restored.blobs_present} already in the storage."
        )
    if missing:
        click.echo(
            f"{missing} of {referenced} recording blob(s) the database refers to are not in the "
            "recordings storage: point COMPANION_STORAGE_DIR / COMPANION_STORAGE_URL at the "
            "original store, or restore an archive made with --with-recordings.",
            err=True,
        )
    else:
        click.echo(f"All {referenced} recording blob(s) the database refers to are in the storage.")
    click.echo(
        "Next: `companion db upgrade` if this version of companion is newer than the archive, "
        "and `companion worker --job recordings_retention` to delete at once any restored "
        "recording past its date."
    )
