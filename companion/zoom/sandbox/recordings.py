"""Cloud recordings: get, list, trash or delete, and the signed links their files download from.

Models Zoom's Meetings API operations ``recordingGet`` (with ``include_fields=
download_access_token`` and ``ttl``), ``recordingsList``, ``recordingDelete`` and
``recordingDeleteOne`` as Zoom's Meetings spec (``tests/zoom_spec``) documents them; the files
themselves are made by the simulation (``simulate.py``) and served by ``app.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from . import schedule
from .account import Account
from .base import atomic, decode_page, encode_page, page_size_of
from .errors import bad_request, meeting_not_found, no_recording, validation_failed
from .store import dumps, loads
from .tokens import Tokens

WEBHOOK_DOWNLOAD_TOKEN_TTL = 24 * 3600
DEFAULT_DOWNLOAD_ACCESS_TTL = 24 * 3600
MAX_DOWNLOAD_ACCESS_TTL = 604800
FILE_LINK_TTL = 120  # the signed file URL a download redirects to


class Recordings(Account, Tokens):
    """The account's cloud recordings (a part of :class:`~.core.Sandbox`)."""

    def _instance_for(self, ref: str, *, trash: bool = False) -> dict[str, Any]:
        """The meeting instance a recordings call names: a UUID, or the latest for an id."""
        wanted = ("trashed",) if trash else ("completed",)
        marks = ",".join("?" * len(wanted))
        if ref.isdigit():
            if self.store.one("SELECT 1 FROM meetings WHERE id = ?", (int(ref),)) is None:
                raise meeting_not_found(ref)
            row = self.store.one(
                f"SELECT i.doc FROM instances i WHERE i.meeting_id = ? AND EXISTS ("  # noqa: S608
                f"SELECT 1 FROM recording_files f WHERE f.instance_uuid = i.uuid "
                f"AND f.status IN ({marks})) ORDER BY i.started_at DESC LIMIT 1",
                (int(ref), *wanted),
            )
        else:
            row = self.store.one("SELECT doc FROM instances WHERE uuid = ?", (ref,))
        if row is None:
            raise no_recording()
        instance: dict[str, Any] = loads(row["doc"])
        return instance

    def _files(self, instance_uuid: str, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT doc FROM recording_files WHERE instance_uuid = ? "  # noqa: S608
            f"AND status IN ({marks}) ORDER BY rowid",
            (instance_uuid, *statuses),
        )
        return [loads(r["doc"]) for r in rows]

    def file_doc(self, file_id: str) -> dict[str, Any] | None:
        row = self.store.one("SELECT doc, status FROM recording_files WHERE id = ?", (file_id,))
        if row is None:
            return None
        doc: dict[str, Any] = loads(row["doc"])
        doc["status"] = row["status"]
        return doc

    @staticmethod
    def public_file(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def recording_object(
        self, instance: dict[str, Any], files: list[dict[str, Any]], *, api: bool = True
    ) -> dict[str, Any]:
        body = {
            "uuid": instance["uuid"],
            "id": instance["meeting_id"],
            "account_id": self.account_id,
            "host_id": instance["host_id"],
            "topic": instance["topic"],
            # The API spec types this as a string enum; webhooks send a number.
            "type": str(instance["type"]) if api else instance["type"],
            "start_time": instance["start_time"],
            "timezone": instance["timezone"],
            "duration": instance["duration"],
            "total_size": sum(int(f.get("file_size") or 0) for f in files),
            "recording_count": len(files),
            "share_url": f"{self.public_url}/rec/share/{instance['share_token']}",
            "recording_files": [self.public_file(f) for f in files],
        }
        if api:
            # In the webhook payload, not in the API's documented answer.
            del body["timezone"], body["share_url"]
        return body

    @atomic
    def get_recordings(
        self, ref: str, *, include_fields: str | None = None, ttl: str | None = None
    ) -> dict[str, Any]:
        instance = self._instance_for(ref)
        files = self._files(instance["uuid"], ("completed",))
        if not files:
            raise no_recording()
        body = self.recording_object(instance, files)
        body["password"] = ""
        body["recording_play_passcode"] = instance["play_passcode"]
        fields = {f.strip() for f in (include_fields or "").split(",") if f.strip()}
        if "download_access_token" in fields:
            lifetime = DEFAULT_DOWNLOAD_ACCESS_TTL
            if ttl not in (None, ""):
                try:
                    lifetime = int(ttl)
                except ValueError:
                    lifetime = -1
                if not 0 <= lifetime <= MAX_DOWNLOAD_ACCESS_TTL:
                    raise validation_failed([("ttl", "Invalid field: 0 to 604800 seconds.")])
            body["download_access_token"] = self._issue(
                "download", lifetime or DEFAULT_DOWNLOAD_ACCESS_TTL, instance["uuid"]
            )
        return body

    def list_user_recordings(
        self,
        user_id: str,
        *,
        from_: str | None,
        to: str | None,
        page_size: str | None,
        next_page_token: str | None,
        trash: str | None = None,
        meeting_id: str | None = None,
    ) -> dict[str, Any]:
        self.check_user(user_id)
        today = self.now_dt().date()
        try:
            end = dt.date.fromisoformat(to) if to else today
            begin = dt.date.fromisoformat(from_) if from_ else today
        except ValueError:
            raise validation_failed([("from", "Invalid date: use yyyy-mm-dd.")]) from None
        if begin > end:
            raise bad_request("The from date must be on or before the to date.")
        if (end - begin).days > 31:
            raise bad_request("The date range must be at most one month.")
        in_trash = str(trash).lower() == "true"
        size = page_size_of(page_size)
        token_kind = f"recordings:{begin}:{end}:{in_trash}:{meeting_id or ''}"
        offset = decode_page(next_page_token, token_kind)
        statuses = ("trashed",) if in_trash else ("completed",)
        meetings = []
        for row in self.store.query("SELECT doc FROM instances ORDER BY started_at DESC"):
            instance = loads(row["doc"])
            if meeting_id and str(instance["meeting_id"]) != str(meeting_id):
                continue
            started = schedule.parse_utc(instance["start_time"], "start_time").date()
            if not begin <= started <= end:
                continue
            files = self._files(instance["uuid"], statuses)
            if files:
                meetings.append(self.recording_object(instance, files))
        page = meetings[offset : offset + size]
        following = offset + size
        return {
            "from": begin.isoformat(),
            "to": end.isoformat(),
            "page_count": max(1, -(-len(meetings) // size)),
            "page_size": size,
            "total_records": len(meetings),
            "next_page_token": encode_page(following, token_kind)
            if following < len(meetings)
            else "",
            "meetings": page,
        }

    def _remove_files(self, file_ids: list[str], action: str) -> None:
        if action not in ("trash", "delete"):
            raise validation_failed([("action", "Invalid field: trash or delete.")])
        with self.store.transaction() as conn:
            for file_id in file_ids:
                if action == "delete":
                    conn.execute("DELETE FROM recording_files WHERE id = ?", (file_id,))
                else:
                    row = conn.execute(
                        "SELECT doc FROM recording_files WHERE id = ?", (file_id,)
                    ).fetchone()
                    doc = loads(row["doc"])
                    doc["deleted_time"] = schedule.zoom_time(self.now_dt())
                    conn.execute(
                        "UPDATE recording_files SET status = 'trashed', doc = ? WHERE id = ?",
                        (dumps(doc), file_id),
                    )

    @atomic
    def delete_recordings(self, ref: str, *, action: str | None) -> None:
        instance = self._instance_for(ref)
        self._check_completed(instance)
        files = self._files(instance["uuid"], ("completed",))
        if not files:
            raise no_recording()
        self._remove_files([f["id"] for f in files], action or "trash")

    @atomic
    def delete_recording_file(self, ref: str, recording_id: str, *, action: str | None) -> None:
        instance = self._instance_for(ref)
        self._check_completed(instance)
        files = [
            f for f in self._files(instance["uuid"], ("completed",)) if f["id"] == recording_id
        ]
        if not files:
            raise no_recording()
        self._remove_files([recording_id], action or "trash")

    @staticmethod
    def _check_completed(instance: dict[str, Any]) -> None:
        if not instance.get("end_time"):
            raise bad_request("You can not delete an uncompleted meeting.", code=3303)

    # --- file links -------------------------------------------------------------------------------

    def file_signature(self, file_id: str, expires: int) -> str:
        return hmac.new(
            self._signing_key, f"{file_id}:{expires}".encode(), hashlib.sha256
        ).hexdigest()

    def signed_file_path(self, doc: dict[str, Any]) -> str:
        expires = int(self.now()) + FILE_LINK_TTL
        name = doc.get("_file_name") or f"{doc['id']}.{doc['file_extension'].lower()}"
        return (
            f"/rec/files/{doc['id']}/{name}?exp={expires}"
            f"&sig={self.file_signature(doc['id'], expires)}"
        )

    def file_link_valid(self, file_id: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not expires.isdigit():
            return False
        if int(expires) < self.now():
            return False
        return hmac.compare_digest(self.file_signature(file_id, int(expires)), sig)
