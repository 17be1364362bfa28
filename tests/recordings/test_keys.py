"""Key-encryption keys: configuration, the keyring, rotation by re-wrapping, check values."""

from __future__ import annotations

import base64
import os
import re
import uuid
from pathlib import Path

import pytest

from companion import config as config_module
from companion.config import ConfigError
from companion.recordings import crypto, keys
from companion.recordings.crypto import CorruptedOrTampered

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
LINE_A = "kek-a:" + base64.b64encode(KEY_A).decode()
LINE_B = "kek-b:" + base64.b64encode(KEY_B).decode()
FILE_ID = uuid.UUID("6a1c2f5e-3b7d-4e2a-9c4f-0123456789ab")
DEK = bytes(range(200, 232))


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return "\n".join(exc.value.problems)


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "kek"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


# -- Loading ---------------------------------------------------------------------------------


def test_inline_keys_first_is_primary() -> None:
    ring = keys.load_keyring({"KEK": f"{LINE_B}, {LINE_A}", "KEK_FILE": ""})
    assert ring.primary_id == "kek-b"
    assert ring.ids == ("kek-b", "kek-a")
    assert ring.get("kek-a") == KEY_A


def test_key_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"# rotated 2025-01-01\n{LINE_A}\n\n  {LINE_B}  \n")
    ring = keys.load_keyring({"KEK": "", "KEK_FILE": str(path)})
    assert ring.ids == ("kek-a", "kek-b")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o666])
def test_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, LINE_A, mode)
    with pytest.raises(ConfigError) as info:
        keys.load_keyring({"KEK_FILE": str(path)})
    assert f"mode {mode:04o}" in problems(info)
    assert f"chmod 600 {path}" in problems(info)


def test_key_file_missing_or_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        keys.load_keyring({"KEK_FILE": str(tmp_path / "absent")})
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        keys.load_keyring({"KEK_FILE": str(folder)})


def test_empty_key_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, "# nothing yet\n")
    with pytest.raises(ConfigError, match="holds no key-encryption key"):
        keys.load_keyring({"KEK_FILE": str(path)})


def test_nothing_configured() -> None:
    with pytest.raises(ConfigError) as info:
        keys.load_keyring({"KEK": "", "KEK_FILE": ""})
    assert "set COMPANION_KEK or COMPANION_KEK_FILE" in problems(info)


def test_both_configured(tmp_path: Path) -> None:
    path = key_file(tmp_path, LINE_A)
    with pytest.raises(ConfigError, match="not both"):
        keys.load_keyring({"KEK": LINE_B, "KEK_FILE": str(path)})


SECRET_LOOKING = base64.b64encode(b"S" * 16).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("kek-a", "not of the form kek_id:base64key"),
        ("bad id:" + base64.b64encode(KEY_A).decode(), "key id"),
        (":" + base64.b64encode(KEY_A).decode(), "key id"),
        ("kek-a:not base64!", "not valid base64"),
        ("kek-a:" + SECRET_LOOKING, "must be 32 bytes, it is 16"),
        ("kek-a:" + base64.b64encode(bytes(33)).decode(), "must be 32 bytes, it is 33"),
        (f"{LINE_A},{LINE_A}", "appears more than once"),
        (f"{LINE_A},kek-a:" + base64.b64encode(KEY_B).decode(), "appears more than once"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        keys.load_keyring({"KEK": value})
    text = problems(info)
    assert message in text
    assert SECRET_LOOKING not in text
    assert base64.b64encode(KEY_A).decode() not in text


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        keys.load_keyring({"KEK": "kek-a:xx,kek-b:" + SECRET_LOOKING})
    assert len(info.value.problems) == 2
    assert "entry 1 ('kek-a')" in info.value.problems[0]
    assert "entry 2 ('kek-b')" in info.value.problems[1]


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "COMPANION_SECRET_KEY": "x" * 40,
        "COMPANION_KEK": LINE_A,
    }
    settings = config_module.load(tmp_path, environ=environ)
    assert settings["KEK_FILE"] == ""
    assert keys.load_keyring(settings).primary_id == "kek-a"
    assert config_module.SETTINGS_BY_NAME["KEK"].secret


# -- Generating ------------------------------------------------------------------------------


