"""What a Zoom failure means to the rest of companion: the domain errors the views turn into
responses, and which of the client's errors pass on their own.

The client's errors (:mod:`.errors`) are transport errors that carry Zoom's answer; a service
that calls Zoom (through the work engine) turns them into these, which carry only what a person
may read and become HTTP at one edge (:mod:`companion.errors`).
"""

from __future__ import annotations

from typing import Any

from ..errors import CompanionError, ExternalServiceError
from .errors import ZoomAuthError, ZoomConnectionError, ZoomRateLimited, ZoomServerError

# Zoom failures worth trying again without a person changing anything. An auth failure is a
# configuration problem an admin fixes; the course waits for that rather than failing.
TRANSIENT = (ZoomConnectionError, ZoomServerError, ZoomRateLimited, ZoomAuthError)


class ZoomUnavailable(ExternalServiceError):
    """Zoom did not answer (or is rate limiting); nothing was changed, or the work was kept."""

    code = "zoom_unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after


class ZoomRefused(CompanionError):
    """Zoom answered and refused; a person has to change something."""

    code = "zoom_refused"
    status = 502
