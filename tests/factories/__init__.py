"""Domain builders for the tests, one module per domain; import them from this package.

    people      organisations and staff (``factories.user(session, org, role="lead")``)
    courses     a series, a course put into Zoom as the page does, its Zoom work run
    families    a family enrolled and registered in Zoom, withdrawn, retried; a family session
    evidence    classes in the past, Zoom's meeting events fed through attendance, recordings
    recordings  a course row already in Zoom, its meeting body, a class some days ago

Each test imports builders the same way: ``from .. import factories`` and ``factories.enrol(...)``,
or by name, ``from ..factories import NOW, make_course``. The modules build and read domain
objects only; fixtures stay in the conftest files, Zoom in ``tests/zoom_sandbox.py``.
"""

from __future__ import annotations

from .courses import (
    NOW,
    check,
    create_over_clock_change,
    make_course,
    next_clock_change,
    series,
    series_over_clock_change,
    settle,
    start,
    utc_now,
)
from .evidence import (
    HOST_ID,
    Meeting,
    class_of,
    course_with_classes,
    family,
    family_cookie,
    feed,
    iso,
    recording,
)
from .families import (
    LINK_RE,
    enrol,
    link_path,
    links_to,
    outbox,
    principal,
    retry,
    withdraw,
    zoom_now,
)
from .people import (
    PASSWORD,
    organisation,
    password_hash,
    user,
)
from .recordings import (
    CLASS_MINUTES,
    class_start,
    meeting_body,
    zoom_course,
)

__all__ = [
    "CLASS_MINUTES",
    "HOST_ID",
    "LINK_RE",
    "Meeting",
    "NOW",
    "PASSWORD",
    "check",
    "class_of",
    "class_start",
    "course_with_classes",
    "create_over_clock_change",
    "enrol",
    "family",
    "family_cookie",
    "feed",
    "iso",
    "link_path",
    "links_to",
    "make_course",
    "meeting_body",
    "next_clock_change",
    "utc_now",
    "organisation",
    "outbox",
    "password_hash",
    "principal",
    "recording",
    "retry",
    "series",
    "series_over_clock_change",
    "settle",
    "start",
    "user",
    "withdraw",
    "zoom_course",
    "zoom_now",
]
