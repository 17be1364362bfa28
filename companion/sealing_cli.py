"""`companion keys ... --kind sealing|signing`: the data-sealing and evidence-pack signing keys.

    companion keys generate --kind K [--id ID]   print a new key line for K
    companion keys status                        every key and what still uses it
    companion keys rotate --kind sealing         a new current sealing key, every value resealed
    companion keys rotate --kind signing         a new current signing key; the old one's public
                                                 keys recorded and its private key dropped
    companion keys reseal                        every value onto the current sealing key (older
                                                 keys and the legacy secret), and the public keys
                                                 of earlier packs recorded
    companion keys retire KEY_ID --kind K        drop an old key once nothing needs it

Resealing works in committed batches and changes a value only if nobody changed it meanwhile, so
it can be interrupted and run again. Running web and worker processes notice a changed key file
by themselves (companion.keysets.AppKeys).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask

from . import keysets, sealing
from .db import changed_rows
from .keysets import SEALING, SIGNING, KeyKind

KINDS: dict[str, KeyKind] = {"sealing": SEALING, "signing": SIGNING}
BATCH = 500


def generate(kind: KeyKind, key_id: str | None) -> str:
    try:
        return keysets.generate_line(kind, key_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--id") from None


def _editable_file(app: Flask, kind: KeyKind, what: str) -> str:
    """The key file companion may rewrite, or a ClickException saying what to do by hand."""
    env, file_env = f"COMPANION_{kind.setting}", f"COMPANION_{kind.file_setting}"
    if keysets.inline(kind, app.config):
        raise click.ClickException(
            f"{env} is set in the environment, which companion cannot change. {what} in {env} "
            "by hand, restart companion, then run `companion keys reseal`."
        )
    path = keysets.file_path(kind, app.config)
    if not path:  # pragma: no cover - the app would not have started
        raise click.ClickException(f"Neither {env} nor {file_env} is set.")
    return path


# --- resealing -----------------------------------------------------------------------------------


@dataclass
class ResealResult:
    moved: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unreadable: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    pack_keys_recorded: int = 0
    pack_keys_missing: list[str] = field(default_factory=list)


def reseal_values(app: Flask, *, batch: int = BATCH) -> ResealResult:
    """Reseal every stored value not under the current sealing key, in committed batches."""
    from .db import job_session

    sealer = sealing.sealer_for(app, reload=True)
    current = f"{sealing.PREFIX}:{sealer.current_id}:%"
    result = ResealResult()
    for col in sealing.SEALED_COLUMNS:
        table = sa.table(col.table, sa.column("id"), sa.column(col.column))
        value = table.c[col.column]
        last = 0
        while True:
            with job_session(app) as session:
                rows = session.execute(
                    sa.select(table.c.id, value)
                    .where(
                        table.c.id > last,
                        value.is_not(None),
                        value != "",
                        sa.not_(value.like(current)),
                    )
                    .order_by(table.c.id)
                    .limit(batch)
                ).all()
                if not rows:
                    break
                for row_id, token in rows:
                    try:
                        fresh = sealer.reseal(col.purpose, token)
                    except sealing.Unreadable:
                        result.unreadable[col.purpose.value] += 1
                        continue
                    # Only if nobody changed it meanwhile (a rotated passcode, a new seed).
                    changed = session.execute(
                        sa.update(table)
                        .where(table.c.id == row_id, value == token)
                        .values({col.column: fresh})
                    )
                    result.moved[col.purpose.value] += changed_rows(changed)
                last = rows[-1][0]
    return result


def record_pack_keys(app: Flask, result: ResealResult) -> None:
    from .db import job_session
    from .evidence import signing

    keys = signing.keys_for(app, reload=True)
    with job_session(app) as session:
        result.pack_keys_recorded, result.pack_keys_missing = signing.record_earlier_keys(
            session, keys
        )


def reseal_all(app: Flask, *, batch: int = BATCH) -> ResealResult:
    from .audit.services import record as audit
    from .db import job_session

    result = reseal_values(app, batch=batch)
    record_pack_keys(app, result)
    with job_session(app) as session:
        audit(
            session,
            "keys.resealed",
            actor_label="companion keys",
            current=sealing.sealer_for(app).current_id,
            resealed=dict(result.moved),
            unreadable=dict(result.unreadable),
            pack_keys_recorded=result.pack_keys_recorded,
        )
    return result


def _echo_reseal(result: ResealResult) -> None:
    moved = sum(result.moved.values())
    click.echo(
        f"Resealed {moved} value(s) under the current sealing key"
        + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(result.moved.items()))})" if moved else "")
        + "."
    )
    for purpose, n in sorted(result.unreadable.items()):
        click.echo(f"  {n} {purpose} value(s) could not be opened and were left as they are.")
    if result.pack_keys_recorded:
        click.echo(f"Recorded {result.pack_keys_recorded} public key(s) of earlier evidence packs.")
    for missing in result.pack_keys_missing:
        click.echo(f"  packs of {missing}: no configured key gives this public key.")


# --- status --------------------------------------------------------------------------------------


def _recovery_code_keys(session: Any) -> dict[str | None, int]:
    from .accounts.twofactor_models import RecoveryCode

    rows = session.execute(
        sa.select(RecoveryCode.key_id, sa.func.count(RecoveryCode.id))
        .where(RecoveryCode.used_at.is_(None))
        .group_by(RecoveryCode.key_id)
    ).all()
    return {k: int(n) for k, n in rows}


def _source(app: Flask, kind: KeyKind) -> str:
    if keysets.inline(kind, app.config):
        return f"COMPANION_{kind.setting}"
    return keysets.file_path(kind, app.config)


def status_lines(app: Flask) -> list[str]:
    from .db import job_session
    from .evidence import signing
    from .evidence.models import EvidencePack, EvidenceSigningKey

    sealer = sealing.sealer_for(app, reload=True)
    with job_session(app) as session:
        uses = sealing.key_uses(session)
        codes = _recovery_code_keys(session)
        recorded = session.execute(
            sa.select(EvidenceSigningKey.key_id, sa.func.count(EvidenceSigningKey.id)).group_by(
                EvidenceSigningKey.key_id
            )
        ).all()
        packs = session.execute(
            sa.select(EvidencePack.key_id, sa.func.count(EvidencePack.id)).group_by(
                EvidencePack.key_id
            )
        ).all()
    by_key: dict[str | None, int] = defaultdict(int)
    for use in uses:
        by_key[use.key_id] += use.count
    lines = [f"Data-sealing keys (from {_source(app, SEALING)}):"]
    for key_id in sealer.keys:
        role = "current" if key_id == sealer.current_id else "old"
        lines.append(
            f"  {key_id:<32} {role:<8} {by_key.pop(key_id, 0):>8} sealed value(s) "
            f"{codes.pop(key_id, 0):>6} recovery code(s)"
        )
    legacy_values, legacy_codes = by_key.pop(None, 0), codes.pop(None, 0)
    if legacy_values or legacy_codes:
        state = "set" if sealer.legacy_secret else "NOT SET"
        lines.append(
            f"  {'legacy secret (' + state + ')':<41} {legacy_values:>8} sealed value(s) "
            f"{legacy_codes:>6} recovery code(s)"
        )
    for missing_id, n in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        lines.append(f"  {missing_id!s:<32} MISSING  {n:>8} sealed value(s)")
    for missing_id, n in sorted(codes.items(), key=lambda kv: str(kv[0])):
        lines.append(f"  {missing_id!s:<32} MISSING  {n:>8} recovery code(s) that no longer work")
    behind = sum(u.count for u in uses if u.key_id != sealer.current_id)
    lines.append(
        f"{behind} sealed value(s) are not under the current key: run `companion keys reseal`."
        if behind
        else "Every sealed value is under the current key."
    )
    if legacy_codes:
        lines.append(
            f"{legacy_codes} recovery code(s) were made before keys were separated; they work "
            "while COMPANION_LEGACY_SECRET_KEY is set, until their owners make new ones."
        )
    keys = signing.keys_for(app, reload=True)
    recorded_ids = {k: int(n) for k, n in recorded}
    lines.append(f"Evidence-pack signing keys (from {_source(app, SIGNING)}):")
    for key_id in keys.keys:
        role = "current" if key_id == keys.current_id else "old"
        lines.append(
            f"  {key_id:<32} {role:<8} public key recorded for {recorded_ids.get(key_id, 0)}"
            " organisation(s)"
        )
    for key_id, n in sorted(packs):
        if key_id not in keys.keys:
            state = "public key recorded" if key_id in recorded_ids else "NOT RECORDED"
            lines.append(f"  {key_id:<32} earlier   {int(n):>6} pack(s), {state}")
    unrecorded = [k for k, _ in packs if k not in recorded_ids]
    if unrecorded:
        lines.append("Some packs' public keys are not recorded yet: run `companion keys reseal`.")
    return lines


# --- rotating and retiring -----------------------------------------------------------------------


def rotate_sealing(app: Flask, new_id: str | None, resume: bool, batch: int) -> None:
    if not resume:
        path = _editable_file(
            app, SEALING, "Put a new key line (`companion keys generate --kind sealing`) first"
        )
        line = generate(SEALING, new_id)
        old = keysets.read_key_file(SEALING, path)
        keysets.write_key_file(SEALING, path, [line, *old])
        sealer = sealing.sealer_for(app, reload=True)
        click.echo(f"New current sealing key {sealer.current_id} added to {path}.")
    result = reseal_values(app, batch=batch)
    from .audit.services import record as audit
    from .db import job_session

    with job_session(app) as session:
        audit(
            session,
            "keys.sealing_rotated",
            actor_label="companion keys",
            current=sealing.sealer_for(app).current_id,
            resealed=dict(result.moved),
        )
    _echo_reseal(result)
    click.echo(
        "Old sealing keys can be retired with `companion keys retire KEY_ID --kind sealing`."
    )


def rotate_signing(app: Flask, new_id: str | None) -> None:
    from .audit.services import record as audit
    from .db import job_session

    path = _editable_file(
        app, SIGNING, "Put a new key line (`companion keys generate --kind signing`) first"
    )
    # The outgoing key's public keys are recorded first, so its packs verify without it.
    result = ResealResult()
    record_pack_keys(app, result)
    if result.pack_keys_missing:
        raise click.ClickException(
            "Some earlier packs' public keys cannot be recorded ("
            + "; ".join(result.pack_keys_missing)
            + "); restore their keys (or COMPANION_LEGACY_SECRET_KEY) before rotating."
        )
    line = generate(SIGNING, new_id)
    keysets.write_key_file(SIGNING, path, [line])
    keys = signing_keys(app)
    with job_session(app) as session:
        audit(
            session, "keys.signing_rotated", actor_label="companion keys", current=keys.current_id
        )
    click.echo(
        f"New signing key {keys.current_id} written to {path}; the old private key is removed. "
        f"Earlier packs verify with their recorded public keys ({result.pack_keys_recorded} "
        "recorded now)."
    )


def signing_keys(app: Flask) -> Any:
    from .evidence import signing

    return signing.keys_for(app, reload=True)


def retire(app: Flask, kind: KeyKind, key_id: str, force: bool) -> None:
    from .audit.services import record as audit
    from .db import job_session

    loaded = keysets.load(kind, app.config)
    if key_id == loaded.current_id:
        raise click.ClickException(
            f"{key_id} is the current {kind.what}; rotate to a new one first "
            f"(`companion keys rotate --kind {kind.name}`)."
        )
    if key_id not in loaded:
        raise click.ClickException(f"No {kind.what} {key_id} is configured.")
    if kind is SEALING:
        with job_session(app) as session:
            in_use = sum(u.count for u in sealing.key_uses(session) if u.key_id == key_id)
            codes = _recovery_code_keys(session).get(key_id, 0)
        if in_use:
            raise click.ClickException(
                f"{in_use} value(s) are still sealed under {key_id}; run `companion keys reseal`."
            )
        if codes and not force:
            raise click.ClickException(
                f"{codes} unused recovery code(s) were made under {key_id} (only their hashes are "
                "kept, so they cannot be moved); retiring it stops them working. Their owners "
                "can make new ones on their two-factor page; or retire with --force."
            )
    else:
        # Its public keys are recorded first, so its packs verify without it.
        result = ResealResult()
        record_pack_keys(app, result)
        lost = [m for m in result.pack_keys_missing if m.endswith(f": {key_id}")]
        if lost:
            raise click.ClickException(f"Packs signed with {key_id} cannot be verified without it.")
    with job_session(app) as session:
        audit(session, f"keys.{kind.name}_retired", actor_label="companion keys", key_id=key_id)
    if keysets.inline(kind, app.config):
        click.echo(
            f"{key_id} is retired. Remove it from COMPANION_{kind.setting} and restart companion."
        )
        return
    path = keysets.file_path(kind, app.config)
    lines = [
        line
        for line in keysets.read_key_file(kind, path)
        if line.split(":", 1)[0].strip() != key_id
    ]
    keysets.write_key_file(kind, path, lines)
    click.echo(f"{key_id} is retired and removed from {path}.")


def _app() -> Flask:
    from .cli import _app as build

    return build()


@click.command("reseal")
@click.option("--batch", type=int, default=BATCH, show_default=True, hidden=True)
def reseal_command(batch: int) -> None:
    """Reseal every value under the current sealing key, and record earlier packs' public keys.

    After an upgrade, with COMPANION_LEGACY_SECRET_KEY set, this moves everything off the old
    SECRET_KEY; afterwards `companion keys status` says whether that setting is still needed.
    """
    app = _app()
    _echo_reseal(reseal_all(app, batch=batch))
