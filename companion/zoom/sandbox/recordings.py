"""Cloud recordings: get, list, trash, recover or delete, and the links their files download from.

Models Zoom's Meetings API operations ``recordingGet`` (with ``include_fields=
download_access_token`` and ``ttl``), ``recordingsList`` (with ``trash=true`` and ``trash_type``),
``recordingDelete`` and ``recordingDeleteOne`` (``action=trash|delete``) and
``recordingStatusUpdate`` (``PUT /meetings/{meetingUUID}/recordings/status``, ``recover``) as
Zoom's Meetings spec (``tests/zoom_spec``) documents them; the files themselves are made by the
simulation (``simulate.py``) and served by ``app.py``.

What Zoom does and this models (the spec's operation texts, and Zoom support "Recovering
deleted cloud recordings" / "What happens to cloud recording files when a user deletes their
cloud recordings"):

* ``action`` defaults to ``trash``. A trashed recording is no longer listed nor downloadable,
  but ``recordingsList`` with ``trash=true`` lists it (``from``/``to`` do not filter the trash:
  "The trash files cannot be filtered by date range"), and ``recover`` brings it back, for 30
  days after the deletion. ``trash_type=meeting_recordings`` lists what was trashed as a whole
  meeting, ``recording_file`` what was trashed file by file. Only ``delete`` removes for good.
* A meeting instance's files are more than the video: ``recording_files`` hold ``MP4``, ``M4A``,
  ``TRANSCRIPT``, ``CHAT``, ``CC``, ``TIMELINE``, ``CSV`` (poll) and ``SUMMARY`` files as the
  account's recording settings make them, and ``participant_audio_files`` one audio file per
  participant. Captions and the timeline come **without** ``id``, ``status`` or ``file_size``
  (so they cannot be deleted one by one: only the whole instance's delete takes them).
* The account setting ``recording.host_delete_cloud_recording`` ("Allow the host to delete the
  recordings. If this option is disabled, the recordings cannot be deleted by the host and only
  admin can delete them", Zoom's account settings reference): off, every delete is refused with
  HTTP 400 and Zoom's generic permission error, code 200 "No permission." (the code Zoom's spec
  documents for refusals of this kind; the spec names no code of its own for this setting, so
  companion treats any refusal alike). Whether an account-level app counts as "admin" here is
  not documented; the sandbox models the stricter reading.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from . import schedule
from .account import Account
from .base import atomic, decode_page, encode_page, page_size_of
from .errors import (
    ZoomApiError,
    bad_request,
    meeting_not_found,
    no_recording,
    validation_failed,
)
from .store import dumps, loads
from .tokens import Tokens

WEBHOOK_DOWNLOAD_TOKEN_TTL = 24 * 3600
DEFAULT_DOWNLOAD_ACCESS_TTL = 24 * 3600
MAX_DOWNLOAD_ACCESS_TTL = 604800
FILE_LINK_TTL = 120  # the signed file URL a download redirects to
# Zoom support, "Recovering deleted cloud recordings": the trash keeps them for 30 days.
TRASH_DAYS = 30
TRASH_TYPES = ("meeting_recordings", "recording_file")
# Files of this group are listed as ``participant_audio_files``, not ``recording_files``.
PARTICIPANT_AUDIO = "participant_audio"

# The account's recording settings, by the names of Zoom's account settings (``recording``
# group of ``GET /accounts/{accountId}/settings``). Hosts may delete by default (Zoom's default);
# the files beyond video and audio are off until a test or a person turns them on, as a new
# Zoom account leaves most of them off.
DEFAULT_RECORDING_SETTINGS: dict[str, bool] = {
    "host_delete_cloud_recording": True,
    "recording_audio_transcript": False,  # TRANSCRIPT (VTT) and the speakers' TIMELINE (JSON)
    "save_chat_text": False,  # CHAT (TXT)
    "save_close_caption": False,  # CC (VTT), listed without id
    "record_audio_file_each_participant": False,  # participant_audio_files (M4A each)
    "save_poll_results": False,  # CSV (poll)
    "meeting_summary": False,  # SUMMARY (JSON): an AI Companion summary of the class
}


def delete_refused() -> ZoomApiError:
    """What Zoom answers a delete the account's settings do not allow (see the module text)."""
    return ZoomApiError(400, 200, "No permission.")


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

    # --- the account's recording settings (a person in Zoom's web portal) -----------------------

    def recording_settings(self) -> dict[str, bool]:
        return {**DEFAULT_RECORDING_SETTINGS, **self.store.get_meta("recording_settings", {})}

    @atomic
    def set_recording_settings(self, changes: dict[str, Any]) -> dict[str, bool]:
        if not isinstance(changes, dict):
            raise bad_request("Recording settings must be a JSON object of setting: true/false.")
        unknown = sorted(set(changes) - set(DEFAULT_RECORDING_SETTINGS))
        if unknown or not all(isinstance(v, bool) for v in changes.values()):
            raise validation_failed([(k, "Invalid field.") for k in unknown or sorted(changes)])
        settings = {**self.store.get_meta("recording_settings", {}), **changes}
        self.store.set_meta("recording_settings", settings)
        return self.recording_settings()

    # --- files ----------------------------------------------------------------------------------

    def _files(self, instance_uuid: str, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT id, doc FROM recording_files WHERE instance_uuid = ? "  # noqa: S608
            f"AND status IN ({marks}) ORDER BY rowid",
            (instance_uuid, *statuses),
        )
        # ``_id`` is the sandbox's own key: captions and the timeline have no Zoom ``id``.
        return [{**loads(r["doc"]), "_id": r["id"]} for r in rows]

    def file_doc(self, file_id: str) -> dict[str, Any] | None:
        row = self.store.one("SELECT doc, status FROM recording_files WHERE id = ?", (file_id,))
        if row is None:
            return None
        doc: dict[str, Any] = loads(row["doc"])
        doc["status"] = row["status"]
        doc["_id"] = file_id
        return doc

    @staticmethod
    def public_file(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def recording_object(
        self,
        instance: dict[str, Any],
        files: list[dict[str, Any]],
        *,
        api: bool = True,
        participant_audio: bool = True,
    ) -> dict[str, Any]:
        shown = [f for f in files if f.get("_group") != PARTICIPANT_AUDIO]
        per_participant = [f for f in files if f.get("_group") == PARTICIPANT_AUDIO]
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
            "recording_count": len(shown),
            "share_url": f"{self.public_url}/rec/share/{instance['share_token']}",
            "recording_files": [self.public_file(f) for f in shown],
        }
        # In the instance's answer and the webhook; the spec's user listing has no such field.
        if per_participant and participant_audio:
            body["participant_audio_files"] = [self.public_file(f) for f in per_participant]
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
        trash_type: str | None = None,
    ) -> dict[str, Any]:
        self.check_user(user_id)
        in_trash = str(trash).lower() == "true"
        kind = trash_type or "meeting_recordings"
        if kind not in TRASH_TYPES:
            raise validation_failed([("trash_type", "Invalid field.")])
        if in_trash:
            self._expire_trash()
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
        size = page_size_of(page_size)
        token_kind = f"recordings:{begin}:{end}:{in_trash}:{kind}:{meeting_id or ''}"
        offset = decode_page(next_page_token, token_kind)
        statuses = ("trashed",) if in_trash else ("completed",)
        meetings = []
        for row in self.store.query("SELECT doc FROM instances ORDER BY started_at DESC"):
            instance = loads(row["doc"])
            if meeting_id and str(instance["meeting_id"]) != str(meeting_id):
                continue
            started = schedule.parse_utc(instance["start_time"], "start_time").date()
            # The trash is not filtered by date (the spec's note on ``from``).
            if not in_trash and not begin <= started <= end:
                continue
            files = self._files(instance["uuid"], statuses)
            if in_trash:
                wanted = "meeting" if kind == "meeting_recordings" else "file"
                files = [f for f in files if f.get("_trashed_as", "meeting") == wanted]
            if files:
                meetings.append(self.recording_object(instance, files, participant_audio=False))
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

    def _remove_files(self, file_ids: list[str], action: str, *, trashed_as: str) -> None:
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
                    doc["_trashed_at"] = self.now()
                    doc["_trashed_as"] = trashed_as
                    conn.execute(
                        "UPDATE recording_files SET status = 'trashed', doc = ? WHERE id = ?",
                        (dumps(doc), file_id),
                    )

    def _check_delete(self, action: str | None) -> str:
        chosen = action or "trash"  # the spec's default
        if chosen not in ("trash", "delete"):
            raise validation_failed([("action", "Invalid field: trash or delete.")])
        if not self.recording_settings()["host_delete_cloud_recording"]:
            raise delete_refused()
        return chosen

    @atomic
    def delete_recordings(self, ref: str, *, action: str | None) -> None:
        chosen = self._check_delete(action)
        instance = self._instance_for(ref)
        self._check_completed(instance)
        # Every file of the instance: captions and the timeline (no id), participant audio.
        files = self._files(instance["uuid"], ("completed",))
        if not files:
            raise no_recording()
        self._remove_files([f["_id"] for f in files], chosen, trashed_as="meeting")

    @atomic
    def delete_recording_file(self, ref: str, recording_id: str, *, action: str | None) -> None:
        chosen = self._check_delete(action)
        instance = self._instance_for(ref)
        self._check_completed(instance)
        files = [
            f for f in self._files(instance["uuid"], ("completed",)) if f.get("id") == recording_id
        ]
        if not files:
            raise no_recording()
        self._remove_files([f["_id"] for f in files], chosen, trashed_as="file")

    def _expire_trash(self) -> None:
        """Zoom empties what has been in the trash for 30 days."""
        cutoff = self.now() - TRASH_DAYS * 86400
        with self.store.transaction() as conn:
            for row in conn.execute(
                "SELECT id, doc FROM recording_files WHERE status = 'trashed'"
            ).fetchall():
                if float(loads(row["doc"]).get("_trashed_at", self.now())) < cutoff:
                    conn.execute("DELETE FROM recording_files WHERE id = ?", (row["id"],))

    @atomic
    def recover_recordings(self, ref: str, body: Any) -> None:
        """``PUT /meetings/{meetingUUID}/recordings/status`` ``{"action": "recover"}``: every
        trashed file of the instance comes back, within 30 days of its deletion."""
        if not isinstance(body, dict) or body.get("action") != "recover":
            raise validation_failed([("action", "Invalid field: recover.")])
        self._expire_trash()
        row = self.store.one("SELECT doc FROM instances WHERE uuid = ?", (ref,))
        if row is None:
            raise no_recording()
        instance = loads(row["doc"])
        files = self._files(instance["uuid"], ("trashed",))
        if not files:
            raise no_recording()
        with self.store.transaction() as conn:
            for f in files:
                doc = {k: v for k, v in f.items() if k not in ("_id", "_trashed_at", "_trashed_as")}
                doc.pop("deleted_time", None)
                conn.execute(
                    "UPDATE recording_files SET status = 'completed', doc = ? WHERE id = ?",
                    (dumps(doc), f["_id"]),
                )

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
        key = doc["_id"]
        extension = str(doc.get("file_extension") or doc.get("file_type") or "bin").lower()
        name = doc.get("_file_name") or f"{key}.{extension}"
        return f"/rec/files/{key}/{name}?exp={expires}&sig={self.file_signature(key, expires)}"

    def file_link_valid(self, file_id: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not expires.isdigit():
            return False
        if int(expires) < self.now():
            return False
        return hmac.compare_digest(self.file_signature(file_id, int(expires)), sig)
