"""A simulated class: what Zoom would tell companion about one meeting instance.

``simulate_class`` plays a class through in an instant and queues, in order, the webhooks Zoom
sends for it, with Zoom's field names:

1. ``meeting.started`` and the host's ``meeting.participant_joined``;
2. per participant ``meeting.participant_joined_waiting_room``, ``meeting.participant_admitted``
   and ``meeting.participant_joined`` (only the last one when the meeting's effective settings
   have the waiting room off, e.g. because an account lock overrode it); a registrant's events
   carry their ``registrant_id``, a guest's carry none;
3. ``meeting.participant_left`` for each participant and the host, then ``meeting.ended``;
4. when the meeting records to the cloud, the recording files appear in the recordings API and
   ``recording.completed`` is sent with a ``download_token``: an MP4 and an M4A always, and as
   the account's recording settings (``Recordings.recording_settings``) say, the transcript
   and the speakers' timeline, the chat, the closed captions, a poll CSV, an AI summary and one
   audio file per participant. The text files hold the participants' names and words, as
   Zoom's do; captions and the timeline are listed without ``id``, ``status`` or ``file_size``.

The times inside the events are simulated, not waited for: a class anchored at an occurrence
has the host start two minutes early, the children knock in the minute before, and everyone
leaves at the end of the scheduled duration. With ``end=False`` the class stays live (the
meeting's status is ``started``) until ``PUT /meetings/{id}/status {"action": "end"}`` or
:func:`end_instance`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import secrets
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import media, schedule
from .account import HOST_EMAIL
from .base import zoom_uuid
from .delivery import enqueue, event_body
from .errors import bad_request
from .recordings import WEBHOOK_DOWNLOAD_TOKEN_TTL
from .store import dumps, loads

if TYPE_CHECKING:
    from .core import Sandbox

UTC = dt.UTC
MAX_RECORDING_BYTES = 64 * 1024**3


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(moment: dt.datetime) -> str:
    return schedule.zoom_time(moment)


def _numeric_user_id() -> str:
    # In meeting events `user_id` is a per-meeting numeric id, not the account user id.
    return str(16778240 + secrets.randbelow(10_000_000))


def _resolve_participants(
    sandbox: Sandbox, doc: dict[str, Any], participants: list[Any] | None, occurrence_id: str | None
) -> list[dict[str, Any]]:
    approved = {r["id"]: r for r in sandbox.registrants_of(doc["id"], "approved")}
    if participants is None:
        chosen: list[Any] = [
            r["id"]
            for r in approved.values()
            if not occurrence_id or not r["occurrence_ids"] or occurrence_id in r["occurrence_ids"]
        ]
    else:
        chosen = list(participants)
    people = []
    all_regs = {
        r["id"]: r
        for status in ("pending", "denied")
        for r in sandbox.registrants_of(doc["id"], status)
    }
    for item in chosen:
        spec = item if isinstance(item, dict) else {"ref": str(item)}
        ref = spec.get("registrant_id") or spec.get("ref")
        if ref and ref in approved:
            reg = approved[ref]
            name = spec.get("name") or " ".join(
                p for p in (reg.get("first_name"), reg.get("last_name")) if p
            )
            people.append(
                {
                    "kind": "registrant",
                    "name": name,
                    "email": reg["email"],
                    "registrant_id": reg["id"],
                }
            )
        elif spec.get("registrant_id") or (ref and ref in all_regs):
            raise bad_request(f"Registrant {ref} is not approved, so Zoom would not let them in.")
        else:
            people.append(
                {
                    "kind": "guest",
                    "name": spec.get("name") or ref or "Guest",
                    "email": spec.get("email") or "",
                    "registrant_id": None,
                }
            )
    for person in people:
        person["user_id"] = _numeric_user_id()
        person["participant_uuid"] = str(uuidlib.uuid4()).upper()
    return people


def _meeting_object(instance: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(instance["meeting_id"]),
        "uuid": instance["uuid"],
        "host_id": instance["host_id"],
        "topic": instance["topic"],
        "type": instance["type"],
        "start_time": instance["start_time"],
        "timezone": instance["timezone"],
        "duration": instance["scheduled_duration"],
    }


def _participant(person: dict[str, Any], time_field: str, moment: dt.datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": person["user_id"],
        "user_name": person["name"],
        "id": person.get("zoom_user_id", ""),
        "participant_uuid": person["participant_uuid"],
        time_field: _iso(moment),
        "email": person["email"],
    }
    if person.get("registrant_id"):
        body["registrant_id"] = person["registrant_id"]
    if person.get("zoom_user_id"):
        body["participant_user_id"] = person["zoom_user_id"]
    return body


class _Timeline:
    """Events of one instance, queued in the order they happened (ties keep their order)."""

    def __init__(self, sandbox: Sandbox, instance: dict[str, Any], pace: float):
        self.sandbox = sandbox
        self.instance = instance
        self.pace = pace
        self.items: list[tuple[dt.datetime, int, str, dict[str, Any]]] = []

    def add(
        self,
        event: str,
        moment: dt.datetime,
        *,
        participant: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        obj = _meeting_object(self.instance)
        obj.update(extra or {})
        if participant is not None:
            obj["participant"] = participant
        self.items.append((moment, len(self.items), event, obj))

    def flush(self, queued: list[dict[str, Any]]) -> None:
        for moment, _, event, obj in sorted(self.items, key=lambda item: item[:2]):
            body = event_body(self.sandbox, event, obj, event_ts=_ms(moment))
            _queue(self.sandbox, event, body, moment, queued, self.pace)
        self.items.clear()


def _queue(
    sandbox: Sandbox,
    event: str,
    body: bytes,
    moment: dt.datetime,
    queued: list[dict[str, Any]],
    pace: float,
) -> None:
    due = sandbox.now() + pace * len(queued) if pace else None
    delivery_id = enqueue(sandbox, event, body, due=due)
    queued.append({"delivery_id": delivery_id, "event": event, "at": _iso(moment)})


def _save_instance(sandbox: Sandbox, instance: dict[str, Any]) -> None:
    sandbox.store.execute(
        "INSERT INTO instances (uuid, meeting_id, started_at, ended_at, doc) "
        "VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (uuid) DO UPDATE SET ended_at = excluded.ended_at, doc = excluded.doc",
        (
            instance["uuid"],
            instance["meeting_id"],
            schedule.parse_utc(instance["start_time"], "start_time").timestamp(),
            schedule.parse_utc(instance["end_time"], "end_time").timestamp()
            if instance.get("end_time")
            else None,
            dumps(instance),
        ),
    )


def _in_transaction(func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """All or nothing: a simulation that fails half-way leaves no events or state behind."""

    @functools.wraps(func)
    def wrapper(sandbox: Sandbox, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with sandbox.store.transaction():
            return func(sandbox, *args, **kwargs)

    return wrapper


@_in_transaction
def simulate_class(
    sandbox: Sandbox,
    meeting_id: Any,
    occurrence_id: str | None = None,
    participants: list[Any] | None = None,
    teacher: str = "Teacher",
    *,
    start_at: dt.datetime | str | None = None,
    minutes: int | None = None,
    end: bool = True,
    record: bool | None = None,
    recording_bytes: int | None = None,
    pace: float = 0.0,
    instance_uuid: str | None = None,
) -> dict[str, Any]:
    """Run one class of ``meeting_id`` and queue its webhooks. Returns what happened.

    ``participants``: registrant ids (approved ones join with their ``registrant_id``), other
    strings are guests' display names, or dicts ``{"registrant_id"}`` / ``{"name", "email"}``.
    None means every approved registrant (of that occurrence). ``start_at`` anchors the class
    (default: the occurrence's start, or for no occurrence a class that ends now, or starts now
    with ``end=False``). ``record`` None follows the meeting's ``auto_recording`` setting.
    ``recording_bytes`` makes the MP4 a synthetic file of that size (benchmarks). ``pace`` spaces
    the webhook deliveries that many seconds apart.
    """
    doc = sandbox.meeting_doc(meeting_id)
    if doc.get("live_instance"):
        raise bad_request("A class of this meeting is already live; end it first.")
    occurrence = None
    if occurrence_id:
        occurrence = sandbox._occurrence(doc, str(occurrence_id))
        if occurrence["status"] == "deleted":
            raise bad_request(f"Occurrence {occurrence_id} was cancelled.")
    length = minutes or (occurrence or doc)["duration"]
    if not 1 <= int(length) <= 1440:
        raise bad_request("minutes must be 1..1440.")
    if recording_bytes is not None and not 1 <= int(recording_bytes) <= MAX_RECORDING_BYTES:
        raise bad_request("recording_bytes must be between 1 byte and 64 GiB.")

    if isinstance(start_at, str):
        anchor = schedule.parse_utc(start_at, "start_at")
    elif isinstance(start_at, dt.datetime):
        anchor = start_at.astimezone(UTC)
    elif occurrence is not None:
        anchor = schedule.parse_utc(occurrence["start_time"], "start_time")
    elif end:
        anchor = sandbox.now_dt() - dt.timedelta(minutes=int(length))
    else:
        anchor = sandbox.now_dt()
    anchor = anchor.replace(microsecond=0)

    people = _resolve_participants(
        sandbox, doc, participants, occurrence["occurrence_id"] if occurrence else None
    )
    settings = sandbox._effective_settings(doc, occurrence)
    started = anchor - dt.timedelta(minutes=2)
    host = {
        "kind": "host",
        "name": teacher,
        "email": HOST_EMAIL,
        "registrant_id": None,
        "user_id": "16778240",
        "participant_uuid": str(uuidlib.uuid4()).upper(),
        "zoom_user_id": doc["host_id"],
    }
    instance: dict[str, Any] = {
        "uuid": instance_uuid or zoom_uuid(),
        "meeting_id": doc["id"],
        "occurrence_id": occurrence["occurrence_id"] if occurrence else None,
        "host_id": doc["host_id"],
        "host_email": doc["host_email"],
        "topic": doc["topic"],
        "type": doc["type"],
        "timezone": doc["timezone"],
        "scheduled_duration": (occurrence or doc)["duration"],
        "start_time": _iso(started),
        "planned_end": _iso(anchor + dt.timedelta(minutes=int(length))),
        "end_time": None,
        "duration": 0,
        "waiting_room": bool(settings.get("waiting_room")),
        "record": (settings.get("auto_recording") == "cloud") if record is None else bool(record),
        "recording_bytes": recording_bytes,
        "host": host,
        "participants": people,
        "share_token": secrets.token_urlsafe(24),
        "play_passcode": secrets.token_urlsafe(24),
    }
    queued: list[dict[str, Any]] = []
    _save_instance(sandbox, instance)
    doc["status"] = "started"
    doc["live_instance"] = instance["uuid"]
    sandbox._save_meeting(doc)

    timeline = _Timeline(sandbox, instance, pace)
    timeline.add("meeting.started", started)
    timeline.add(
        "meeting.participant_joined",
        started,
        participant=_participant(host, "join_time", started),
    )
    for index, person in enumerate(people):
        knock = anchor - dt.timedelta(seconds=60 - 5 * min(index, 10))
        if instance["waiting_room"]:
            timeline.add(
                "meeting.participant_joined_waiting_room",
                knock,
                participant=_participant(person, "date_time", knock),
            )
            admitted = anchor + dt.timedelta(seconds=5 * index)
            timeline.add(
                "meeting.participant_admitted",
                admitted,
                participant=_participant(person, "date_time", admitted),
            )
            joined = admitted + dt.timedelta(seconds=2)
        else:
            joined = knock
        person["join_time"] = _iso(joined)
        timeline.add(
            "meeting.participant_joined",
            joined,
            participant=_participant(person, "join_time", joined),
        )
    timeline.flush(queued)
    instance["queued"] = queued
    _save_instance(sandbox, instance)
    if not end:
        return _summary(sandbox, instance, queued)
    return end_instance(
        sandbox,
        instance["uuid"],
        pace=pace,
        queued=queued,
        at=schedule.parse_utc(instance["planned_end"], "planned_end"),
    )


@_in_transaction
def end_instance(
    sandbox: Sandbox,
    instance_uuid: str,
    *,
    reason: str = "left the meeting",
    pace: float = 0.0,
    queued: list[dict[str, Any]] | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Everyone leaves, the meeting ends, and the cloud recording (if any) is completed."""
    row = sandbox.store.one("SELECT doc FROM instances WHERE uuid = ?", (instance_uuid,))
    if row is None:
        raise bad_request(f"No live meeting instance {instance_uuid}.")
    instance = loads(row["doc"])
    if instance.get("end_time"):
        raise bad_request("That meeting instance has already ended.")
    queued = [] if queued is None else queued
    started = schedule.parse_utc(instance["start_time"], "start_time")
    if at is None:
        # Ended by hand: now, but never before everyone who joined has been in for a minute.
        joins = [schedule.parse_utc(p["join_time"], "join_time") for p in instance["participants"]]
        at = max(sandbox.now_dt(), max([started, *joins]) + dt.timedelta(minutes=1))
    finish = at.astimezone(UTC).replace(microsecond=0)
    timeline = _Timeline(sandbox, instance, pace)
    for index, person in enumerate(instance["participants"]):
        left = max(finish - dt.timedelta(seconds=60 - 5 * min(index, 10)), started)
        participant = _participant(person, "leave_time", left)
        participant["leave_reason"] = reason
        timeline.add("meeting.participant_left", left, participant=participant)
    host_left = _participant(instance["host"], "leave_time", finish)
    host_left["leave_reason"] = reason
    timeline.add("meeting.participant_left", finish, participant=host_left)
    instance["end_time"] = _iso(finish)
    instance["duration"] = max(1, round((finish - started).total_seconds() / 60))
    timeline.add("meeting.ended", finish, extra={"end_time": instance["end_time"]})
    timeline.flush(queued)
    doc = sandbox.meeting_doc(instance["meeting_id"])
    doc["status"] = "waiting"
    doc["live_instance"] = None
    sandbox._save_meeting(doc)
    instance["queued"] = queued
    _save_instance(sandbox, instance)
    if instance["record"]:
        _complete_recording(sandbox, instance, started, finish, queued=queued, pace=pace)
    return _summary(sandbox, instance, queued)


