"""The backup keys: a key set of their own (``COMPANION_BACKUP_KEYS`` / ``_FILE``), apart from the
recordings' key-encryption keys and the data-sealing keys, so that whoever holds the archives and
this key reads the database and nothing else, and a leaked recordings key opens no archive.

The first key line makes new archives; the others are kept only to read older archives, which
name the key id that made them. Rotating is adding a new line first (``companion keys rotate
--kind backup``); an old line may be retired once no archive made under it is still wanted.
"""

from __future__ import annotations

import hmac
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import keysets
from ..config import ENV_PREFIX
from ..keysets import KeyKind, KeySet

BACKUP = KeyKind(
    "backup",
    "BACKUP_KEYS",
    "backup key",
    "backup",
    "backup-keys",
    "# companion: backup keys, one `key_id:base64key` per line. The first line encrypts new\n"
    "# backups; the others only read older ones. Without the key that made an archive, the\n"
    "# archive cannot be read: keep a copy of this file apart from the backups and the database.\n"
    "# Readable only by its user (mode 0600).\n",
)

_CHECK_LABEL = b"companion-backup-key-check/v1"


def configured(config: Mapping[str, Any]) -> bool:
    return bool(keysets.inline(BACKUP, config) or keysets.file_path(BACKUP, config))


def load(config: Mapping[str, Any]) -> KeySet:
    """The configured backup keys; ConfigError naming the problem (or how to make one)."""
    return keysets.load(BACKUP, config)


def check_value(key: bytes) -> bytes:
    """16 bytes that tell, without revealing the key, whether a configured key is the one that
    made an archive: HKDF is one-way (as the recordings' key check value, FORMAT.md)."""
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=_CHECK_LABEL).derive(key)


def matches(key: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(check_value(key), expected)


def ensure_instance_key(folder: Path, toml_path: Path, environ: Mapping[str, str]) -> str | None:
    """Give an instance folder a backup key file (``companion init``) when none is configured;
    an existing file is kept. Returns what was done, for the person running it."""
    names = (ENV_PREFIX + BACKUP.setting, ENV_PREFIX + BACKUP.file_setting)
    if any(environ.get(n) for n in names):
        return None
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8")) if toml_path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError):
        return None  # not ours to repair; loading the configuration names the problem
    if data.get(BACKUP.setting.lower()) or data.get(BACKUP.file_setting.lower()):
        return None
    path = (folder / BACKUP.file_name).resolve()
    if not path.exists():
        keysets.write_key_file(BACKUP, path, [keysets.generate_line(BACKUP)])
    text = toml_path.read_text(encoding="utf-8") if toml_path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')
    toml_path.write_text(text + f'{BACKUP.file_setting.lower()} = "{quoted}"\n', encoding="utf-8")
    toml_path.chmod(0o600)
    return (
        f"Wrote {path.name} with a new backup key (keep a copy apart from the backups) and set it."
    )
