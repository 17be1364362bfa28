"""What companion asks of Zoom, as types: the :class:`ZoomApi` protocol and the shapes it answers.

Services and work steps take a ``ZoomApi``, not the concrete :class:`~.client.ZoomClient`, so a
test can hand them any object with these methods (the sandbox's client, a double) and mypy still
checks every call. ``ZoomClient`` satisfies it; ``tests/zoom`` checks that the two agree.

The shapes are ``TypedDict``\\s of the fields companion reads, named and typed as in Zoom's
OpenAPI spec (``tests/zoom_spec``); Zoom sends more, and may leave any of them out, so every one
is optional (``total=False``). They describe what Zoom documents, not what was checked: the
client does not validate answers, so code that acts on a field still looks at its value (see
``courses/safety.py``), and a field Zoom leaves out reads as absent, never as a default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import requests

# The values Zoom accepts for the action and status parameters (checked by the client too).
MeetingStatusAction = Literal["end", "recover"]
RegistrantStatusAction = Literal["approve", "cancel", "deny"]
RegistrantStatus = Literal["pending", "approved", "denied"]
RecordingDeleteAction = Literal["trash", "delete"]
RecordingTrashType = Literal["meeting_recordings", "recording_file"]
MeetingListType = Literal["scheduled", "live", "upcoming", "upcoming_meetings", "previous_meetings"]


# -- meetings --------------------------------------------------------------------------------------


class WaitingRoomOptions(TypedDict, total=False):
    mode: Literal["follow_setting", "custom"]
    who_goes_to_waiting_room: str


class MeetingSettings(TypedDict, total=False):
    """The part of a meeting's ``settings`` that companion enforces (``courses/safety.py``)."""

    allow_multiple_devices: bool
    alternative_hosts: str  # addresses separated by ";" (or ",")
    alternative_hosts_email_notification: bool
    approval_type: int  # 0 automatic, 1 manual, 2 no registration
    auto_recording: Literal["local", "cloud", "none"]
    encryption_type: Literal["enhanced_encryption", "e2ee"]
    host_video: bool
    jbh_time: int
    join_before_host: bool
    mute_upon_entry: bool
    participant_video: bool
    registrants_confirmation_email: bool
    registrants_email_notification: bool
    registration_type: int
    show_share_button: bool
    use_pmi: bool
    waiting_room: bool
    waiting_room_options: WaitingRoomOptions


class Occurrence(TypedDict, total=False):
    """One class of a recurring meeting."""

    occurrence_id: str
    start_time: str  # date-time, UTC ("2026-01-07T16:00:00Z")
    duration: int  # minutes
    status: Literal["available", "deleted"]


class Recurrence(TypedDict, total=False):
    type: int  # 1 daily, 2 weekly, 3 monthly
    repeat_interval: int
    weekly_days: str  # "1".."7" separated by ",", Sunday first
    end_times: int
    end_date_time: str


class Meeting(TypedDict, total=False):
    """A meeting as ``GET /meetings/{meetingId}`` (and the create, with ``registration_url``)
    answers it."""

    id: int
    uuid: str
    host_id: str
    host_email: str
    topic: str
    agenda: str
    type: int  # 8: recurring with a fixed time, what every course meeting is
    status: Literal["waiting", "started"]
    start_time: str
    duration: int
    timezone: str
    password: str
    join_url: str
    # The host's link with a fresh ZAK: used once to start the class, never stored.
    start_url: str
    registration_url: str
    created_at: str
    settings: MeetingSettings
    occurrences: list[Occurrence]
    recurrence: Recurrence


class MeetingSummary(TypedDict, total=False):
    """One meeting of ``GET /users/{userId}/meetings``: no settings, passcode or occurrences."""

    id: int
    uuid: str
    host_id: str
    topic: str
    agenda: str
    type: int
    start_time: str
    duration: int
    timezone: str
    join_url: str
    created_at: str


# -- registrants -----------------------------------------------------------------------------------


class Registrant(TypedDict, total=False):
    """A registrant as ``GET /meetings/{meetingId}/registrants[/{registrantId}]`` answers it."""

    id: str
    email: str
    first_name: str
    last_name: str
    status: RegistrantStatus
    join_url: str
    create_time: str


class AddedRegistrant(TypedDict, total=False):
    """Zoom's answer to ``POST /meetings/{meetingId}/registrants``."""

    id: int  # the meeting's id, not the registrant's
    registrant_id: str
    join_url: str
    topic: str
    start_time: str
    occurrences: list[Occurrence]


class RegistrantRef(TypedDict, total=False):
    """One registrant named in ``PUT /meetings/{meetingId}/registrants/status``."""

    id: str
    email: str


# -- cloud recordings ------------------------------------------------------------------------------


