"""`companion evidence verify PACK.zip`: check an evidence pack's signature and record, and
re-hash the recordings it names. Exit status 0 when valid, 1 when not, 2 when unreadable."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group("evidence")
def evidence_group() -> None:
    """Class evidence packs."""


@evidence_group.command("verify")
@click.argument("pack_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_command(pack_file: Path) -> None:
    """Check an evidence pack against the organisation's key and the stored recordings."""
    from ..cli import _app
    from ..db import job_session
    from ..errors import CompanionError
    from . import pack

    app = _app()
    data = pack_file.read_bytes()[: pack.MAX_PACK_BYTES + 1]
    with app.app_context():
        with job_session(app) as session:
            try:
                result = pack.verify_pack(session, app, data)
            except CompanionError as exc:
                click.echo(f"{pack_file.name}: {exc.message}", err=True)
                sys.exit(2)
        pack.rehash_stored(app, result)  # no transaction open: the blobs may be across a network
        with job_session(app) as session:
            pack.record_verification(session, None, result)
    click.echo(result.summary)
    click.echo(f"signature: {'ok' if result.signature_ok else 'DOES NOT MATCH'} ({result.key_id})")
    click.echo(f"record.html: {'as signed' if result.record_ok else 'CHANGED'}")
    for problem in result.problems:
        click.echo(f"  {problem}")
    for f in result.files:
        click.echo(f"{f.file_type} {f.file_id}: {f.outcome}: {f.message}")
    sys.exit(0 if result.valid else 1)
