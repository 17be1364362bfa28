"""An in-memory stand-in for the Zoom client, with just what the courses service calls.

It behaves like Zoom where the service depends on it: meeting ids are large integers, a type-8
meeting's occurrences are computed in the meeting's time zone, settings are echoed back, an
occurrence can be moved or deleted, agendas are cut to 250 characters in the meeting list. A
test can lock a setting (as an account admin would), or queue failures for an operation, raised
either before Zoom acts or after it acted (the answer was lost on the way back).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from companion.zoom import ZoomNotFound, ZoomValidationError

DEFAULT_SETTINGS: dict[str, Any] = {
    "host_video": False,
    "participant_video": False,
    "join_before_host": False,
    "jbh_time": 0,
    "mute_upon_entry": False,
    "approval_type": 2,
    "registration_type": 1,
    "auto_recording": "none",
    "waiting_room": False,
    "waiting_room_options": {"mode": "follow_setting"},
    "alternative_hosts": "",
    "encryption_type": "enhanced_encryption",
    "use_pmi": False,
    "show_share_button": True,
    "allow_multiple_devices": True,
    "registrants_email_notification": True,
    "registrants_confirmation_email": True,
}


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _set_path(settings: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = settings
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _utc_text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeZoom:
    def __init__(self, *, now: Callable[[], dt.datetime] | None = None):
        self.meetings: dict[int, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, Any]] = []
        # Settings Zoom forces whatever we send, as an account lock does: path -> value.
        self.locks: dict[str, Any] = {}
        self._before: dict[str, list[Exception]] = defaultdict(list)
        self._after: dict[str, list[Exception]] = defaultdict(list)
        self._ids = itertools.count(81234567890)
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    # --- test controls -----------------------------------------------------------------------

    def fail(self, operation: str, exc: Exception, *, times: int = 1, after: bool = False) -> None:
        """Raise ``exc`` on the next ``times`` calls of ``operation``; with ``after`` Zoom acts
        first and the answer is lost (a timeout after the meeting was made)."""
        (self._after if after else self._before)[operation].extend([exc] * times)

    def drift(self, meeting_id: int, **settings: Any) -> None:
        """Someone changed the meeting in Zoom's web portal."""
        for path, value in settings.items():
            _set_path(self.meetings[meeting_id]["settings"], path.replace("__", "."), value)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def _enter(self, operation: str, detail: Any = None) -> None:
        self.calls[operation] += 1
        self.requests.append((operation, copy.deepcopy(detail)))
        if self._before[operation]:
            raise self._before[operation].pop(0)

    def _leave(self, operation: str) -> None:
        if self._after[operation]:
            raise self._after[operation].pop(0)

    def _meeting(self, meeting_id: int) -> dict[str, Any]:
        meeting = self.meetings.get(int(meeting_id))
        if meeting is None:
            raise ZoomNotFound(
                f"Meeting does not exist: {meeting_id}.", http_status=404, zoom_code=3001
            )
        return meeting

    def _apply_locks(self, meeting: dict[str, Any]) -> None:
        for path, value in self.locks.items():
            if path == "password":
                meeting["password"] = value
            else:
                _set_path(meeting["settings"], path, value)

    # --- occurrences ---------------------------------------------------------------------------

    def _occurrences(self, meeting: dict[str, Any]) -> list[dict[str, Any]]:
        tz = zoneinfo.ZoneInfo(meeting["timezone"])
        text = meeting["start_time"]
        if text.endswith("Z"):
            first = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(tz)
        else:
            first = dt.datetime.fromisoformat(text).replace(tzinfo=tz)
        rec = meeting["recurrence"]
        if rec.get("type") != 2:
            raise ZoomValidationError("Only weekly recurrence is faked.", http_status=400)
        days = {int(d) for d in str(rec["weekly_days"]).split(",")}
        count = int(rec.get("end_times") or 0)
        until = rec.get("end_date_time")
        found = []
        day = first.date()
        while len(found) < 60:
            if count and len(found) >= count:
                break
            local = dt.datetime.combine(day, first.time()).replace(tzinfo=tz)
            if until and local.astimezone(dt.UTC) > dt.datetime.fromisoformat(
                until.replace("Z", "+00:00")
            ):
                break
            if day.isoweekday() % 7 + 1 in days:
                found.append(
                    {
                        "occurrence_id": str(int(local.astimezone(dt.UTC).timestamp() * 1000)),
                        "start_time": _utc_text(local),
                        "duration": meeting["duration"],
                        "status": "available",
                    }
                )
            day += dt.timedelta(days=1)
        return found

    def _public(self, meeting: dict[str, Any], *, previous: bool = False) -> dict[str, Any]:
        data = copy.deepcopy(meeting)
        now = self.now()
        if not previous:
            data["occurrences"] = [
                o
                for o in data["occurrences"]
                if dt.datetime.fromisoformat(o["start_time"].replace("Z", "+00:00")) > now
            ]
        data["start_url"] = f"https://zoom.example/s/{meeting['id']}?zak=host-secret"
        return data

    # --- the client's interface ----------------------------------------------------------------

    def create_meeting(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._enter("create_meeting", body)
        for field in ("start_time", "timezone", "duration", "recurrence"):
            if field not in body:
                raise ZoomValidationError(f"{field} is required", http_status=400, zoom_code=300)
        if not 1 <= int(body["duration"]) <= 1440:
            raise ZoomValidationError("Invalid duration", http_status=400, zoom_code=300)
        if len(body.get("password", "")) > 10:
            raise ZoomValidationError("Invalid password", http_status=400, zoom_code=300)
        meeting_id = next(self._ids)
        settings = copy.deepcopy(DEFAULT_SETTINGS)
        _merge(settings, body.get("settings") or {})
        meeting = {
            "id": meeting_id,
            "uuid": f"uuid-{meeting_id}==",
            "host_id": user_id,
            "topic": body.get("topic", ""),
            "agenda": body.get("agenda", ""),
            "type": body.get("type", 2),
            "start_time": body["start_time"],
            "timezone": body["timezone"],
            "duration": body["duration"],
            "password": body.get("password", ""),
            "recurrence": copy.deepcopy(body["recurrence"]),
            "settings": settings,
            "join_url": f"https://zoom.example/j/{meeting_id}",
            "registration_url": f"https://zoom.example/meeting/register/{meeting_id}",
        }
        meeting["occurrences"] = self._occurrences(meeting)
        self._apply_locks(meeting)
        self.meetings[meeting_id] = meeting
        self._leave("create_meeting")
        return self._public(meeting, previous=True)

    def get_meeting(
        self,
        meeting_id: int,
        *,
        occurrence_id: str | None = None,
        show_previous_occurrences: bool = False,
    ) -> dict[str, Any]:
        self._enter("get_meeting", meeting_id)
        meeting = self._meeting(meeting_id)
        self._leave("get_meeting")
        return self._public(meeting, previous=show_previous_occurrences)

    def update_meeting(
        self, meeting_id: int, body: dict[str, Any], *, occurrence_id: str | None = None
    ) -> None:
        self._enter("update_meeting", {"id": meeting_id, "occurrence_id": occurrence_id, **body})
        meeting = self._meeting(meeting_id)
        if occurrence_id is not None:
            occ = next(
                (o for o in meeting["occurrences"] if o["occurrence_id"] == occurrence_id), None
            )
            if occ is None or occ["status"] == "deleted":
                raise ZoomNotFound("Invalid occurrence_id", http_status=404, zoom_code=3001)
            if "start_time" in body:
                start = dt.datetime.fromisoformat(body["start_time"].replace("Z", "+00:00"))
                if start <= self.now():
                    raise ZoomValidationError(
                        "start_time must be in the future", http_status=400, zoom_code=300
                    )
                occ["start_time"] = _utc_text(start)
            if "duration" in body:
                occ["duration"] = body["duration"]
            self._leave("update_meeting")
            return None
        for field in ("topic", "agenda", "password", "duration", "timezone", "start_time"):
            if field in body:
                meeting[field] = body[field]
        if "settings" in body:
            _merge(meeting["settings"], body["settings"])
        if "recurrence" in body:
            meeting["recurrence"] = copy.deepcopy(body["recurrence"])
            meeting["occurrences"] = self._occurrences(meeting)
        self._apply_locks(meeting)
        self._leave("update_meeting")
        return None

    def delete_meeting(
        self,
        meeting_id: int,
        *,
        occurrence_id: str | None = None,
        schedule_for_reminder: bool = False,
        cancel_meeting_reminder: bool = False,
    ) -> None:
        self._enter("delete_meeting", {"id": meeting_id, "occurrence_id": occurrence_id})
        meeting = self._meeting(meeting_id)
        if occurrence_id is None:
            del self.meetings[int(meeting_id)]
        else:
            for occ in meeting["occurrences"]:
                if occ["occurrence_id"] == occurrence_id:
                    occ["status"] = "deleted"
                    break
            else:
                raise ZoomNotFound("Invalid occurrence_id", http_status=404, zoom_code=3001)
        self._leave("delete_meeting")
        return None

    def update_meeting_status(self, meeting_id: int, action: str) -> None:
        self._enter("update_meeting_status", {"id": meeting_id, "action": action})
        self._meeting(meeting_id)
        self._leave("update_meeting_status")

    def iter_meetings(self, user_id: str, *, type: str = "scheduled") -> Iterator[dict[str, Any]]:
        self._enter("iter_meetings", user_id)
        found = [
            {
                "id": m["id"],
                "uuid": m["uuid"],
                "topic": m["topic"],
                "type": m["type"],
                "agenda": m["agenda"][:250],
                "start_time": m["start_time"],
                "timezone": m["timezone"],
                "duration": m["duration"],
                "join_url": m["join_url"],
            }
            for m in self.meetings.values()
            if m["host_id"] == user_id
        ]
        self._leave("iter_meetings")
        yield from found
