"""Families: enrolment, personal family links, the e-safety agreement, audio-only requests.

Its services take a Session and plain values (plus the Zoom client, the acting user and
``now``), flush, and never commit. Each module holds one subject:

* ``people``: the child's and parents' names and addresses, cleaned, and how a child is named;
* ``access``: who may see and change a course's families, and the look-ups that check it;
* ``enrolment``: enrolling one family, or a CSV file of them (``csv_import`` reads the file);
* ``registrants``: each family as a Zoom registrant (the REGISTRANTS and JOIN_LINKS work);
* ``links``: each parent's personal family link, and the parents' contacts;
* ``family_sessions``: a link exchanged for a family session, and its forms' CSRF token;
* ``audio_only``: audio-only requests and their cut-off;
* ``roster`` and ``admit``: who is expected in a class, the teacher's admit list and summary;
* ``family_page``: what a parent's page shows, and its calendar file (``ics``);
* ``extensions``: what other packages add to the admit list and the family page;
* ``reactions``: what families does when a course changes (receivers of the course signals);
* ``agreement``: the e-safety agreement; ``errors``: the families' domain errors.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Connect what families does when other packages act (see companion.signals).

    Called by create_app for every app (web, worker, commands); connecting again is a no-op.
    """
    from .. import signals
    from . import family_views, reactions

    # A course changed: parents holding a link are told, owed links are sent.
    signals.connect(signals.safety_changed, reactions.on_safety_changed)
    signals.connect(signals.schedule_changed, reactions.on_schedule_changed)
    signals.connect(signals.course_cancelled, reactions.on_course_cancelled)
    signals.connect(signals.passcode_rotated, reactions.on_passcode_rotated)
    # A request to an @family route: who its family is.
    signals.connect(signals.family_for_request, family_views.load_family)
