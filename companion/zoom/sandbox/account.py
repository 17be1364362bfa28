"""The account: its one host user, the meeting settings it starts with, and its locked settings.

Models the user lookups of Zoom's API (``/users/{userId}``: ``me``, the user id or the email)
and the account-level lock of a setting in Zoom's web portal, which wins over what a meeting asks
for, together with Zoom's own interactions between meeting settings (documented with the
``settings`` of ``meetingCreate`` in Zoom's Meetings spec, ``tests/zoom_spec``).
"""

from __future__ import annotations

import copy
from typing import Any

from .base import SandboxBase, atomic, deep_merge, set_dotted
from .errors import bad_request, user_not_found

HOST_USER_ID = "sAnDb0xH0stUser000001Q"
HOST_EMAIL = "host@zoom-sandbox.invalid"
HOST_TIMEZONE = "UTC"

# A new sandbox account's meeting defaults. The safety settings start OFF so that companion has
# to ask for each of them (and its verification notices when it did not).
DEFAULT_SETTINGS: dict[str, Any] = {
    "host_video": False,
    "participant_video": False,
    "cn_meeting": False,
    "in_meeting": False,
    "join_before_host": False,
    "jbh_time": 0,
    "mute_upon_entry": False,
    "watermark": False,
    "use_pmi": False,
    "approval_type": 2,
    "audio": "voip",
    "auto_recording": "none",
    "enforce_login": False,
    "enforce_login_domains": "",
    "alternative_hosts": "",
    "alternative_hosts_email_notification": True,
    "alternative_host_update_polls": False,
    "close_registration": False,
    "show_share_button": False,
    "allow_multiple_devices": False,
    "registrants_confirmation_email": True,
    "registrants_email_notification": True,
    "waiting_room": False,
    "waiting_room_options": {"mode": "follow_setting"},
    "meeting_authentication": False,
    "encryption_type": "enhanced_encryption",
    "approved_or_denied_countries_or_regions": {"enable": False},
    "breakout_room": {"enable": False},
    "internal_meeting": False,
    "continuous_meeting_chat": {
        "enable": False,
        "auto_add_invited_external_users": False,
        "auto_add_meeting_participants": False,
    },
    "participant_focused_meeting": False,
    "push_change_to_calendar": False,
    "resources": [],
    "device_testing": False,
    "focus_mode": False,
    "meeting_invitees": [],
    "private_meeting": False,
    "email_notification": True,
    "host_save_video_order": False,
    "sign_language_interpretation": {"enable": False},
    "language_interpretation": {"enable": False},
    "email_in_attendee_report": False,
    "auto_start_meeting_summary": False,
    "auto_start_ai_companion_questions": False,
    "allow_host_control_participant_mute_state": False,
    "disable_participant_video": False,
}


class Account(SandboxBase):
    """The host user and the account's settings (a part of :class:`~.core.Sandbox`)."""

    # --- users --------------------------------------------------------------------------------

    def check_user(self, user_id: str) -> None:
        if user_id not in ("me", HOST_USER_ID, HOST_EMAIL):
            raise user_not_found(user_id)

    # --- account-level locks (admin) ----------------------------------------------------------

    def locks(self) -> dict[str, Any]:
        return dict(self.store.get_meta("locks", {}))

    @atomic
    def set_locks(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Lock account-level settings: Zoom then applies these values whatever is asked.

        Keys are setting names, dotted for nested ones (``waiting_room_options.mode``); a null
        value removes that lock.
        """
        if not isinstance(changes, dict):
            raise bad_request("Locks must be a JSON object of setting: value.")
        locks = self.locks()
        for key, value in changes.items():
            if value is None:
                locks.pop(key, None)
            else:
                locks[key] = value
        self.store.set_meta("locks", locks)
        return locks

    def clear_locks(self) -> None:
        self.store.set_meta("locks", {})

    # --- meeting settings as Zoom applies them ---------------------------------------------

    def _apply_rules(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Zoom's own interactions between settings, then the account's locks."""
        result = copy.deepcopy(settings)
        for key, value in self.locks().items():
            set_dotted(result, key, value)
        if result.get("waiting_room"):
            # "If this value is true, this disables the join_before_host setting."
            result["join_before_host"] = False
        if result.get("encryption_type") == "e2ee" and result.get("auto_recording") == "cloud":
            # End-to-end encryption disables cloud recording.
            result["auto_recording"] = "none"
        return result

    def _effective_settings(
        self, doc: dict[str, Any], occurrence: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        settings = doc["settings"]
        if occurrence and occurrence.get("settings"):
            settings = deep_merge(settings, occurrence["settings"])
        effective = self._apply_rules(settings)
        if doc["type"] != 8:
            effective.pop("registration_type", None)
        return effective
