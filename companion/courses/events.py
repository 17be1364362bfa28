"""Signals: other parts of companion react to course changes (see :mod:`companion.signals`).

The course services call :func:`emit` in their transaction; nothing here knows who listens.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .. import signals
from .models import Course


def emit(event: str, session: Session, course: Course, **details: Any) -> None:
    """Tell the packages that react to ``event`` (see companion.signals), in this transaction.

    Receivers are connected by create_app (each package's init_app), not by importing them, so
    the worker and commands tell parents exactly as a request does.
    """
    if event not in signals.COURSE_EVENTS:
        raise ValueError(f"unknown course event {event!r}")
    signal = signals.COURSE_EVENTS[event]
    if signal is not None:
        signal.send(course, session=session, **details)
