"""The signals by which one package of companion reacts to another, all declared here.

A package that must react to another's change (or add to another's page, or handle a kind of
Zoom event) connects a receiver to one of these signals in its package's ``init_app(app)``,
which :func:`companion.create_app` calls for every app: the web app, the worker and every CLI
command build their app there, so all of them get the same receivers whatever modules they
happened to import. Nothing connects at import time.

Connect with :func:`connect`, never with ``signal.connect`` directly. Blinker's connections are
global to the process, and blinker keys a receiver by its identity: connecting the same
module-level function again (the second ``create_app`` of a test run, or of a worker) replaces
its entry instead of adding a second one, so a reaction is never delivered twice. A function
made inside ``init_app`` (a closure) would be a new object each time and be called once per app
built; :func:`connect` refuses those. Receivers are held strongly (``weak=False``): they are
module functions that live as long as the process anyway, and a weak reference would hide a
receiver that was accidentally a temporary object.

Receivers run inside the sender's transaction and get its ``session``: they do database work
only (queueing mail is fine) and never call Zoom or SMTP. A receiver that raises fails the
change it reacts to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blinker import ANY, NamedSignal, Namespace

__all__ = [
    "COURSE_EVENTS",
    "admit_columns",
    "connect",
    "course_cancelled",
    "declared",
    "family_class_panels",
    "family_for_request",
    "namespace",
    "passcode_rotated",
    "safety_changed",
    "schedule_changed",
    "zoom_event",
]

namespace = Namespace()

# --- courses: a course changed (sent by companion.courses.events.emit) --------------------------

schedule_changed = namespace.signal(
    "schedule_changed",
    doc="""Classes of a course were moved or cancelled, or the series changed.

    Sent by ``companion.courses.changes`` (move, cancel or change classes) with the Course as
    sender and ``session`` and ``classes`` (the ClassSessions affected). Heard by
    ``companion.families`` (connected in ``companion.families.init_app``): parents holding a
    link are mailed the new times.""",
)

course_cancelled = namespace.signal(
    "course_cancelled",
    doc="""A course was cancelled: no more classes, its Zoom meeting is deleted.

    Sent by ``companion.courses.changes.cancel_course`` with the Course as sender and
    ``session``. Heard by ``companion.families``: parents holding a link are told.""",
)

passcode_rotated = namespace.signal(
    "passcode_rotated",
    doc="""A course's meeting passcode was changed.

    Sent by ``companion.courses.changes.rotate_passcode`` with the Course as sender and
    ``session``. Heard by ``companion.families``: parents holding a link are told (the passcode
    itself is only on their family page).""",
)

safety_changed = namespace.signal(
    "safety_changed",
    doc="""A course's safety check came to another result.

    Sent by ``companion.courses.verification`` after each verification whose result differs from the
    last, with the Course as sender and ``session``, ``before`` and ``after`` (safety states:
    "safe", "not_safe", ...). Heard by ``companion.families``: when it becomes "safe", every
    family link that was waiting for it is sent.""",
)

# Every event companion.courses.events.emit may be asked to send, and its signal; None for an
# event no package reacts to yet (declare a signal above when one must, so that no signal here
# is without a receiver). An event not in this table is a mistake and fails loudly.
COURSE_EVENTS: dict[str, NamedSignal | None] = {
    "course_created": None,
    "schedule_changed": schedule_changed,
    "passcode_rotated": passcode_rotated,
    "course_cancelled": course_cancelled,
    "course_closed": None,
    "safety_changed": safety_changed,
}

# --- families: what other packages add to the families' pages ---------------------------------

admit_columns = namespace.signal(
    "admit_columns",
    doc="""Which columns other packages add to the teacher's admit list.

    Sent by ``companion.families.extensions.admit_columns()`` (for the admit list and its page)
    with no sender (None) and no arguments; each receiver returns one
    ``companion.families.extensions.AdmitColumn`` (its ``values(session, cls, families)`` gives
    ``{family_id: value}``). Heard by ``companion.evidence`` (the "Adult present" column).""",
)

family_class_panels = namespace.signal(
    "family_class_panels",
    doc="""Which panels other packages show in each class's row of the family page.

    Sent by ``companion.families.extensions.family_class_panels()`` (for the family page) with no
    sender (None) and no arguments; each receiver returns one
    ``companion.families.extensions.ClassPanel``. Heard by ``companion.evidence`` (the "an adult
    is in the room" panel).""",
)

# --- access: who the family of a request is -----------------------------------------------------

family_for_request = namespace.signal(
    "family_for_request",
    doc="""Who the family of this request is, for a route declared ``@family``.

    Sent by ``companion.access`` before each request to such a route, with the Flask app as
    sender and no arguments, inside the request. A receiver returns the request's
    ``FamilyPrincipal``, or None when the request carries no valid family session; the first
    answer that is not None is used, and none means the request is refused. Heard by
    ``companion.families`` (``family_views.load_family``, which reads the family cookie), so
    that access does not import the families package.""",
)

# --- webhooks: a stored Zoom event is due for processing ---------------------------------------

zoom_event = namespace.signal(
    "zoom_event",
    doc="""A stored, verified Zoom webhook event is handled (by the worker).

    Sent by ``companion.webhooks.services`` with the event's name as sender (e.g.
    ``"recording.completed"``) and ``session``, ``event`` (a ``webhooks.services.StoredEvent``:
    the stored row's ``id``, its name, key and parsed ``document``) and ``now``. Receivers are
    connected for the names they handle (``connect(zoom_event, handler, "meeting.started")``)
    and return "done", or "unhandled" for an event they cannot place (it is kept as it came and
    not retried); anything they raise makes the job retry the event. Heard by
    ``companion.recordings`` ("recording.completed": the recording is queued for ingest) and
    ``companion.evidence`` (meeting and participant events become attendance events). An event
    no receiver is connected for stays "unhandled".""",
)


def declared() -> dict[str, NamedSignal]:
    """Every signal declared here, by name (tests check each has a receiver)."""
    return {name: signal for name, signal in namespace.items()}


def connect(signal: NamedSignal, receiver: Callable[..., Any], *senders: Any) -> None:
    """Connect a module-level ``receiver`` to ``signal`` (for ``senders`` only, if given).

    Safe to call for every app built: see the module's docstring for why connecting again adds
    nothing.
    """
    if "<locals>" in getattr(receiver, "__qualname__", "<locals>"):
        # A closure is a new object per call of init_app: it would be delivered once per app.
        raise TypeError(f"connect a module-level function, not {receiver!r}")
    for sender in senders or (ANY,):
        signal.connect(receiver, sender=sender, weak=False)
