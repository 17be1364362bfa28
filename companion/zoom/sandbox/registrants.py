"""Meeting registrants: add, list, get, approve / cancel / deny, delete.

Models Zoom's Meetings API operations ``meetingRegistrantCreate``, ``meetingRegistrants``,
``meetingRegistrantGet``, ``meetingRegistrantStatus`` and ``meetingregistrantdelete`` as Zoom's
Meetings spec (``tests/zoom_spec``) documents them, with Zoom's daily limit of registrations of
one email and each registrant's own join link.
"""

from __future__ import annotations

import secrets
from typing import Any

from . import schedule, validation
from .base import atomic, decode_page, encode_page, new_token, page_size_of
from .errors import ZoomApiError, bad_request, validation_failed
from .meetings import Meetings
from .store import dumps, loads

MAX_REGISTRANTS = 4999
REGISTRANT_DAILY_LIMIT = 3


class Registrants(Meetings):
    """The registrants of the account's meetings (a part of :class:`~.core.Sandbox`)."""

    def _registration_open(self, doc: dict[str, Any]) -> dict[str, Any]:
        settings = self._effective_settings(doc)
        if settings.get("approval_type") not in (0, 1):
            raise bad_request(f"Registration has not been enabled for this meeting: {doc['id']}.")
        return settings

    def _registrant_join_url(self, doc: dict[str, Any], tk: str) -> str:
        return f"{self.public_url}/w/{doc['id']}?tk={tk}"

    @atomic
    def add_registrant(
        self, meeting_id: Any, body: Any, *, occurrence_ids: str | None = None
    ) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        settings = self._registration_open(doc)
        validation.check_registrant(body)
        email = body["email"].strip()
        chosen: list[str] = []
        if occurrence_ids:
            for occ_id in occurrence_ids.split(","):
                self._occurrence(doc, occ_id.strip())
                chosen.append(occ_id.strip())
        day = self.now_dt().date().isoformat()
        if self.store.bump(f"reg|{doc['id']}|{email.lower()}|{day}") > REGISTRANT_DAILY_LIMIT:
            raise ZoomApiError(
                429,
                429,
                f"You have exceeded the daily rate limit ({REGISTRANT_DAILY_LIMIT}) of Add "
                f"Meeting Registrant API requests for the registrant ({email}). You can resume "
                "these requests at GMT 00:00:00.",
                headers={"X-RateLimit-Type": "Daily-limit", "X-RateLimit-Category": "Light"},
            )
        existing = self.store.one(
            "SELECT doc FROM registrants WHERE meeting_id = ? AND lower(email) = lower(?)",
            (doc["id"], email),
        )
        if existing is not None:
            # Zoom answers a second registration of the same email with the same registrant.
            reg = loads(existing["doc"])
        else:
            count = self.store.query(
                "SELECT count(*) AS n FROM registrants WHERE meeting_id = ?", (doc["id"],)
            )[0]["n"]
            if count >= MAX_REGISTRANTS:
                raise bad_request("Meeting has reached maximum attendee capacity.", code=3043)
            approved = settings["approval_type"] == 0 or bool(body.get("auto_approve"))
            tk = new_token(32)
            reg = {
                key: body[key]
                for key in (
                    "first_name",
                    "last_name",
                    "address",
                    "city",
                    "state",
                    "zip",
                    "country",
                    "phone",
                    "comments",
                    "industry",
                    "job_title",
                    "no_of_employees",
                    "org",
                    "purchasing_time_frame",
                    "role_in_purchase_process",
                    "language",
                )
                if body.get(key) is not None
            }
            reg.update(
                {
                    "id": new_token(16)[:22],
                    "email": email,
                    "status": "approved" if approved else "pending",
                    "create_time": schedule.zoom_time(self.now_dt()),
                    "custom_questions": body.get("custom_questions") or [],
                    "participant_pin_code": secrets.SystemRandom().randint(100000, 999999),
                    "tk": tk,
                    "occurrence_ids": chosen,
                }
            )
            self.store.execute(
                "INSERT INTO registrants (id, meeting_id, email, status, tk, doc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (reg["id"], doc["id"], email, reg["status"], tk, dumps(reg)),
            )
        response: dict[str, Any] = {
            "id": doc["id"],
            "registrant_id": reg["id"],
            "topic": doc["topic"],
            "start_time": self.meeting_response(doc)["start_time"],
            "participant_pin_code": reg["participant_pin_code"],
        }
        if reg["status"] == "approved":
            response["join_url"] = self._registrant_join_url(doc, reg["tk"])
        if doc["type"] == 8:
            wanted = set(reg.get("occurrence_ids") or [])
            response["occurrences"] = [
                {k: o[k] for k in ("occurrence_id", "start_time", "duration", "status")}
                for o in doc["occurrences"]
                if not wanted or o["occurrence_id"] in wanted
            ]
        return response

    def _registrant_view(self, doc: dict[str, Any], reg: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in reg.items() if k not in ("tk", "occurrence_ids", "cancelled")}
        if reg["status"] == "approved":
            view["join_url"] = self._registrant_join_url(doc, reg["tk"])
        return view

    def list_registrants(
        self,
        meeting_id: Any,
        *,
        status: str | None,
        page_size: str | None,
        next_page_token: str | None,
        occurrence_id: str | None = None,
    ) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        status = status or "approved"
        if status not in ("pending", "approved", "denied"):
            raise validation_failed([("status", "Invalid field: pending, approved or denied.")])
        self._registration_open(doc)
        if occurrence_id:
            self._occurrence(doc, occurrence_id)
        size = page_size_of(page_size)
        offset = decode_page(next_page_token, f"registrants:{doc['id']}:{status}")
        regs = [
            loads(r["doc"])
            for r in self.store.query(
                "SELECT doc FROM registrants WHERE meeting_id = ? AND status = ? ORDER BY seq",
                (doc["id"], status),
            )
        ]
        if occurrence_id:
            regs = [
                r for r in regs if not r["occurrence_ids"] or occurrence_id in r["occurrence_ids"]
            ]
        page = regs[offset : offset + size]
        following = offset + size
        total_pages = max(1, -(-len(regs) // size))
        return {
            "page_count": total_pages,
            "page_number": offset // size + 1,
            "page_size": size,
            "total_records": len(regs),
            "next_page_token": encode_page(following, f"registrants:{doc['id']}:{status}")
            if following < len(regs)
            else "",
            "registrants": [self._registrant_view(doc, r) for r in page],
        }

    def _registrant(self, doc: dict[str, Any], registrant_id: str) -> dict[str, Any]:
        row = self.store.one(
            "SELECT doc FROM registrants WHERE meeting_id = ? AND id = ?",
            (doc["id"], registrant_id),
        )
        if row is None:
            raise bad_request(
                "The value that you entered for the Registrant ID field is invalid. "
                "Enter a valid value and try again."
            )
        registrant: dict[str, Any] = loads(row["doc"])
        return registrant

    def get_registrant(self, meeting_id: Any, registrant_id: str) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        return self._registrant_view(doc, self._registrant(doc, registrant_id))

    @atomic
    def registrant_status(
        self, meeting_id: Any, body: Any, *, occurrence_id: str | None = None
    ) -> None:
        doc = self._meeting(meeting_id)
        self._registration_open(doc)
        if occurrence_id:
            self._occurrence(doc, occurrence_id)
        if not isinstance(body, dict):
            raise bad_request("Request Body should be a valid JSON object.")
        action = body.get("action")
        people = body.get("registrants") or []
        errors = []
        if action not in ("approve", "cancel", "deny"):
            errors.append(("action", "Invalid field: approve, cancel or deny."))
        if not isinstance(people, list) or not all(isinstance(p, dict) for p in people):
            errors.append(("registrants", "Invalid field: an array of {id, email}."))
        elif len(people) > 30:
            errors.append(("registrants", "Invalid field: at most 30 registrants at a time."))
        if errors:
            raise validation_failed(errors)
        new_status = {"approve": "approved", "cancel": "denied", "deny": "denied"}[str(action)]
        with self.store.transaction() as conn:
            for person in people:
                if person.get("id"):
                    row = conn.execute(
                        "SELECT doc FROM registrants WHERE meeting_id = ? AND id = ?",
                        (doc["id"], person["id"]),
                    ).fetchone()
                else:
                    row = conn.execute(
                        "SELECT doc FROM registrants WHERE meeting_id = ? "
                        "AND lower(email) = lower(?)",
                        (doc["id"], person.get("email") or ""),
                    ).fetchone()
                if row is None:
                    continue  # Zoom skips people it does not know
                reg = loads(row["doc"])
                if action == "cancel" and reg["status"] != "approved":
                    continue
                reg["status"] = new_status
                conn.execute(
                    "UPDATE registrants SET status = ?, doc = ? WHERE id = ?",
                    (new_status, dumps(reg), reg["id"]),
                )

    @atomic
    def delete_registrant(
        self, meeting_id: Any, registrant_id: str, *, occurrence_id: str | None = None
    ) -> None:
        doc = self._meeting(meeting_id)
        self._registration_open(doc)
        self._registrant(doc, registrant_id)
        self.store.execute(
            "DELETE FROM registrants WHERE meeting_id = ? AND id = ?", (doc["id"], registrant_id)
        )

    def registrant_by_token(self, meeting_id: int, tk: str) -> dict[str, Any] | None:
        row = self.store.one(
            "SELECT doc FROM registrants WHERE meeting_id = ? AND tk = ?", (meeting_id, tk)
        )
        return None if row is None else loads(row["doc"])

    def registrants_of(self, meeting_id: int, status: str = "approved") -> list[dict[str, Any]]:
        return [
            loads(r["doc"])
            for r in self.store.query(
                "SELECT doc FROM registrants WHERE meeting_id = ? AND status = ? ORDER BY seq",
                (meeting_id, status),
            )
        ]
