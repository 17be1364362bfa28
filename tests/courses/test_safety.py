"""The enforced settings and the comparison with what Zoom applied."""

from __future__ import annotations

import copy

import pytest

from companion.courses import safety


def safe_meeting(expected: safety.Expected) -> dict:
    return {
        "type": 8,
        "password": expected.passcode,
        "settings": copy.deepcopy(safety.meeting_settings(expected)),
    }


EXPECTED = safety.Expected(passcode="Ab3dE5gH7k", alternative_hosts=("lead@example.org",))


def test_generated_passcodes_meet_zooms_rules():
    seen = set()
    for _ in range(300):
        code = safety.generate_passcode()
        assert len(code) == 10
        assert code.isalnum() and code.isascii()
        assert any(c.isupper() for c in code) and any(c.islower() for c in code)
        assert any(c.isdigit() for c in code)
        assert safety.is_valid_passcode(code)
        seen.add(code)
    assert len(seen) == 300


@pytest.mark.parametrize(
    "bad", ["abcd123XYZ", "aaaa1bcDEF", "Ab3dE5gH7", "Ab3dE5gH7k!", "ab3de5gh7k"]
)
def test_passcodes_with_runs_or_missing_classes_are_not_valid(bad):
    assert not safety.is_valid_passcode(bad)


def test_the_enforced_settings():
    s = safety.meeting_settings(EXPECTED)
    assert s["waiting_room"] is True
    assert s["waiting_room_options"] == {"mode": "custom", "who_goes_to_waiting_room": "everyone"}
    assert s["join_before_host"] is False
    assert s["mute_upon_entry"] is True
    assert s["auto_recording"] == "cloud"
    assert s["approval_type"] == 1 and s["registration_type"] == 1
    assert s["registrants_email_notification"] is False
    assert s["registrants_confirmation_email"] is False
    assert s["show_share_button"] is False and s["allow_multiple_devices"] is False
    assert s["alternative_hosts"] == "lead@example.org"
    assert s["encryption_type"] == "enhanced_encryption"  # e2ee would turn cloud recording off
    assert s["use_pmi"] is False
    assert safety.meeting_settings(safety.Expected("x"))["alternative_hosts"] == ""


def test_a_meeting_as_asked_for_is_safe():
    assert safety.verify(safe_meeting(EXPECTED), EXPECTED) == []


@pytest.mark.parametrize(
    ("path", "value", "group"),
    [
        ("waiting_room", False, "waiting_room"),
        ("waiting_room_options.mode", "follow_setting", "waiting_room"),
        ("waiting_room_options.who_goes_to_waiting_room", "users_not_in_account", "waiting_room"),
        ("join_before_host", True, "host"),
        ("mute_upon_entry", False, "host"),
        ("auto_recording", "local", "recording"),
        ("encryption_type", "e2ee", "recording"),
        ("approval_type", 0, "registration"),
        ("approval_type", 2, "registration"),
        ("registration_type", 2, "registration"),
        ("registrants_email_notification", True, "registration"),
        ("registrants_confirmation_email", True, "registration"),
        ("show_share_button", True, "registration"),
        ("allow_multiple_devices", True, "registration"),
        ("use_pmi", True, "host"),
    ],
)
def test_each_setting_zoom_did_not_apply_is_named(path, value, group):
    meeting = safe_meeting(EXPECTED)
    node = meeting["settings"]
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    problems = safety.verify(meeting, EXPECTED)
    assert [p.setting for p in problems] == [path]
    assert safety.group_of(path) == group
    assert "in Zoom (must be" in problems[0].describe()


def test_missing_settings_count_as_zooms_defaults():
    meeting = safe_meeting(EXPECTED)
    del meeting["settings"]["join_before_host"]  # Zoom's default is off: fine
    del meeting["settings"]["auto_recording"]  # Zoom's default is none: not fine
    del meeting["settings"]["waiting_room"]  # no documented default: must be present
    problems = {p.setting: p for p in safety.verify(meeting, EXPECTED)}
    assert set(problems) == {"auto_recording", "waiting_room"}
    assert problems["auto_recording"].actual == "none"
    assert problems["waiting_room"].describe() == "waiting room is not set in Zoom (must be on)"


def test_alternative_hosts_must_be_exactly_the_lead():
    meeting = safe_meeting(EXPECTED)
    meeting["settings"]["alternative_hosts"] = "Lead@Example.org; stranger@example.com"
    (problem,) = safety.verify(meeting, EXPECTED)
    assert problem.setting == "alternative_hosts"
    assert "stranger@example.com" in problem.describe()
    meeting["settings"]["alternative_hosts"] = "LEAD@example.org"
    assert safety.verify(meeting, EXPECTED) == []


def test_passcode_problems_never_show_a_passcode():
    meeting = safe_meeting(EXPECTED)
    meeting["password"] = "Other12345"
    (problem,) = safety.verify(meeting, EXPECTED)
    text = f"{problem.describe()} {problem.as_dict()}"
    assert "Other12345" not in text and EXPECTED.passcode not in text
    assert problem.describe() == "passcode: Zoom has a different passcode"
    meeting["password"] = ""
    (problem,) = safety.verify(meeting, EXPECTED)
    assert problem.describe() == "passcode: there is no passcode"


def test_a_meeting_of_another_type_is_not_a_course_meeting():
    meeting = safe_meeting(EXPECTED)
    meeting["type"] = 3
    assert [p.setting for p in safety.verify(meeting, EXPECTED)] == ["type"]
