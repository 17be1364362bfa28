"""The families' domain errors; each carries the message a page or the API shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import CompanionError, ValidationError


class LinkInvalid(CompanionError):
    """No such link: mistyped, cut short or made up. Says nothing about any family."""

    code = "link_invalid"
    status = 404


class LinkGone(CompanionError):
    """The link existed but no longer works (replaced, revoked, or expired after the course)."""

    code = "link_gone"
    status = 410


class ImportRejected(ValidationError):
    """A CSV upload with problems; nothing was imported. ``lines`` lists every one."""

    code = "import_rejected"

    def __init__(self, message: str, problems: Sequence[Any]):
        # ``lines`` keeps the file's problems as they are (line, column, message) for the page;
        # ``problems`` says the same in the API's {"field", "message"} form.
        self.lines = list(problems)
        super().__init__(
            message,
            problems=[{"field": p.column or "file", "message": p.describe()} for p in self.lines],
        )
