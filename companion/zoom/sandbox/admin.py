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
        """Fail the next ``count`` requests whose path matches ``path`` (a glob).

        Spec keys: ``path`` (required), ``method``, ``count`` (default 1, -1 for always),
        ``status`` (e.g. 429, 500, 503; omit for a slow but successful answer), ``retry_after``
        (header value: seconds or an HTTP date), ``delay`` (seconds to wait first), ``body``
        (JSON to answer instead of Zoom's), ``truncate_after`` (file downloads: stop after so
        many bytes), ``html`` (answer 200 with Zoom's HTML error page).
        """
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise bad_request('A fault needs at least {"path": "/v2/meetings/*"}.')
        count = spec.get("count", 1)
        if not isinstance(count, int) or count == 0 or count < -1:
            raise bad_request("count must be a positive number, or -1 for every request.")
        status = spec.get("status")
        if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
            raise bad_request("status must be an HTTP error status (400-599).")
        delay = spec.get("delay", 0)
        if not isinstance(delay, int | float) or not 0 <= delay <= 120:
            raise bad_request("delay must be 0..120 seconds.")
        clean: dict[str, Any] = {
            k: spec[k]
            for k in (
                "path",
                "method",
                "status",
                "retry_after",
                "delay",
                "body",
                "truncate_after",
                "html",
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

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The first fault matching this request, consumed once (None if none applies)."""
        with self.store.transaction() as conn:
            for row in conn.execute("SELECT * FROM faults ORDER BY id").fetchall():
                spec = loads(row["spec"])
                if spec.get("method") and spec["method"] != method.upper():
                    continue
                if not fnmatch.fnmatchcase(path, spec["path"]):
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

    def count_call(self, method: str, route: str, status: int) -> None:
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
