"""Request-body rules of the meeting and registrant endpoints, as Zoom enforces them.

Limits come from Zoom's OpenAPI spec (topic <= 200, agenda <= 2000, duration 1..1440, passcode
<= 10 characters of letters, digits and ``@ - _ *``, end_times <= 60, repeat_interval per
recurrence type, weekly_days "1".."7" comma-separated, registrant name <= 64 and email <= 128).
Unknown fields are ignored, as Zoom ignores them; known fields must have the right JSON type.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from . import schedule
from .errors import bad_request, validation_failed

PASSWORD_RE = re.compile(r"^[A-Za-z0-9@_*\-]{1,10}$")
WEEKLY_DAYS_RE = re.compile(r"^[1-7](,[1-7])*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SUPPORTED_TYPES = (2, 8)

BOOL_SETTINGS = {
    "host_video",
    "participant_video",
    "cn_meeting",
    "in_meeting",
    "join_before_host",
    "mute_upon_entry",
    "watermark",
    "use_pmi",
    "registrants_confirmation_email",
    "registrants_email_notification",
    "waiting_room",
    "close_registration",
    "show_share_button",
    "allow_multiple_devices",
    "alternative_hosts_email_notification",
    "alternative_host_update_polls",
    "alternative_host_manage_meeting_summary",
    "alternative_host_manage_cloud_recording",
    "meeting_authentication",
    "enforce_login",
    "focus_mode",
    "private_meeting",
    "email_notification",
    "host_save_video_order",
    "internal_meeting",
    "participant_focused_meeting",
    "push_change_to_calendar",
    "auto_start_meeting_summary",
    "auto_start_ai_companion_questions",
    "device_testing",
    "allow_host_control_participant_mute_state",
    "disable_participant_video",
    "email_in_attendee_report",
    "request_permission_to_unmute_participants",
}
ENUM_SETTINGS: dict[str, tuple[Any, ...]] = {
    "approval_type": (0, 1, 2),
    "registration_type": (1, 2, 3),
    "audio": ("both", "telephony", "voip", "thirdParty"),
    "auto_recording": ("local", "cloud", "none"),
    "encryption_type": ("enhanced_encryption", "e2ee"),
    "jbh_time": (0, 5, 10, 15),
    "calendar_type": (1, 2),
    "who_will_receive_summary": (1, 2, 3, 4),
    "who_can_ask_questions": (1, 2, 3, 4, 5),
}
STRING_SETTINGS = {
    "alternative_hosts": 1024,
    "authentication_option": 256,
    "authentication_domains": 1024,
    "authentication_name": 256,
    "contact_name": 256,
    "contact_email": 256,
    "enforce_login_domains": 1024,
    "audio_conference_info": 2048,
    "summary_template_id": 256,
}
OBJECT_SETTINGS = {
    "waiting_room_options",
    "continuous_meeting_chat",
    "approved_or_denied_countries_or_regions",
    "breakout_room",
    "language_interpretation",
    "sign_language_interpretation",
    "question_and_answer",
    "auto_add_recording_to_video_management",
}
LIST_SETTINGS = {
    "meeting_invitees",
    "authentication_exception",
    "global_dial_in_countries",
    "additional_data_center_regions",
    "custom_keys",
    "resources",
}
WAITING_ROOM_MODES = ("follow_setting", "custom")
WHO_GOES_TO_WAITING_ROOM = (
    "everyone",
    "users_not_in_account",
    "users_not_in_account_or_whitelisted_domains",
    "users_not_on_invite",
)
# The only settings Zoom lets one occurrence change (PATCH ...?occurrence_id=).
OCCURRENCE_SETTINGS = {
    "host_video",
    "participant_video",
    "join_before_host",
    "mute_upon_entry",
    "waiting_room",
    "watermark",
    "auto_recording",
}
LANGUAGES = (
    "en-US",
    "de-DE",
    "es-ES",
    "fr-FR",
    "jp-JP",
    "pt-PT",
    "ru-RU",
    "zh-CN",
    "zh-TW",
    "ko-KO",
    "it-IT",
    "vi-VN",
    "pl-PL",
    "Tr-TR",
)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_string(
    errors: list[tuple[str, str]], field: str, value: Any, max_length: int | None
) -> None:
    if not isinstance(value, str):
        errors.append((field, "Invalid field: must be a string."))
    elif max_length is not None and len(value) > max_length:
        errors.append((field, f"Invalid field: must be at most {max_length} characters."))


def check_settings(settings: Any, errors: list[tuple[str, str]], prefix: str = "settings") -> None:
    if not isinstance(settings, dict):
        errors.append((prefix, "Invalid field: must be an object."))
        return
    for key, value in settings.items():
        field = f"{prefix}.{key}"
        if key in BOOL_SETTINGS and not isinstance(value, bool):
            errors.append((field, "Invalid field: must be true or false."))
        elif key in ENUM_SETTINGS:
            allowed = ENUM_SETTINGS[key]
            wrong_type = isinstance(value, bool) or (_is_int(allowed[0]) and not _is_int(value))
            if wrong_type or value not in allowed:
                choices = ", ".join(str(a) for a in allowed)
                errors.append((field, f"Invalid field: must be one of {choices}."))
        elif key in STRING_SETTINGS:
            _check_string(errors, field, value, STRING_SETTINGS[key])
        elif key in OBJECT_SETTINGS and not isinstance(value, dict):
            errors.append((field, "Invalid field: must be an object."))
        elif key in LIST_SETTINGS and not isinstance(value, list):
            errors.append((field, "Invalid field: must be an array."))
    options = settings.get("waiting_room_options")
    if isinstance(options, dict):
        mode = options.get("mode")
        if mode not in WAITING_ROOM_MODES:
            errors.append(
                (f"{prefix}.waiting_room_options.mode", "Invalid field: follow_setting or custom.")
            )
        who = options.get("who_goes_to_waiting_room")
        if mode == "custom" and who not in WHO_GOES_TO_WAITING_ROOM:
            errors.append(
                (
                    f"{prefix}.waiting_room_options.who_goes_to_waiting_room",
                    "Required with mode custom: " + ", ".join(WHO_GOES_TO_WAITING_ROOM) + ".",
                )
            )
    chat = settings.get("continuous_meeting_chat")
    if isinstance(chat, dict) and "enable" in chat and not isinstance(chat["enable"], bool):
        errors.append((f"{prefix}.continuous_meeting_chat.enable", "Invalid field."))
    regions = settings.get("approved_or_denied_countries_or_regions")
    if isinstance(regions, dict) and regions.get("method") not in (None, "approve", "deny"):
        errors.append((f"{prefix}.approved_or_denied_countries_or_regions.method", "Invalid."))


def check_recurrence(recurrence: Any, errors: list[tuple[str, str]]) -> None:
    if not isinstance(recurrence, dict):
        errors.append(("recurrence", "Invalid field: must be an object."))
        return
    kind = recurrence.get("type")
    if not _is_int(kind) or kind not in (1, 2, 3):
        errors.append(("recurrence.type", "Invalid field: 1 (daily), 2 (weekly) or 3 (monthly)."))
        return
    interval = recurrence.get("repeat_interval", 1)
    if interval is not None:
        limit = schedule.MAX_INTERVAL[kind]
        if not _is_int(interval) or not 1 <= interval <= limit:
            errors.append(
                ("recurrence.repeat_interval", f"Invalid field: must be between 1 and {limit}.")
            )
    if kind == 2:
        days = recurrence.get("weekly_days")
        if days is None:
            errors.append(("recurrence.weekly_days", "Required for a weekly recurrence."))
        elif not isinstance(days, str) or not WEEKLY_DAYS_RE.match(days):
            errors.append(
                (
                    "recurrence.weekly_days",
                    "Invalid field: days 1 (Sunday) to 7 (Saturday), comma-separated, e.g. 2,4.",
                )
            )
    if kind == 3:
        day = recurrence.get("monthly_day")
        week = recurrence.get("monthly_week")
        week_day = recurrence.get("monthly_week_day")
        if week is not None or week_day is not None:
            if not _is_int(week) or week not in (-1, 1, 2, 3, 4):
                errors.append(("recurrence.monthly_week", "Invalid field: -1, 1, 2, 3 or 4."))
            if not _is_int(week_day) or not 1 <= week_day <= 7:
                errors.append(("recurrence.monthly_week_day", "Invalid field: 1 to 7."))
        elif day is None:
            errors.append(("recurrence.monthly_day", "Required: monthly_day or monthly_week."))
        elif not _is_int(day) or not 1 <= day <= 31:
            errors.append(("recurrence.monthly_day", "Invalid field: 1 to 31."))
    end_times = recurrence.get("end_times")
    end_date = recurrence.get("end_date_time")
    if end_times is not None and end_date is not None:
        errors.append(("recurrence.end_date_time", "end_date_time cannot be used with end_times."))
    if end_times is not None and (
        not _is_int(end_times) or not 1 <= end_times <= schedule.MAX_OCCURRENCES
    ):
        errors.append(
            (
                "recurrence.end_times",
                f"Invalid field: must be between 1 and {schedule.MAX_OCCURRENCES}.",
            )
        )
    if end_date is not None:
        if not isinstance(end_date, str):
            errors.append(("recurrence.end_date_time", "Invalid field: must be a string."))
        else:
            try:
                schedule.parse_utc(end_date, "recurrence.end_date_time")
            except schedule.ScheduleError as exc:
                errors.append((exc.field, exc.message))


def check_meeting(body: Any, *, creating: bool) -> list[tuple[str, str]]:
    """Field errors of a create (``creating``) or whole-series update body."""
    if not isinstance(body, dict):
        raise bad_request("Request Body should be a valid JSON object.")
    errors: list[tuple[str, str]] = []
    if "topic" in body:
        _check_string(errors, "topic", body["topic"], 200)
    if "agenda" in body:
        _check_string(errors, "agenda", body["agenda"], 2000)
    if "type" in body:
        kind = body["type"]
        if not _is_int(kind) or kind not in (1, 2, 3, 8, 10):
            errors.append(("type", "Invalid field: 1, 2, 3, 8 or 10."))
        elif kind not in SUPPORTED_TYPES:
            raise bad_request(
                f"The companion Zoom sandbox serves meeting types 2 and 8 only, not {kind}."
            )
    if "duration" in body:
        duration = body["duration"]
        if not _is_int(duration) or not 1 <= duration <= 1440:
            errors.append(("duration", "Invalid field: must be between 1 and 1440 minutes."))
    if "password" in body:
        password = body["password"]
        if not isinstance(password, str) or not PASSWORD_RE.match(password):
            errors.append(
                (
                    "password",
                    "Invalid field: a passcode has at most 10 characters, only letters, digits "
                    "and @ - _ *.",
                )
            )
    if "default_password" in body and not isinstance(body["default_password"], bool):
        errors.append(("default_password", "Invalid field: must be true or false."))
    if "timezone" in body:
        _check_string(errors, "timezone", body["timezone"], 64)
    if "start_time" in body:
        _check_string(errors, "start_time", body["start_time"], 64)
    if "schedule_for" in body:
        _check_string(errors, "schedule_for", body["schedule_for"], 256)
    if body.get("recurrence") is not None:
        check_recurrence(body["recurrence"], errors)
    if "settings" in body:
        check_settings(body["settings"], errors)
    return errors


def check_occurrence_update(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict):
        raise bad_request("Request Body should be a valid JSON object.")
    errors: list[tuple[str, str]] = []
    if "agenda" in body:
        _check_string(errors, "agenda", body["agenda"], 2000)
    if "duration" in body:
        duration = body["duration"]
        if not _is_int(duration) or not 1 <= duration <= 1440:
            errors.append(("duration", "Invalid field: must be between 1 and 1440 minutes."))
    if "start_time" in body:
        _check_string(errors, "start_time", body["start_time"], 64)
    if "settings" in body:
        check_settings(body["settings"], errors)
    return errors


def check_registrant(body: Any) -> None:
    if not isinstance(body, dict):
        raise bad_request("Request Body should be a valid JSON object.")
    errors: list[tuple[str, str]] = []
    email = body.get("email")
    if email is None:
        errors.append(("email", "Required field."))
    elif not isinstance(email, str) or len(email) > 128 or not EMAIL_RE.match(email):
        errors.append(("email", "Invalid field: an email address of at most 128 characters."))
    first = body.get("first_name")
    if first is None or first == "":
        errors.append(("first_name", "Required field."))
    else:
        _check_string(errors, "first_name", first, 64)
    if "last_name" in body and body["last_name"] is not None:
        _check_string(errors, "last_name", body["last_name"], 64)
    if "auto_approve" in body and not isinstance(body["auto_approve"], bool):
        errors.append(("auto_approve", "Invalid field: must be true or false."))
    if "language" in body and body["language"] not in LANGUAGES:
        errors.append(("language", "Invalid field."))
    questions = body.get("custom_questions")
    if questions is not None and not isinstance(questions, list):
        errors.append(("custom_questions", "Invalid field: must be an array."))
    if errors:
        raise validation_failed(errors)
