"""What the sandbox does that Zoom does not: injected faults, settings changed by hand, counters.

These serve the ``/_sandbox`` admin endpoints (``app.py``) and the tests: a fault makes the next
matching requests fail (or answer slowly, or cut a download) the way Zoom does under load;
``tamper_settings`` changes a meeting as a person in Zoom's web portal would, so that companion's
verification has drift to find.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from .base import atomic, deep_merge
from .errors import bad_request
from .meetings import Meetings
from .store import dumps, loads


class Admin(Meetings):
    """Faults, tampering and call statistics (a part of :class:`~.core.Sandbox`)."""

    # --- faults ---------------------------------------------------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Fail the next ``count`` requests whose path matches ``path`` (a glob), or whose
        ``route`` is the given path template as Zoom's reference writes it
        (``/v2/meetings/{meetingId}``, the names :meth:`stats` counts by): a glob's ``*`` also
        matches ``/``, so only a route can tell a meeting from its registrants.

        Spec keys: ``path`` or ``route`` (one is required), ``method``, ``count`` (default 1, -1
        for always),
        ``status`` (e.g. 429, 500, 503; omit for a slow but successful answer), ``retry_after``
        (header value: seconds or an HTTP date), ``delay`` (seconds to wait first), ``body``
        (JSON to answer instead of Zoom's), ``truncate_after`` (file downloads: stop after so
        many bytes), ``html`` (answer 200 with Zoom's HTML error page), ``drop`` (close the
        connection without an answer), ``after`` (carry the request out first, then answer with
        ``status`` or ``drop``: the change is made and the answer lost on the way back).
        """
        if not isinstance(spec, dict) or not any(
            isinstance(spec.get(key), str) for key in ("path", "route")
        ):
            raise bad_request('A fault needs at least {"path": "/v2/meetings/*"} or a "route".')
        count = spec.get("count", 1)
        if not isinstance(count, int) or count == 0 or count < -1:
            raise bad_request("count must be a positive number, or -1 for every request.")
        status = spec.get("status")
        if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
            raise bad_request("status must be an HTTP error status (400-599).")
        delay = spec.get("delay", 0)
        if not isinstance(delay, int | float) or not 0 <= delay <= 120:
            raise bad_request("delay must be 0..120 seconds.")
        if spec.get("drop") and status is not None:
            raise bad_request("A fault either drops the connection or answers with a status.")
        if spec.get("after") and not (spec.get("drop") or status is not None):
            raise bad_request("An after fault needs a status or drop: what the answer became.")
        clean: dict[str, Any] = {
            k: spec[k]
            for k in (
                "path",
                "route",
                "method",
                "status",
                "retry_after",
                "delay",
                "body",
                "truncate_after",
                "html",
                "drop",
                "after",
            )
            if k in spec
        }
        if clean.get("method"):
            clean["method"] = str(clean["method"]).upper()
        cur = self.store.execute(
            "INSERT INTO faults (spec, remaining) VALUES (?, ?)", (dumps(clean), count)
        )
        return {"id": cur.lastrowid, "remaining": count, **clean}

    def faults(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM faults ORDER BY id")
        return [{"id": r["id"], "remaining": r["remaining"], **loads(r["spec"])} for r in rows]

    def clear_faults(self) -> None:
        self.store.execute("DELETE FROM faults")

    def take_fault(self, method: str, path: str, route: str = "") -> dict[str, Any] | None:
        """The first fault matching this request, consumed once (None if none applies).

        ``route`` is the request's path template in Zoom's notation (empty if none matched).
        """
        with self.store.transaction() as conn:
            for row in conn.execute("SELECT * FROM faults ORDER BY id").fetchall():
                spec = loads(row["spec"])
                if spec.get("method") and spec["method"] != method.upper():
                    continue
                if "route" in spec and spec["route"] != route:
                    continue
                if "path" in spec and not fnmatch.fnmatchcase(path, spec["path"]):
                    continue
                if row["remaining"] == 1:
                    conn.execute("DELETE FROM faults WHERE id = ?", (row["id"],))
                elif row["remaining"] > 1:
                    conn.execute(
                        "UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],)
                    )
                found: dict[str, Any] = spec
                return found
        return None

    # --- tampering ------------------------------------------------------------------------------

    @atomic
    def tamper_settings(self, meeting_id: int, settings: dict[str, Any]) -> dict[str, Any]:
        """Change a meeting's settings as a person in Zoom's web portal would: no API rules."""
        if not isinstance(settings, dict):
            raise bad_request("settings must be a JSON object.")
        doc = self._meeting(meeting_id)
        doc["settings"] = deep_merge(doc["settings"], settings)
        self._save_meeting(doc)
        return self._effective_settings(doc)

    # --- call statistics and reset --------------------------------------------------------------

    def count_call(self, method: str, route: str, status: int | str) -> None:
        """One request answered with ``status`` ("dropped": a fault sent no answer)."""
        self.store.bump(f"api|{method} {route}|{status}")

    def stats(self) -> dict[str, Any]:
        rows = self.store.query("SELECT key, value FROM counters WHERE key LIKE 'api|%'")
        calls: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for row in rows:
            _, route, status = row["key"].split("|")
            calls[route] = calls.get(route, 0) + row["value"]
            by_status[f"{route} {status}"] = row["value"]
        return {"total": sum(calls.values()), "calls": calls, "by_status": by_status}

    def reset_stats(self) -> None:
        self.store.execute("DELETE FROM counters WHERE key LIKE 'api|%'")

    def reset(self) -> None:
        self.store.reset()