def _complete_recording(
    sandbox: Sandbox,
    instance: dict[str, Any],
    started: dt.datetime,
    finish: dt.datetime,
    *,
    queued: list[dict[str, Any]],
    pace: float,
) -> None:
    files = []
    size = instance.get("recording_bytes")
    for kind in _recording_kinds(sandbox, instance):
        file_id = str(uuidlib.uuid4())
        file_type, recording_type, source = (
            kind["file_type"],
            kind["recording_type"],
            kind["source"],
        )
        if file_type == "MP4" and size:
            source = {"kind": "synthetic", "size": int(size), "seed": file_id}
        doc: dict[str, Any] = {
            "id": file_id,
            "meeting_id": instance["uuid"],
            "recording_start": _iso(started),
            "recording_end": _iso(finish),
            "file_type": file_type,
            "file_extension": kind["extension"],
            "file_size": media.source_size(source),
            "play_url": f"{sandbox.public_url}/rec/play/{file_id}",
            "download_url": f"{sandbox.public_url}/rec/download/{file_id}",
            "status": "completed",
            "recording_type": recording_type,
            "_source": source,
            "_instance": instance["uuid"],
        }
        if kind.get("group"):
            # participant_audio_files: file_name instead of recording_type (the spec's shape).
            doc["_group"] = kind["group"]
            doc["file_name"] = kind["file_name"]
            del doc["recording_type"], doc["meeting_id"], doc["file_extension"]
        if kind.get("no_id"):
            # Zoom lists captions and the timeline without id, status or file_size.
            for key in ("id", "status", "file_size", "play_url"):
                doc.pop(key, None)
        sandbox.store.execute(
            "INSERT INTO recording_files (id, instance_uuid, meeting_id, status, doc) "
            "VALUES (?, ?, ?, 'completed', ?)",
            (file_id, instance["uuid"], instance["meeting_id"], dumps(doc)),
        )
        files.append({**doc, "_id": file_id})
    token = sandbox._issue("download", WEBHOOK_DOWNLOAD_TOKEN_TTL, instance["uuid"])
    obj = sandbox.recording_object(instance, files, api=False)
    obj["host_email"] = instance["host_email"]
    obj["password"] = ""
    obj["recording_play_passcode"] = instance["play_passcode"]
    # Zoom sends recording.completed a little after the meeting ends.
    completed = finish + dt.timedelta(minutes=1)
    body = event_body(
        sandbox,
        "recording.completed",
        obj,
        event_ts=_ms(completed),
        top={"download_token": token},
    )
    _queue(sandbox, "recording.completed", body, completed, queued, pace)


