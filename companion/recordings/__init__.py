"""The encrypted recordings vault: ingest from Zoom, storage, streaming, concerns and holds."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Connect what recordings handles for other packages (see companion.signals).

    Called by create_app for every app (web, worker, commands); connecting again is a no-op.
    (The vault's keys are loaded by ``vault.init_app``, earlier in create_app.)
    """
    from .. import signals
    from . import ingest

    # Zoom says a cloud recording is ready: register its files for download.
    signals.connect(signals.zoom_event, ingest.accept_event, "recording.completed")
