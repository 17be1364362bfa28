"""Meetings and their occurrences: create, get, list, update, delete, end and recover.

Models Zoom's Meetings API operations ``meetingCreate``, ``meetings`` (list), ``meeting``,
``meetingUpdate`` (with ``occurrence_id``: one class of a series), ``meetingDelete`` and
``meetingStatus`` as Zoom's Meetings spec (``tests/zoom_spec``) documents them. Occurrences are
computed in ``schedule.py``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import secrets
from typing import Any

from . import schedule, validation
from .account import DEFAULT_SETTINGS, HOST_EMAIL, HOST_TIMEZONE, HOST_USER_ID, Account
from .base import (
    UTC,
    atomic,
    decode_page,
    deep_merge,
    encode_page,
    new_token,
    page_size_of,
    zoom_uuid,
)
from .errors import bad_request, meeting_not_found, validation_failed
from .store import dumps, loads
from .tokens import Tokens

START_URL_TTL = 2 * 3600  # "The start_url value's expiration time is two hours"
RECOVER_WINDOW = 7 * 24 * 3600  # deleted meetings can be recovered for 7 days


class Meetings(Account, Tokens):
    """Zoom's meetings of the sandbox account (a part of :class:`~.core.Sandbox`)."""

    # --- meetings: storage ---------------------------------------------------------------------

    def _meeting(self, meeting_id: Any, *, include_deleted: bool = False) -> dict[str, Any]:
        try:
            key = int(str(meeting_id))
        except ValueError:
            raise meeting_not_found(meeting_id) from None
        row = self.store.one("SELECT doc, deleted_at FROM meetings WHERE id = ?", (key,))
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise meeting_not_found(meeting_id)
        doc: dict[str, Any] = loads(row["doc"])
        doc["_deleted_at"] = row["deleted_at"]
        return doc

    def _save_meeting(self, doc: dict[str, Any]) -> None:
        clean = {k: v for k, v in doc.items() if not k.startswith("_")}
        self.store.execute(
            "UPDATE meetings SET doc = ? WHERE id = ?", (dumps(clean), int(clean["id"]))
        )

    def meeting_doc(self, meeting_id: Any) -> dict[str, Any]:
        """The stored meeting (for the simulation and admin views)."""
        return self._meeting(meeting_id)

    def _new_meeting_id(self) -> int:
        rng = secrets.SystemRandom()
        while True:
            candidate = rng.randint(10**10, 10**11 - 1)
            if self.store.one("SELECT 1 FROM meetings WHERE id = ?", (candidate,)) is None:
                return candidate

    def effective_settings(self, meeting_id: Any) -> dict[str, Any]:
        return self._effective_settings(self._meeting(meeting_id))

    # --- meetings: API --------------------------------------------------------------------------

    def _schedule(self, doc: dict[str, Any], start_text: str | None) -> None:
        """(Re)compute start_time and occurrences of ``doc`` from its fields."""
        tz = schedule.zone(doc["timezone"])
        if start_text:
            start = schedule.parse_start(start_text, tz)
        elif doc.get("start_local"):
            start = dt.datetime.fromisoformat(doc["start_local"]).replace(tzinfo=tz)
        else:
            start = self.now_dt().replace(second=0).astimezone(tz)
        doc["start_local"] = start.replace(tzinfo=None).isoformat()
        if doc["type"] == 8:
            recurrence = doc.get("recurrence")
            if not recurrence:
                raise validation_failed(
                    [("recurrence", "Required for a recurring meeting with a fixed time.")]
                )
            previous = {o["occurrence_id"]: o for o in doc.get("occurrences") or []}
            computed = schedule.occurrences(start, doc["duration"], recurrence, tz)
            doc["occurrences"] = [
                {
                    "occurrence_id": o.occurrence_id,
                    "start_time": schedule.zoom_time(o.start),
                    "duration": o.duration,
                    # A cancelled class stays cancelled when the series is edited.
                    "status": previous.get(o.occurrence_id, {}).get("status", "available"),
                }
                for o in computed
            ]
            doc["start_time"] = doc["occurrences"][0]["start_time"]
        else:
            doc["occurrences"] = []
            doc["recurrence"] = None
            doc["start_time"] = schedule.zoom_time(start)

    @atomic
    def create_meeting(self, user_id: str, body: Any) -> dict[str, Any]:
        self.check_user(user_id)
        errors = validation.check_meeting(body, creating=True)
        if errors:
            raise validation_failed(errors)
        kind = body.get("type", 2)
        now = self.now_dt()
        password = body.get("password")
        if not password and body.get("default_password", True):
            password = "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(6))
        settings = deep_merge(DEFAULT_SETTINGS, body.get("settings") or {})
        if kind == 8:
            settings.setdefault("registration_type", 1)
        doc: dict[str, Any] = {
            "id": self._new_meeting_id(),
            "uuid": zoom_uuid(),
            "host_id": HOST_USER_ID,
            "host_email": HOST_EMAIL,
            "topic": body.get("topic", "Zoom Meeting"),
            "type": kind,
            "timezone": body.get("timezone") or HOST_TIMEZONE,
            "duration": body.get("duration", 60),
            "agenda": body.get("agenda", ""),
            "created_at": schedule.zoom_time(now),
            "password": password or "",
            "recurrence": copy.deepcopy(body.get("recurrence")) if kind == 8 else None,
            "settings": self._apply_rules(settings),
            "registration_token": new_token(16),
            "pre_schedule": False,
            "status": "waiting",
            "live_instance": None,
            "seq": self.store.bump("meeting_seq"),
        }
        try:
            self._schedule(doc, body.get("start_time"))
        except schedule.ScheduleError as exc:
            raise validation_failed([(exc.field, exc.message)]) from None
        secret = hashlib.sha256(f"{doc['id']}:{doc['password']}".encode()).digest()
        doc["encrypted_password"] = base64.urlsafe_b64encode(secret).decode().rstrip("=")[:32]
        digits = str(int.from_bytes(secret[:8], "big"))
        doc["h323_password"] = digits[:6] if doc["password"] else ""
        doc["pstn_password"] = digits[:6] if doc["password"] else ""
        self.store.execute(
            "INSERT INTO meetings (id, doc, created_at) VALUES (?, ?, ?)",
            (doc["id"], dumps(doc), self.now()),
        )
        return self.meeting_response(doc, created=True)

    def _join_url(self, doc: dict[str, Any]) -> str:
        url = f"{self.public_url}/j/{doc['id']}"
        return f"{url}?pwd={doc['encrypted_password']}" if doc["password"] else url

    def meeting_response(
        self,
        doc: dict[str, Any],
        *,
        created: bool = False,
        occurrence_id: str | None = None,
        show_previous: bool = False,
    ) -> dict[str, Any]:
        occurrence = None
        if occurrence_id:
            occurrence = self._occurrence(doc, occurrence_id)
        settings = self._effective_settings(doc, occurrence)
        body: dict[str, Any] = {
            "uuid": doc["uuid"],
            "id": doc["id"],
            "host_id": doc["host_id"],
            "host_email": doc["host_email"],
            "topic": doc["topic"],
            "type": doc["type"],
            "status": doc.get("status", "waiting"),
            "start_time": doc["start_time"],
            "duration": doc["duration"],
            "timezone": doc["timezone"],
            "agenda": doc.get("agenda", ""),
            "created_at": doc["created_at"],
            "start_url": self._start_url(doc),
            "join_url": self._join_url(doc),
            "password": doc["password"],
            "h323_password": doc["h323_password"],
            "pstn_password": doc["pstn_password"],
            "encrypted_password": doc["encrypted_password"],
            "settings": settings,
            "pre_schedule": False,
            "creation_source": "open_api",
        }
        if doc["type"] == 8:
            now = self.now_dt()
            listed = []
            for occ in doc["occurrences"]:
                begins = schedule.parse_utc(occ["start_time"], "start_time")
                over = begins + dt.timedelta(minutes=occ["duration"]) < now
                if created or show_previous or not over or occ["occurrence_id"] == occurrence_id:
                    listed.append(
                        {k: occ[k] for k in ("occurrence_id", "start_time", "duration")}
                        | {"status": occ["status"]}
                    )
            body["occurrences"] = listed
            body["recurrence"] = copy.deepcopy(doc["recurrence"])
            upcoming = [o for o in listed if o["status"] == "available"]
            if occurrence is not None:
                body["start_time"] = occurrence["start_time"]
                body["duration"] = occurrence["duration"]
            elif upcoming:
                body["start_time"] = upcoming[0]["start_time"]
        if created:
            if settings.get("approval_type") in (0, 1):
                body["registration_url"] = (
                    f"{self.public_url}/meeting/register/{doc['registration_token']}"
                )
            # Zoom's spec documents no uuid, host_id or status in the create answer: leaving
            # them out keeps companion from depending on fields the contract does not promise.
            for key in ("uuid", "host_id", "status"):
                body.pop(key)
        return body

    def _start_url(self, doc: dict[str, Any]) -> str:
        zak = self._issue("zak", START_URL_TTL, str(doc["id"]))
        return f"{self.public_url}/s/{doc['id']}?zak={zak}"

    def _occurrence(self, doc: dict[str, Any], occurrence_id: str) -> dict[str, Any]:
        for occ in doc.get("occurrences") or []:
            if occ["occurrence_id"] == str(occurrence_id):
                found: dict[str, Any] = occ
                return found
        raise bad_request("Invalid parameter: occurrence_id.")

    def get_meeting(
        self, meeting_id: Any, *, occurrence_id: str | None = None, show_previous: bool = False
    ) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        return self.meeting_response(
            doc, occurrence_id=occurrence_id or None, show_previous=show_previous
        )

    @atomic
    def update_meeting(
        self, meeting_id: Any, body: Any, *, occurrence_id: str | None = None
    ) -> None:
        doc = self._meeting(meeting_id)
        if occurrence_id:
            self._update_occurrence(doc, str(occurrence_id), body)
            return
        errors = validation.check_meeting(body, creating=False)
        if errors:
            raise validation_failed(errors)
        new_type = body.get("type", doc["type"])
        reschedule = any(k in body for k in ("start_time", "timezone", "recurrence", "type"))
        reschedule = reschedule or ("duration" in body and new_type == 8)
        for key in ("topic", "agenda", "duration", "password"):
            if key in body:
                doc[key] = body[key]
        if "password" in body:
            secret = hashlib.sha256(f"{doc['id']}:{doc['password']}".encode()).digest()
            doc["encrypted_password"] = base64.urlsafe_b64encode(secret).decode().rstrip("=")[:32]
            digits = str(int.from_bytes(secret[:8], "big"))
            doc["h323_password"] = doc["pstn_password"] = digits[:6] if doc["password"] else ""
        if "settings" in body:
            doc["settings"] = self._apply_rules(deep_merge(doc["settings"], body["settings"]))
        if reschedule:
            previous_local = doc.get("start_local")
            doc["type"] = new_type
            if "timezone" in body:
                doc["timezone"] = body["timezone"]
            if "recurrence" in body and new_type == 8:
                doc["recurrence"] = copy.deepcopy(body["recurrence"])
            if new_type == 8:
                doc["settings"].setdefault("registration_type", 1)
            try:
                self._schedule(doc, body.get("start_time") or None)
            except schedule.ScheduleError as exc:
                doc["start_local"] = previous_local
                raise validation_failed([(exc.field, exc.message)]) from None
        self._save_meeting(doc)

    def _update_occurrence(self, doc: dict[str, Any], occurrence_id: str, body: Any) -> None:
        errors = validation.check_occurrence_update(body)
        if errors:
            raise validation_failed(errors)
        occ = self._occurrence(doc, occurrence_id)
        if occ["status"] == "deleted":
            raise bad_request("Invalid parameter: occurrence_id.")
        if "start_time" in body:
            try:
                begins = schedule.parse_start(
                    body["start_time"], schedule.zone(doc["timezone"])
                ).astimezone(UTC)
            except schedule.ScheduleError as exc:
                raise validation_failed([(exc.field, exc.message)]) from None
            if begins <= self.now_dt():
                raise bad_request("The occurrence start_time must be in the future.")
            occ["start_time"] = schedule.zoom_time(begins)
        if "duration" in body:
            occ["duration"] = body["duration"]
        if "agenda" in body:
            occ["agenda"] = body["agenda"]
        changed = {
            k: v
            for k, v in (body.get("settings") or {}).items()
            if k in validation.OCCURRENCE_SETTINGS
        }
        if changed:
            occ["settings"] = {**(occ.get("settings") or {}), **changed}
        doc["occurrences"].sort(key=lambda o: o["start_time"])
        self._save_meeting(doc)

    @atomic
    def delete_meeting(self, meeting_id: Any, *, occurrence_id: str | None = None) -> None:
        doc = self._meeting(meeting_id)
        if occurrence_id:
            occ = self._occurrence(doc, str(occurrence_id))
            occ["status"] = "deleted"
            self._save_meeting(doc)
            return
        self.store.execute(
            "UPDATE meetings SET deleted_at = ? WHERE id = ?", (self.now(), doc["id"])
        )

    @atomic
    def meeting_status(self, meeting_id: Any, body: Any) -> None:
        if not isinstance(body, dict) or body.get("action") not in ("end", "recover"):
            raise validation_failed([("action", "Invalid field: end or recover.")])
        if body["action"] == "recover":
            doc = self._meeting(meeting_id, include_deleted=True)
            deleted_at = doc["_deleted_at"]
            if deleted_at is None:
                return
            if self.now() - deleted_at > RECOVER_WINDOW:
                raise meeting_not_found(meeting_id)
            self.store.execute("UPDATE meetings SET deleted_at = NULL WHERE id = ?", (doc["id"],))
            return
        doc = self._meeting(meeting_id)
        if doc.get("live_instance"):
            from .simulate import end_instance

            end_instance(self, doc["live_instance"], reason="host ended the meeting")

    def list_meetings(
        self, user_id: str, *, kind: str | None, page_size: str | None, next_page_token: str | None
    ) -> dict[str, Any]:
        self.check_user(user_id)
        kind = kind or "scheduled"
        if kind not in ("scheduled", "live", "upcoming", "upcoming_meetings", "previous_meetings"):
            raise validation_failed([("type", "Invalid field.")])
        size = page_size_of(page_size)
        offset = decode_page(next_page_token, "meetings:" + kind)
        now = self.now_dt()
        items = []
        docs = [
            loads(row["doc"])
            for row in self.store.query("SELECT doc FROM meetings WHERE deleted_at IS NULL")
        ]
        for doc in sorted(docs, key=lambda d: (d["created_at"], d.get("seq", 0))):
            starts = [
                schedule.parse_utc(o["start_time"], "start_time")
                for o in (doc["occurrences"] or [{"start_time": doc["start_time"]}])
                if o.get("status", "available") == "available"
            ]
            future = [s for s in starts if s + dt.timedelta(minutes=doc["duration"]) >= now]
            if kind == "live" and doc.get("status") != "started":
                continue
            if kind in ("upcoming", "upcoming_meetings") and not future:
                continue
            if kind == "previous_meetings" and future:
                continue
            start = min(future) if future else (max(starts) if starts else None)
            item = {
                "uuid": doc["uuid"],
                "id": doc["id"],
                "host_id": doc["host_id"],
                "topic": doc["topic"],
                "type": doc["type"],
                "duration": doc["duration"],
                "timezone": doc["timezone"],
                "created_at": doc["created_at"],
                "join_url": self._join_url(doc),
            }
            if doc.get("agenda"):
                item["agenda"] = doc["agenda"]
            if start is not None:
                item["start_time"] = schedule.zoom_time(start)
            items.append(item)
        page = items[offset : offset + size]
        following = offset + size
        return {
            "page_size": size,
            "total_records": len(items),
            "next_page_token": encode_page(following, "meetings:" + kind)
            if following < len(items)
            else "",
            "meetings": page,
        }
