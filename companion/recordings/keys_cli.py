"""`companion keys ...`: the key-encryption keys (KEKs) that wrap the recordings' file keys.

    companion keys generate [--id ID]     print a new key line (kek_id:base64key)
    companion keys status                 configured keys, which file keys use which key
    companion keys rotate [--id ID]       a new primary KEK, then every file key re-wrapped
    companion keys rotate --resume        finish an interrupted re-wrap (no new key)
    companion keys retire KEK_ID          drop an old KEK once no file key uses it

With ``--kind sealing`` or ``--kind signing`` the same commands handle the data-sealing and the
evidence-pack signing keys (companion.sealing_cli, which also adds ``companion keys reseal``).
``--kind backup`` handles the backup keys (companion.backup.keys_cli).

Rotation never rewrites a recording: only the 60-byte wrapped file keys in the database change
(FORMAT.md, "Key wrapping"). It works in batches, each committed, so an interrupted rotation
loses nothing and ``--resume`` carries on from where it stopped. Running web and worker
processes notice the changed key file by themselves.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from flask import Flask
from sqlalchemy import func, select

BATCH = 500


def _app() -> Flask:
    from ..cli import _app as build

    return build()


KIND = click.option(
    "--kind",
    type=click.Choice(["recordings", "sealing", "signing", "backup"]),
    default="recordings",
    show_default=True,
    help="recordings: key-encryption keys; sealing: data-sealing keys; signing: evidence packs; "
    "backup: backup archives.",
)


@click.group("keys")
def keys_group() -> None:
    """Keys: the recordings vault's, the data-sealing and the evidence-pack signing keys."""


def _add_sealing_commands() -> None:
    from ..sealing_cli import reseal_command

    keys_group.add_command(reseal_command)


_add_sealing_commands()


@keys_group.command("generate")
@click.option("--id", "kek_id", default=None, help="Key id (default: <prefix>-YYYYMMDD-random).")
@KIND
def generate_command(kek_id: str | None, kind: str) -> None:
    """Print a new key line for the setting or the key file of KIND (keep it secret)."""
    from .keys import generate_kek_line

    if kind == "backup":
        from .. import sealing_cli
        from ..backup.keys import BACKUP

        click.echo(sealing_cli.generate(BACKUP, kek_id))
        return
    if kind != "recordings":
        from .. import sealing_cli

        click.echo(sealing_cli.generate(sealing_cli.KINDS[kind], kek_id))
        return

    try:
        click.echo(generate_kek_line(kek_id))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--id") from None


def _usage(session: Any) -> dict[str, int]:
    from .models import RecordingFile

    rows = session.execute(
        select(RecordingFile.kek_id, func.count(RecordingFile.id))
        .where(RecordingFile.wrapped_dek.is_not(None))
        .group_by(RecordingFile.kek_id)
    ).all()
    return {str(k): int(n) for k, n in rows}


@keys_group.command("status")
def status_command() -> None:
    """Which keys are configured, and what each one seals, wraps or signed."""
    from ..db import job_session
    from . import vault
    from .models import KekCheck

    app = _app()
    keyring = vault.keyring_for(app)
    with job_session(app) as session:
        usage = _usage(session)
        checks = {c.kek_id: c for c in session.scalars(select(KekCheck))}
    source = "COMPANION_KEK" if (app.config.get("KEK") or "").strip() else app.config["KEK_FILE"]
    click.echo(f"Key-encryption keys (from {source}):")
    check_values = keyring.check_values()
    for kek_id in keyring.ids:
        known = checks.get(kek_id)
        if known is None:
            state = "not used yet"
        elif known.check_value == check_values[kek_id]:
            state = "matches the database"
        else:  # pragma: no cover - the app would not have started
            state = "DOES NOT MATCH the database"
        role = "primary" if kek_id == keyring.primary_id else "old"
        click.echo(f"  {kek_id:<32} {role:<8} {usage.get(kek_id, 0):>8} file key(s)  {state}")
    for kek_id, row in sorted(checks.items()):
        if row.retired_at is not None:
            click.echo(f"  {kek_id:<32} retired {row.retired_at:%Y-%m-%d}")
    behind = sum(n for k, n in usage.items() if k != keyring.primary_id)
    if behind:
        click.echo(
            f"{behind} file key(s) are not under the primary key yet: "
            "run `companion keys rotate --resume`."
        )
    else:
        click.echo("Every file key is wrapped under the primary key.")
    from ..sealing_cli import status_lines

    for line in status_lines(app):
        click.echo(line)
    from ..backup.keys_cli import status_lines as backup_status_lines

    for line in backup_status_lines(app):
        click.echo(line)


