"""Families: enrolment, personal family links, the e-safety agreement, audio-only requests."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Connect what families does when other packages act (see companion.signals).

    Called by create_app for every app (web, worker, commands); connecting again is a no-op.
    """
    from .. import signals
    from . import family_views, services

    # A course changed: parents holding a link are told, owed links are sent.
    signals.connect(signals.safety_changed, services._on_safety_changed)
    signals.connect(signals.schedule_changed, services._on_schedule_changed)
    signals.connect(signals.course_cancelled, services._on_course_cancelled)
    signals.connect(signals.passcode_rotated, services._on_passcode_rotated)
    # A request to an @family route: who its family is.
    signals.connect(signals.family_for_request, family_views.load_family)
