"""`companion storage ...`: where the encrypted recordings are kept, and whether it is usable.

    companion storage check                  the folder or bucket is there and usable now
    companion storage cleanup [--hours N]    abort uploads (or remove partial files) left by
                                             interrupted writes older than N hours

``check`` is quick (one request to an object store, a few seconds at most) and writes nothing;
run it after changing the storage settings, or from a deployment's readiness probe.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .storage import RecordingStorage


@click.group("storage")
def storage_group() -> None:
    """The store of encrypted recordings (a local folder or an S3-compatible bucket)."""


def _storage() -> RecordingStorage:
    from ..cli import _app
    from . import vault

    return vault.storage_for(_app())


@storage_group.command("check")
def check_command() -> None:
    """Check that recordings can be stored and read now; exit 1 with the reason if not."""
    from .storage import StorageError

    store = _storage()
    try:
        store.check()
    except StorageError as exc:
        click.echo(f"companion storage: not ready: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"Recordings storage ready: {store!r}")


@storage_group.command("cleanup")
@click.option(
    "--hours",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="Spare interrupted writes younger than this (a running upload is younger).",
)
def cleanup_command(hours: float) -> None:
    """Remove what interrupted writes left behind (nothing a reader can see)."""
    from .storage import StorageError

    store = _storage()
    try:
        removed = store.cleanup_partials(older_than=hours * 3600)
    except StorageError as exc:
        click.echo(f"companion storage: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"Removed {removed} leftover(s) of interrupted writes from {store!r}.")
