"""The sandbox's state: one object composed of a part per Zoom resource, over one store.

Everything here is plain Python (no Flask), so tests and the simulation can drive it directly;
``app.py`` and ``routes/`` only map HTTP requests onto these methods. Errors are
:class:`ZoomApiError` with Zoom's status, code and message.

:class:`Sandbox` is the one object the app, the simulation, the CLI and the tests use. Its
methods come from one mixin per Zoom resource, each in its own module over the shared
:class:`~.base.SandboxBase` (the package docstring lists them). A mixin that needs another
resource inherits it (registrants need meetings, so ``Registrants`` extends ``Meetings``), so
each module reads on its own; this module composes them and adds the simulation entry point and
the whole-state view.
"""

from __future__ import annotations

from typing import Any

from . import schedule
from .account import HOST_EMAIL, HOST_USER_ID, Account
from .admin import Admin
from .base import SandboxBase
from .meetings import Meetings
from .recordings import Recordings
from .registrants import Registrants
from .store import loads
from .tokens import Tokens

__all__ = ["HOST_EMAIL", "HOST_USER_ID", "Sandbox"]


class Sandbox(Admin, Recordings, Registrants, Meetings, Account, Tokens, SandboxBase):
    """One sandbox account with one host user, its meetings, registrants and recordings."""

    # --- simulation ------------------------------------------------------------------------------

    def simulate_class(
        self,
        meeting_id: Any,
        occurrence_id: str | None = None,
        participants: list[Any] | None = None,
        teacher: str = "Teacher",
        **options: Any,
    ) -> dict[str, Any]:
        """Run a class and queue its webhooks; see :func:`simulate.simulate_class`."""
        from .simulate import simulate_class

        return simulate_class(self, meeting_id, occurrence_id, participants, teacher, **options)

    # --- state for humans and tests ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        meetings = []
        for row in self.store.query("SELECT doc, deleted_at FROM meetings ORDER BY created_at"):
            doc = loads(row["doc"])
            meetings.append(
                {
                    "id": doc["id"],
                    "topic": doc["topic"],
                    "type": doc["type"],
                    "timezone": doc["timezone"],
                    "start_time": doc["start_time"],
                    "status": doc.get("status"),
                    "deleted": row["deleted_at"] is not None,
                    "occurrences": len(doc.get("occurrences") or []),
                    "settings": self._effective_settings(doc),
                    "registrants": {
                        r["status"]: r["n"]
                        for r in self.store.query(
                            "SELECT status, count(*) AS n FROM registrants WHERE meeting_id = ? "
                            "GROUP BY status",
                            (doc["id"],),
                        )
                    },
                }
            )
        instances = [
            {k: v for k, v in loads(r["doc"]).items() if k != "share_token"}
            for r in self.store.query("SELECT doc FROM instances ORDER BY started_at")
        ]
        files = [
            {**self.public_file(loads(r["doc"])), "status": r["status"]}
            for r in self.store.query("SELECT doc, status FROM recording_files ORDER BY rowid")
        ]
        deliveries = [
            {
                "id": r["id"],
                "event": r["event"],
                "state": r["state"],
                "attempts": r["attempts"],
                "next_attempt_at": r["next_attempt_at"],
                "last_status": r["last_status"],
                "last_error": r["last_error"],
            }
            for r in self.store.query("SELECT * FROM deliveries ORDER BY id DESC LIMIT 200")
        ]
        return {
            "sandbox": True,
            "account_id": self.account_id,
            "host": {"id": HOST_USER_ID, "email": HOST_EMAIL},
            "public_url": self.public_url,
            "webhook_url": self.webhook_url,
            "now": schedule.zoom_time(self.now_dt()),
            "locks": self.locks(),
            "faults": self.faults(),
            "meetings": meetings,
            "instances": instances,
            "recording_files": files,
            "deliveries": deliveries,
            "stats": self.stats(),
        }