class RecordingFile(TypedDict, total=False):
    id: str
    meeting_id: str  # the meeting instance's uuid
    file_type: str  # MP4, M4A, CHAT, TRANSCRIPT, CSV, TB, CC, CHAT_MESSAGE, SUMMARY
    file_extension: str
    # "number" in the spec; a count of bytes in practice, and companion takes only whole ones.
    file_size: float
    recording_type: str
    recording_start: str
    recording_end: str
    download_url: str
    play_url: str
    status: Literal["completed"]
    deleted_time: str


class ParticipantAudioFile(TypedDict, total=False):
    id: str
    file_name: str
    file_type: str
    file_size: float
    recording_start: str
    recording_end: str
    download_url: str
    play_url: str
    status: Literal["completed"]


class MeetingRecordings(TypedDict, total=False):
    """One recorded meeting instance with its files: ``GET /meetings/{meetingId}/recordings``,
    and each item of ``GET /users/{userId}/recordings``."""

    uuid: str
    id: int
    account_id: str
    host_id: str
    topic: str
    type: str
    start_time: str
    duration: int
    total_size: int
    recording_count: int
    recording_files: list[RecordingFile]
    participant_audio_files: list[ParticipantAudioFile]
    # Only when asked for (``include_download_token``): a JWT that may download the files.
    download_access_token: str


# -- the operations --------------------------------------------------------------------------------


@runtime_checkable
class ZoomApi(Protocol):
    """The Zoom Meetings API operations companion uses; see :class:`~.client.ZoomClient` for
    what each sends, retries and raises (a :class:`~.errors.ZoomError` subclass)."""

    def create_meeting(self, user_id: str, body: Mapping[str, Any]) -> Meeting: ...

    def get_meeting(
        self,
        meeting_id: int | str,
        *,
        occurrence_id: str | None = None,
        show_previous_occurrences: bool = False,
    ) -> Meeting: ...

    def update_meeting(
        self, meeting_id: int | str, body: Mapping[str, Any], *, occurrence_id: str | None = None
    ) -> None: ...

    def delete_meeting(
        self,
        meeting_id: int | str,
        *,
        occurrence_id: str | None = None,
        schedule_for_reminder: bool = False,
        cancel_meeting_reminder: bool = False,
    ) -> None: ...

    def update_meeting_status(self, meeting_id: int | str, action: MeetingStatusAction) -> None: ...

    def iter_meetings(
        self, user_id: str, *, type: MeetingListType = "scheduled", page_size: int = ...
    ) -> Iterator[MeetingSummary]: ...

    def add_registrant(
        self,
        meeting_id: int | str,
        body: Mapping[str, Any],
        *,
        occurrence_ids: list[str] | None = None,
    ) -> AddedRegistrant: ...

    def get_registrant(self, meeting_id: int | str, registrant_id: str) -> Registrant: ...

    def iter_registrants(
        self,
        meeting_id: int | str,
        *,
        status: RegistrantStatus = "approved",
        page_size: int = ...,
        occurrence_id: str | None = None,
    ) -> Iterator[Registrant]: ...

    def update_registrant_status(
        self,
        meeting_id: int | str,
        action: RegistrantStatusAction,
        registrants: Sequence[RegistrantRef],
        *,
        occurrence_id: str | None = None,
    ) -> None: ...

    def delete_registrant(
        self, meeting_id: int | str, registrant_id: str, *, occurrence_id: str | None = None
    ) -> None: ...

    def get_meeting_recordings(
        self,
        meeting_id_or_uuid: int | str,
        *,
        include_download_token: bool = False,
        ttl: int | None = None,
    ) -> MeetingRecordings: ...

    def iter_user_recordings(
        self,
        user_id: str,
        *,
        from_date: dt.date,
        to_date: dt.date,
        page_size: int = ...,
    ) -> Iterator[MeetingRecordings]: ...

    def iter_trashed_recordings(
        self,
        user_id: str,
        *,
        meeting_id: int | None = None,
        trash_type: RecordingTrashType = ...,
        page_size: int = ...,
    ) -> Iterator[MeetingRecordings]: ...

    def recover_meeting_recordings(self, meeting_uuid: str) -> None: ...

    def delete_meeting_recordings(
        self, meeting_id_or_uuid: int | str, *, action: RecordingDeleteAction = "trash"
    ) -> None: ...

    def delete_recording_file(
        self,
        meeting_id_or_uuid: int | str,
        recording_id: str,
        *,
        action: RecordingDeleteAction = "trash",
    ) -> None: ...

    def open_download(
        self, url: str, *, download_token: str | None = None
    ) -> requests.Response: ...


__all__ = [
    "AddedRegistrant",
    "Meeting",
    "MeetingListType",
    "MeetingRecordings",
    "MeetingSettings",
    "MeetingStatusAction",
    "MeetingSummary",
    "Occurrence",
    "ParticipantAudioFile",
    "RecordingDeleteAction",
    "RecordingTrashType",
    "RecordingFile",
    "Recurrence",
    "Registrant",
    "RegistrantRef",
    "RegistrantStatus",
    "RegistrantStatusAction",
    "WaitingRoomOptions",
    "ZoomApi",
]
