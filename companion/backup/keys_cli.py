"""`companion keys ... --kind backup`: the backup keys (backup/keys.py), beside the other kinds.

Rotating adds a new current key first in the key file and keeps the old lines, so every archive
made so far stays readable; nothing is re-encrypted (each archive names the key that made it).
Retiring drops an old line; archives made with it can no longer be read, so it is refused while
the audit trail records archives made with it, unless forced.
"""

from __future__ import annotations

import json

import click
import sqlalchemy as sa
from flask import Flask

from .. import keysets
from .keys import BACKUP


def _editable_file(app: Flask) -> str:
    if keysets.inline(BACKUP, app.config):
        raise click.ClickException(
            "COMPANION_BACKUP_KEYS is set in the environment, which companion cannot change: put "
            "a new key line (`companion keys generate --kind backup`) first in it, keep the old "
            "ones after it, and restart companion."
        )
    path = keysets.file_path(BACKUP, app.config)
    if not path:
        raise click.ClickException(
            "No backup key is configured: set COMPANION_BACKUP_KEYS_FILE (`companion init` "
            "writes one for an instance folder)."
        )
    return path


def _archives_by_key(app: Flask) -> dict[str, int]:
    from ..audit.models import AuditEvent
    from ..db import job_session

    found: dict[str, int] = {}
    with job_session(app) as session:
        for detail in session.scalars(
            sa.select(AuditEvent.detail).where(AuditEvent.kind == "backup.created")
        ):
            key_id = str(json.loads(detail or "{}").get("key_id", ""))
            found[key_id] = found.get(key_id, 0) + 1
    return found


def rotate(app: Flask, new_id: str | None) -> None:
    from ..audit.services import record as audit
    from ..db import job_session

    path = _editable_file(app)
    try:
        line = keysets.generate_line(BACKUP, new_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--id") from None
    old = keysets.read_key_file(BACKUP, path)
    keysets.write_key_file(BACKUP, path, [line, *old])
    current = line.split(":", 1)[0]
    with job_session(app) as session:
        audit(session, "keys.backup_rotated", actor_label="companion keys", current=current)
    click.echo(
        f"New backup key {current} added to {path}; new archives use it, and the "
        f"{len(old)} older key(s) are kept to read earlier archives."
    )


def retire(app: Flask, key_id: str, force: bool) -> None:
    from ..audit.services import record as audit
    from ..db import job_session

    path = _editable_file(app)
    loaded = keysets.load(BACKUP, app.config)
    if key_id == loaded.current_id:
        raise click.ClickException(
            f"{key_id} is the current backup key; rotate first (`companion keys rotate --kind "
            "backup`)."
        )
    if key_id not in loaded:
        raise click.ClickException(f"No backup key {key_id} is configured.")
    made = _archives_by_key(app).get(key_id, 0)
    if made and not force:
        raise click.ClickException(
            f"{made} archive(s) were made with {key_id} and cannot be read without it; retire it "
            "once they are no longer kept, or with --force."
        )
    with job_session(app) as session:
        audit(session, "keys.backup_retired", actor_label="companion keys", key_id=key_id)
    lines = [
        line for line in keysets.read_key_file(BACKUP, path) if line.split(":", 1)[0] != key_id
    ]
    keysets.write_key_file(BACKUP, path, lines)
    click.echo(f"{key_id} is retired and removed from {path}.")


def status_lines(app: Flask) -> list[str]:
    from . import keys

    if not keys.configured(app.config):
        return ["Backup keys: none configured (`companion keys generate --kind backup`)."]
    loaded = keys.load(app.config)
    source = (
        "COMPANION_BACKUP_KEYS"
        if keysets.inline(BACKUP, app.config)
        else keysets.file_path(BACKUP, app.config)
    )
    made = _archives_by_key(app)
    lines = [f"Backup keys (from {source}):"]
    for key_id in loaded:
        role = "current" if key_id == loaded.current_id else "old"
        lines.append(f"  {key_id:<32} {role:<8} {made.get(key_id, 0):>8} archive(s) made")
    return lines