def _recording_kinds(sandbox: Sandbox, instance: dict[str, Any]) -> list[dict[str, Any]]:
    """The files one recorded class has, as the account's recording settings make them."""
    settings = sandbox.recording_settings()
    people = [instance["host"], *instance["participants"]]
    names = [str(p.get("name") or "Guest") for p in people]

    def text(body: str) -> dict[str, Any]:
        return {"kind": "text", "text": body}

    cues = "".join(
        f"{i}\n00:00:{i:02d}.000 --> 00:00:{i + 1:02d}.000\n{name}: Hello, I am {name}.\n\n"
        for i, name in enumerate(names, start=1)
    )
    kinds: list[dict[str, Any]] = [
        {
            "file_type": "MP4",
            "extension": "MP4",
            "recording_type": "shared_screen_with_speaker_view",
            "source": {"kind": "media", "name": media.VIDEO},
        },
        {
            "file_type": "M4A",
            "extension": "M4A",
            "recording_type": "audio_only",
            "source": {"kind": "media", "name": media.AUDIO},
        },
    ]
    if settings["recording_audio_transcript"]:
        kinds.append(
            {
                "file_type": "TRANSCRIPT",
                "extension": "VTT",
                "recording_type": "audio_transcript",
                "source": text("WEBVTT\n\n" + cues),
            }
        )
        timeline = [
            {"ts": f"00:00:{i:02d}.000", "users": [{"username": n}]}
            for i, n in enumerate(names, start=1)
        ]
        kinds.append(
            {
                "file_type": "TIMELINE",
                "extension": "JSON",
                "recording_type": "timeline",
                "source": text(json.dumps({"timeline": timeline})),
                "no_id": True,
            }
        )
    if settings["save_chat_text"]:
        chat = "".join(
            f"00:00:{i:02d}\t From {n} to Everyone:\n\thi\n" for i, n in enumerate(names, start=1)
        )
        kinds.append(
            {
                "file_type": "CHAT",
                "extension": "TXT",
                "recording_type": "chat_file",
                "source": text(chat),
            }
        )
    if settings["save_close_caption"]:
        kinds.append(
            {
                "file_type": "CC",
                "extension": "VTT",
                "recording_type": "closed_caption",
                "source": text("WEBVTT\n\n" + cues),
                "no_id": True,
            }
        )
    if settings["save_poll_results"]:
        rows = "".join(f"{n},Which colour?,Blue\n" for n in names)
        kinds.append(
            {
                "file_type": "CSV",
                "extension": "CSV",
                "recording_type": "poll",
                "source": text("Name,Question,Answer\n" + rows),
            }
        )
    if settings["meeting_summary"]:
        summary = {"summary_overview": "The class said hello: " + ", ".join(names) + "."}
        kinds.append(
            {
                "file_type": "SUMMARY",
                "extension": "JSON",
                "recording_type": "summary",
                "source": text(json.dumps(summary)),
            }
        )
    if settings["record_audio_file_each_participant"]:
        for name in names:
            kinds.append(
                {
                    "file_type": "M4A",
                    "extension": "M4A",
                    "recording_type": "",
                    "group": "participant_audio",
                    "file_name": f"Audio only - {name}",
                    "source": {"kind": "media", "name": media.AUDIO},
                }
            )
    return kinds


def _summary(
    sandbox: Sandbox, instance: dict[str, Any], queued: list[dict[str, Any]]
) -> dict[str, Any]:
    files = sandbox._files(instance["uuid"], ("completed",))
    return {
        "meeting_id": instance["meeting_id"],
        "uuid": instance["uuid"],
        "occurrence_id": instance["occurrence_id"],
        "start_time": instance["start_time"],
        "end_time": instance["end_time"],
        "live": not instance.get("end_time"),
        "waiting_room": instance["waiting_room"],
        "participants": [
            {k: p.get(k) for k in ("kind", "name", "email", "registrant_id", "participant_uuid")}
            for p in instance["participants"]
        ],
        "recording_files": [
            sandbox.public_file(f) for f in files if f.get("_group") != "participant_audio"
        ],
        "participant_audio_files": [
            sandbox.public_file(f) for f in files if f.get("_group") == "participant_audio"
        ],
        "events": queued,
    }
