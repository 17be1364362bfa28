"""Class evidence: attendance from Zoom's events, adult-present confirmations, the "never one
child alone" warning, the class record, signed evidence packs and a family's data (issue 7)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Connect what evidence adds to other packages and handles for them (companion.signals).

    Called by create_app for every app (web, worker, commands); connecting again is a no-op.
    """
    from .. import signals
    from . import attendance, handlers, views

    # The admit list's "Adult present" column and the family page's "adult in the room" panel.
    signals.connect(signals.admit_columns, views.admit_column)
    signals.connect(signals.family_class_panels, views.family_class_panel)
    # Zoom's meeting and participant events become attendance events.
    signals.connect(signals.zoom_event, handlers.handle, *sorted(attendance.ZOOM_EVENTS))