def test_generated_lines_load_and_differ() -> None:
    first, second = keys.generate_kek_line(), keys.generate_kek_line()
    assert first != second
    assert re.fullmatch(r"kek-\d{8}-[0-9a-f]{6}:[A-Za-z0-9+/]{43}=", first)
    ring = keys.load_keyring({"KEK": f"{first},{second}"})
    assert len(ring) == 2
    assert keys.generate_kek_line("kek-2").startswith("kek-2:")
    with pytest.raises(ValueError):
        keys.generate_kek_line("no spaces")


# -- Keyring ---------------------------------------------------------------------------------


def test_wrap_with_primary_and_unwrap_by_id() -> None:
    ring = keys.Keyring([("kek-a", KEY_A)])
    stored = ring.wrap(FILE_ID, DEK)
    assert stored.kek_id == "kek-a"
    assert len(stored.wrapped) == crypto.WRAPPED_SIZE
    assert ring.unwrap(stored.kek_id, FILE_ID, stored.wrapped) == DEK
    with pytest.raises(CorruptedOrTampered):
        ring.unwrap(stored.kek_id, uuid.uuid4(), stored.wrapped)


def test_rotation_rewraps_without_touching_the_file_key() -> None:
    old = keys.Keyring([("kek-a", KEY_A)])
    stored = old.wrap(FILE_ID, DEK)
    new = old.rotate_in("kek-b", KEY_B)
    assert new.primary_id == "kek-b" and new.ids == ("kek-b", "kek-a")
    assert old.ids == ("kek-a",)  # keyrings do not change under their users
    rewrapped = new.rewrap(stored.kek_id, FILE_ID, stored.wrapped)
    assert rewrapped.kek_id == "kek-b"
    retired = new.retire("kek-a")
    assert retired.unwrap(rewrapped.kek_id, FILE_ID, rewrapped.wrapped) == DEK
    with pytest.raises(keys.UnknownKek) as info:
        retired.unwrap(stored.kek_id, FILE_ID, stored.wrapped)
    assert "'kek-a' is not configured" in str(info.value)
    with pytest.raises(ValueError, match="rotate first"):
        retired.retire("kek-b")
    with pytest.raises(keys.UnknownKek):
        new.retire("kek-z")


def test_keyring_rules() -> None:
    with pytest.raises(ValueError, match="at least one"):
        keys.Keyring([])
    with pytest.raises(ValueError, match="twice"):
        keys.Keyring([("a", KEY_A), ("a", KEY_B)])
    with pytest.raises(ValueError, match="32 bytes"):
        keys.Keyring([("a", b"short")])
    ring = keys.Keyring([("a", KEY_A), ("b", KEY_B)])
    assert "a" in ring and "c" not in ring and list(ring) == ["a", "b"]
    assert KEY_A.hex() not in repr(ring) and "Keyring(primary='a'" in repr(ring)
    assert keys.load_keyring({"KEK": ",".join(ring.to_lines())}).get("b") == KEY_B


# -- Check values ----------------------------------------------------------------------------


def test_check_value_is_stable_distinct_and_not_the_key() -> None:
    check = keys.kek_check_value(KEY_A)
    assert re.fullmatch(r"[0-9a-f]{32}", check)
    assert keys.kek_check_value(KEY_A) == check
    assert keys.kek_check_value(KEY_B) != check
    assert KEY_A.hex()[:32] != check
    with pytest.raises(ValueError):
        keys.kek_check_value(b"short")


def test_verify_keyring_accepts_the_right_keys() -> None:
    ring = keys.Keyring([("kek-b", KEY_B), ("kek-a", KEY_A)])
    keys.verify_keyring(ring, {"kek-a": keys.kek_check_value(KEY_A)})
    keys.verify_keyring(ring, {})


def test_verify_keyring_refuses_a_wrong_or_missing_key() -> None:
    ring = keys.Keyring([("kek-a", KEY_B)])  # the id is right, the key is not
    with pytest.raises(ConfigError) as info:
        keys.verify_keyring(
            ring,
            {"kek-a": keys.kek_check_value(KEY_A), "kek-old": keys.kek_check_value(KEY_B)},
        )
    text = problems(info)
    assert "'kek-a' is not the one that wrapped the stored file keys" in text
    assert "'kek-old', which is not configured" in text


def test_key_file_is_read_through_the_open_descriptor(tmp_path: Path) -> None:
    path = key_file(tmp_path, LINE_A)
    assert keys.read_kek_file(path) == [LINE_A]
    os.chmod(path, 0o400)
    assert keys.read_kek_file(path) == [LINE_A]
