"""The settings every course meeting must have, and the check that Zoom really applied them.

Zoom can quietly override what we ask for: an account or group lock, a meeting template, or a
person editing the meeting in Zoom's web portal. So nothing here is assumed: :func:`verify`
compares each enforced setting with the meeting Zoom returns and names every difference.

Passcodes never appear in a :class:`SafetyProblem`: problems are shown on pages, mailed and
written to the audit trail.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..zoom.api import Meeting

PASSCODE_LENGTH = 10  # Zoom's maximum
_ALPHABET = string.ascii_letters + string.digits
# Zoom accounts may require letters, digits and both cases, and refuse runs such as "1234" or
# "aaaa" (consecutive_characters_length is at least 4 when set). A generated passcode meets all.
_MAX_RUN = 3


def _has_run(text: str, limit: int = _MAX_RUN) -> bool:
    same = up = down = 1
    for prev, cur in zip(text, text[1:], strict=False):
        same = same + 1 if cur == prev else 1
        up = up + 1 if ord(cur) == ord(prev) + 1 else 1
        down = down + 1 if ord(cur) == ord(prev) - 1 else 1
        if max(same, up, down) > limit:
            return True
    return False


def is_valid_passcode(text: str) -> bool:
    return (
        len(text) == PASSCODE_LENGTH
        and all(c in _ALPHABET for c in text)
        and any(c.islower() for c in text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() for c in text)
        and not _has_run(text)
    )


def generate_passcode() -> str:
    """Ten random letters and digits from ``secrets`` meeting Zoom's strictest rules."""
    while True:
        candidate = "".join(secrets.choice(_ALPHABET) for _ in range(PASSCODE_LENGTH))
        if is_valid_passcode(candidate):
            return candidate


# The panel groups settings the way a teacher thinks about them.
GROUPS: dict[str, str] = {
    "waiting_room": "Waiting room",
    "passcode": "Passcode",
    "recording": "Recording",
    "registration": "Registration",
    "host": "Host controls",
    "schedule": "Schedule",
    "meeting": "Meeting",
}

LABELS: dict[str, tuple[str, str]] = {
    # setting -> (group, words)
    "waiting_room": ("waiting_room", "waiting room"),
    "waiting_room_options.mode": ("waiting_room", "waiting room mode"),
    "waiting_room_options.who_goes_to_waiting_room": (
        "waiting_room",
        "who goes to the waiting room",
    ),
    "password": ("passcode", "passcode"),
    "auto_recording": ("recording", "automatic recording"),
    "encryption_type": ("recording", "encryption type"),
    "approval_type": ("registration", "registration approval"),
    "registration_type": ("registration", "registration type"),
    "registrants_email_notification": ("registration", "Zoom's emails to registrants"),
    "registrants_confirmation_email": ("registration", "Zoom's confirmation emails"),
    "show_share_button": ("registration", "share buttons on the registration page"),
    "allow_multiple_devices": ("registration", "joining from several devices"),
    "join_before_host": ("host", "join before host"),
    "mute_upon_entry": ("host", "mute on entry"),
    "alternative_hosts": ("host", "alternative hosts"),
    "use_pmi": ("host", "personal meeting ID"),
    "type": ("meeting", "meeting type"),
    "meeting": ("meeting", "meeting"),
    "schedule": ("schedule", "schedule"),
}


def group_of(setting: str) -> str:
    return LABELS.get(setting, ("meeting", setting))[0]


def label_of(setting: str) -> str:
    return LABELS.get(setting, ("meeting", setting.replace("_", " ")))[1]


@dataclass(frozen=True)
class SafetyProblem:
    setting: str
    expected: Any
    actual: Any

    def describe(self) -> str:
        if self.setting == "password":
            return f"passcode: {self.actual}"
        if self.setting in ("schedule", "meeting"):
            return f"{label_of(self.setting)}: {self.actual}"
        label = label_of(self.setting)
        return f"{label} is {_show(self.actual)} in Zoom (must be {_show(self.expected)})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SafetyProblem:
        return cls(str(data.get("setting", "")), data.get("expected"), data.get("actual"))


def _show(value: Any) -> str:
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None or value == "":
        return "not set"
    return str(value)