def _rewrap_all(app: Flask, batch: int) -> int:
    """Re-wrap every file key onto the primary KEK, in committed batches; returns how many."""
    from ..audit.services import record as audit
    from ..db import job_session
    from . import vault
    from .models import RecordingFile

    keyring = vault.keyring_for(app, reload=True)
    primary = keyring.primary_id
    with job_session(app) as session:
        vault.note_kek_use(session, keyring)
        total = sum(n for k, n in _usage(session).items() if k != primary)
    click.echo(f"Re-wrapping {total} file key(s) under {primary}.")
    done = 0
    while True:
        with job_session(app) as session:
            rows = session.scalars(
                select(RecordingFile)
                .where(RecordingFile.wrapped_dek.is_not(None), RecordingFile.kek_id != primary)
                .order_by(RecordingFile.id)
                .limit(batch)
                .with_for_update()
            ).all()
            if not rows:
                break
            vault.note_kek_use(session, keyring)
            for row in rows:
                assert row.kek_id is not None and row.wrapped_dek is not None
                new = keyring.rewrap(row.kek_id, row.id, bytes(row.wrapped_dek))
                row.kek_id, row.wrapped_dek = new.kek_id, new.wrapped
            done += len(rows)
        click.echo(f"  re-wrapped {done}/{max(total, done)}")
    with job_session(app) as session:
        audit(
            session, "keys.rotated", actor_label="companion keys", primary=primary, rewrapped=done
        )
    return done


@keys_group.command("rotate")
@click.option("--id", "new_id", default=None, help="Id of the new key (default: generated).")
@click.option("--resume", is_flag=True, help="Only re-wrap onto the current primary (no new key).")
@click.option("--batch", type=int, default=BATCH, show_default=True, hidden=True)
@KIND
def rotate_command(new_id: str | None, resume: bool, batch: int, kind: str) -> None:
    """Make a new key of KIND current: recordings re-wraps every file key under it (recordings
    untouched), sealing reseals every value, signing keeps earlier packs verifiable."""
    from ..db import job_session
    from . import keyfile, vault
    from .keys import generate_kek_line, read_kek_file

    app = _app()
    if kind == "backup":
        from ..backup import keys_cli as backup_keys

        if resume:
            raise click.BadParameter("backup keys have nothing to resume", param_hint="--resume")
        backup_keys.rotate(app, new_id)
        return
    if kind != "recordings":
        from .. import sealing_cli

        if kind == "sealing":
            sealing_cli.rotate_sealing(app, new_id, resume, batch)
        elif resume:
            raise click.BadParameter("signing keys have nothing to resume", param_hint="--resume")
        else:
            sealing_cli.rotate_signing(app, new_id)
        return
    if not resume:
        if (app.config.get("KEK") or "").strip():
            raise click.ClickException(
                "COMPANION_KEK is set in the environment, which companion cannot change. Put a "
                "new key line (`companion keys generate`) first in COMPANION_KEK, keep the old "
                "ones after it, restart companion, then run `companion keys rotate --resume`."
            )
        path = app.config["KEK_FILE"]
        try:
            line = generate_kek_line(new_id)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--id") from None
        old = read_kek_file(path)
        keyfile.write_key_file(path, [line, *old])
        keyring = vault.keyring_for(app, reload=True)
        with job_session(app) as session:
            vault.note_kek_use(session, keyring)
        click.echo(f"New primary key {keyring.primary_id} added to {path}.")
    done = _rewrap_all(app, batch)
    click.echo(
        f"Done: {done} file key(s) re-wrapped; no recording was rewritten. Old keys can be "
        "retired with `companion keys retire KEK_ID`."
    )


@keys_group.command("retire")
@click.argument("kek_id")
@KIND
@click.option(
    "--force",
    is_flag=True,
    help="sealing: even if recovery codes were made under it; backup: even if archives were.",
)
def retire_command(kek_id: str, kind: str, force: bool) -> None:
    """Remove an old key; refused while anything still needs it."""
    from ..audit.services import record as audit
    from ..db import job_session, utcnow
    from . import keyfile, vault
    from .keys import read_kek_file
    from .models import KekCheck, RecordingFile

    app = _app()
    if kind == "backup":
        from ..backup import keys_cli as backup_keys

        backup_keys.retire(app, kek_id, force)
        return
    if kind != "recordings":
        from .. import sealing_cli

        sealing_cli.retire(app, sealing_cli.KINDS[kind], kek_id, force)
        return
    keyring = vault.keyring_for(app, reload=True)
    if kek_id == keyring.primary_id:
        raise click.ClickException(
            f"{kek_id} is the primary key; rotate to a new key first (`companion keys rotate`)."
        )
    with job_session(app) as session:
        row = session.scalars(
            select(KekCheck).where(KekCheck.kek_id == kek_id).with_for_update()
        ).first()
        if row is None and kek_id not in keyring:
            raise click.ClickException(f"No key {kek_id} is configured or known.")
        in_use = session.scalar(
            select(func.count(RecordingFile.id)).where(
                RecordingFile.kek_id == kek_id, RecordingFile.wrapped_dek.is_not(None)
            )
        )
        if in_use:
            raise click.ClickException(
                f"{in_use} file key(s) are still wrapped under {kek_id}; "
                "run `companion keys rotate --resume` first."
            )
        if row is not None and row.retired_at is None:
            row.retired_at = utcnow()
        audit(session, "keys.retired", actor_label="companion keys", kek_id=kek_id)
    if (app.config.get("KEK") or "").strip():
        click.echo(f"{kek_id} is retired. Remove it from COMPANION_KEK and restart companion.")
        return
    path = app.config["KEK_FILE"]
    lines = [line for line in read_kek_file(path) if line.split(":", 1)[0].strip() != kek_id]
    keyfile.write_key_file(path, lines)
    click.echo(f"{kek_id} is retired and removed from {path}.")
    sys.stdout.flush()
