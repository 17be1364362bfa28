"""What other packages add to the families' pages: columns of the teacher's admit list and
panels in the class rows of the family page (each given by a receiver of a signal, see
:mod:`companion.signals`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from .. import signals
from ..courses.models import ClassSession
from .family_sessions import FamilyPrincipal
from .models import Family


@dataclass(frozen=True)
class AdmitColumn:
    key: str
    label: str
    # (session, class, families) -> {family_id: value shown in the column}
    values: Callable[[Session, ClassSession, list[Family]], dict[int, Any]]


def admit_columns() -> list[AdmitColumn]:
    """The columns other packages add to every admit list (e.g. "adult present" confirmations
    per class): each receiver of ``signals.admit_columns`` gives one, in the order of their keys.
    """
    return _by_key(signals.admit_columns)


def _by_key(signal: Any) -> list[Any]:
    # Receivers are called in no set order; the page's order must not change between requests.
    found = {item.key: item for _, item in signal.send(None) if item is not None}
    return [found[key] for key in sorted(found)]


@dataclass(frozen=True)
class ClassPanel:
    """Something another package shows (and lets a parent do) in a class's row of the family
    page, e.g. "an adult is in the room" for the class about to start.

    ``values(session, principal, classes, now)`` returns {class_id: value} for the classes the
    panel appears in; ``template`` is included there with ``row``, ``page`` and ``value`` (its
    forms post to the package's own @family routes, carrying ``family_csrf_token()``; such a
    route checks it with :func:`companion.families.family_views.check_form_token`).
    """

    key: str
    template: str
    values: Callable[[Session, FamilyPrincipal, list[ClassSession], dt.datetime], dict[int, Any]]


def family_class_panels() -> list[ClassPanel]:
    """The panels other packages show in each class's row of the family page: each receiver of
    ``signals.family_class_panels`` gives one, in the order of their keys."""
    return _by_key(signals.family_class_panels)