@dataclass(frozen=True)
class Expected:
    """What a course meeting must look like in Zoom."""

    passcode: str
    alternative_hosts: tuple[str, ...] = ()


def meeting_settings(expected: Expected) -> dict[str, Any]:
    """The ``settings`` object sent on every create and every repair."""
    return {
        "waiting_room": True,
        "waiting_room_options": {"mode": "custom", "who_goes_to_waiting_room": "everyone"},
        "join_before_host": False,
        "jbh_time": 0,
        "mute_upon_entry": True,
        "auto_recording": "cloud",
        # Registration with approval kept by companion: finding the registration page gives
        # nobody a link; companion approves each family it enrolled.
        "approval_type": 1,
        "registration_type": 1,
        "registrants_email_notification": False,
        "registrants_confirmation_email": False,
        "show_share_button": False,
        "allow_multiple_devices": False,
        "alternative_hosts": ";".join(expected.alternative_hosts),
        "alternative_hosts_email_notification": bool(expected.alternative_hosts),
        # End-to-end encryption turns cloud recording off.
        "encryption_type": "enhanced_encryption",
        "use_pmi": False,
        "host_video": True,
        "participant_video": False,
    }


# Enforced settings compared after every write: (path in ``settings``, expected-from function).
_BOOL_OR_VALUE: dict[str, Any] = {
    "waiting_room": True,
    "waiting_room_options.mode": "custom",
    "waiting_room_options.who_goes_to_waiting_room": "everyone",
    "join_before_host": False,
    "mute_upon_entry": True,
    "auto_recording": "cloud",
    "approval_type": 1,
    "registration_type": 1,
    "registrants_email_notification": False,
    "registrants_confirmation_email": False,
    "show_share_button": False,
    "allow_multiple_devices": False,
    "encryption_type": "enhanced_encryption",
    "use_pmi": False,
}
# What Zoom documents as the value of a setting it leaves out of its answer. A missing setting
# counts as that default; a setting without a documented default must be present.
ZOOM_DEFAULTS: dict[str, Any] = {
    "join_before_host": False,
    "mute_upon_entry": False,
    "auto_recording": "none",
    "approval_type": 2,
    "registration_type": 1,
    "use_pmi": False,
}
_MISSING = object()


def _lookup(settings: Mapping[str, Any], path: str) -> Any:
    node: Any = settings
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def split_hosts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    parts = value.replace(",", ";").split(";")
    return tuple(sorted({p.strip().lower() for p in parts if p.strip()}))


def verify(meeting: Meeting, expected: Expected) -> list[SafetyProblem]:
    """Every enforced setting that Zoom did not apply; an empty list means the meeting is safe."""
    problems: list[SafetyProblem] = []
    if meeting.get("type") != 8:
        problems.append(SafetyProblem("type", 8, meeting.get("type")))
    settings = meeting.get("settings")
    if not isinstance(settings, Mapping):
        settings = {}
    for path, want in _BOOL_OR_VALUE.items():
        got = _lookup(settings, path)
        if got is _MISSING:
            got = ZOOM_DEFAULTS.get(path)
        if got != want or type(got) is not type(want):
            problems.append(SafetyProblem(path, want, got))
    want_hosts = tuple(sorted(h.lower() for h in expected.alternative_hosts))
    got_hosts = split_hosts(settings.get("alternative_hosts", ""))
    if got_hosts != want_hosts:
        problems.append(
            SafetyProblem("alternative_hosts", ";".join(want_hosts), ";".join(got_hosts))
        )
    password = meeting.get("password")
    if not isinstance(password, str) or not password:
        problems.append(SafetyProblem("password", "set", "there is no passcode"))
    elif password != expected.passcode:
        problems.append(SafetyProblem("password", "set", "Zoom has a different passcode"))
    return problems


def groups_status(problems: Iterable[SafetyProblem]) -> dict[str, list[SafetyProblem]]:
    """Problems per panel group; a group with an empty list is fine."""
    out: dict[str, list[SafetyProblem]] = {key: [] for key in GROUPS}
    for problem in problems:
        out[group_of(problem.setting)].append(problem)
    return out


def repair_body(expected: Expected) -> dict[str, Any]:
    """One PATCH that puts every enforced setting (and the passcode) back."""
    return {"password": expected.passcode, "settings": meeting_settings(expected)}
