"""The courses tests' fake Zoom, with meeting registrants as Zoom keeps them.

Like Zoom (and the sandbox): a second registration of the same email answers with the first
registrant, ``auto_approve`` gives a unique ``...?tk=`` join link at once, and cancelling moves
a registrant to "denied".
"""

from __future__ import annotations

import copy
import secrets
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from companion.zoom import ZoomValidationError

from ..courses.fake_zoom import FakeZoom


class RegistrantZoom(FakeZoom):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.registrants: dict[int, list[dict[str, Any]]] = defaultdict(list)

    def registrant(self, meeting_id: int, registrant_id: str) -> dict[str, Any]:
        for reg in self.registrants[int(meeting_id)]:
            if reg["id"] == registrant_id:
                return reg
        raise ZoomValidationError("Invalid registrant", http_status=400, zoom_code=3000)

    def add_registrant(
        self, meeting_id: int, body: dict[str, Any], *, occurrence_ids: list[str] | None = None
    ) -> dict[str, Any]:
        self._enter("add_registrant", {"meeting_id": meeting_id, **body})
        meeting = self._meeting(meeting_id)
        if meeting["settings"].get("approval_type") not in (0, 1):
            raise ZoomValidationError(
                "Registration has not been enabled for this meeting", http_status=400
            )
        found = [
            r
            for r in self.registrants[int(meeting_id)]
            if r["email"].lower() == body["email"].lower()
        ]
        if found:
            reg = found[0]
        else:
            tk = secrets.token_urlsafe(16)
            reg = {
                "id": secrets.token_urlsafe(16)[:22],
                "email": body["email"],
                "first_name": body["first_name"],
                "last_name": body.get("last_name", ""),
                "status": "approved" if body.get("auto_approve") else "pending",
                "join_url": f"https://zoom.example/w/{meeting_id}?tk={tk}",
            }
            self.registrants[int(meeting_id)].append(reg)
        self._leave("add_registrant")
        answer = {"id": int(meeting_id), "registrant_id": reg["id"], "topic": meeting["topic"]}
        if reg["status"] == "approved":
            answer["join_url"] = reg["join_url"]
        return answer

    def iter_registrants(
        self, meeting_id: int, *, status: str = "approved", **_: Any
    ) -> Iterator[dict[str, Any]]:
        self._enter("iter_registrants", {"meeting_id": meeting_id, "status": status})
        self._meeting(meeting_id)
        found = [
            copy.deepcopy(r) for r in self.registrants[int(meeting_id)] if r["status"] == status
        ]
        self._leave("iter_registrants")
        yield from found

    def get_registrant(self, meeting_id: int, registrant_id: str) -> dict[str, Any]:
        self._enter("get_registrant", {"meeting_id": meeting_id, "id": registrant_id})
        self._meeting(meeting_id)
        reg = copy.deepcopy(self.registrant(meeting_id, registrant_id))
        self._leave("get_registrant")
        if reg["status"] != "approved":
            reg.pop("join_url", None)
        return reg

    def update_registrant_status(
        self,
        meeting_id: int,
        action: str,
        registrants: list[dict[str, Any]],
        *,
        occurrence_id: str | None = None,
    ) -> None:
        self._enter(
            "update_registrant_status",
            {"meeting_id": meeting_id, "action": action, "registrants": registrants},
        )
        self._meeting(meeting_id)
        for person in registrants:
            for reg in self.registrants[int(meeting_id)]:
                if reg["id"] == person.get("id") and (
                    action != "cancel" or reg["status"] == "approved"
                ):
                    reg["status"] = {"approve": "approved"}.get(action, "denied")
        self._leave("update_registrant_status")

    def approved(self, meeting_id: int) -> list[dict[str, Any]]:
        return [r for r in self.registrants[int(meeting_id)] if r["status"] == "approved"]
