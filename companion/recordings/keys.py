"""Key-encryption keys (KEKs): loading them from configuration, wrapping file keys, checking them.

A :class:`Keyring` holds the configured KEKs by id; the first one is the primary, which wraps new
file keys, and the others unwrap older rows until a rotation has re-wrapped them all (FORMAT.md,
"Key wrapping"). Nothing here touches the database: callers store the ``(kek_id, wrapped)`` pair
that :meth:`Keyring.wrap` returns, and the check values from :func:`kek_check_value`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import os
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..config import ConfigError
from ..errors import CompanionError
from . import crypto

KEK_SIZE = crypto.KEY_SIZE
CHECK_LABEL = b"companion-kek-check/v1"
# Shown whenever no usable key is configured; the CLI that creates keys lives elsewhere.
GENERATE_HINT = "`make run` creates one for local use; `companion keys generate` prints a new one"


class UnknownKek(CompanionError, LookupError):
    """A wrapped file key names a KEK that is not configured."""

    code = "unknown_kek"
    status = 500

    def __init__(self, kek_id: str):
        super().__init__(
            f"key-encryption key {kek_id!r} is not configured (COMPANION_KEK / COMPANION_KEK_FILE)",
            kek_id=kek_id,
        )
        self.kek_id = kek_id


@dataclass(frozen=True)
class WrappedDek:
    """What to store in the database for one file: the KEK's id and the 60-byte wrapped key."""

    kek_id: str
    wrapped: bytes


def kek_check_value(kek: bytes) -> str:
    """Return the public check value of a KEK: 32 hex digits (FORMAT.md, "Key check value")."""
    if len(kek) != KEK_SIZE:
        raise ValueError(f"a key-encryption key is {KEK_SIZE} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=CHECK_LABEL)
    return hkdf.derive(bytes(kek)).hex()


class Keyring:
    """The configured KEKs by id, primary first. Immutable: changes return a new keyring."""

    def __init__(self, keys: Iterable[tuple[str, bytes]]):
        entries: dict[str, bytes] = {}
        for kek_id, key in keys:
            crypto.check_kek_id(kek_id)
            if len(key) != KEK_SIZE:
                raise ValueError(f"key-encryption key {kek_id!r} must be {KEK_SIZE} bytes")
            if kek_id in entries:
                raise ValueError(f"key id {kek_id!r} appears twice")
            entries[kek_id] = bytes(key)
        if not entries:
            raise ValueError("a keyring needs at least one key-encryption key")
        self._keys = entries

    @property
    def primary_id(self) -> str:
        """The id of the KEK that wraps new file keys."""
        return next(iter(self._keys))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, kek_id: str) -> bytes:
        """Return the KEK named ``kek_id``; raise :class:`UnknownKek` if it is not configured."""
        try:
            return self._keys[kek_id]
        except KeyError:
            raise UnknownKek(kek_id) from None

    def __contains__(self, kek_id: object) -> bool:
        return kek_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __repr__(self) -> str:
        # Never the key material: keyrings end up in logs and tracebacks.
        return f"Keyring(primary={self.primary_id!r}, ids={list(self._keys)!r})"

    def rotate_in(self, new_id: str, key: bytes) -> Keyring:
        """Return a keyring with ``key`` as the new primary and every current key kept."""
        return Keyring([(new_id, key), *self._keys.items()])

    def retire(self, kek_id: str) -> Keyring:
        """Return a keyring without ``kek_id``; the primary cannot be retired."""
        if kek_id == self.primary_id:
            raise ValueError("the primary key-encryption key cannot be retired; rotate first")
        self.get(kek_id)
        return Keyring((k, v) for k, v in self._keys.items() if k != kek_id)

    def wrap(self, file_id: uuid.UUID, dek: bytes) -> WrappedDek:
        """Wrap a new file key under the primary KEK."""
        kek_id = self.primary_id
        return WrappedDek(kek_id, crypto.wrap_dek(self._keys[kek_id], kek_id, file_id, dek))

    def unwrap(self, kek_id: str, file_id: uuid.UUID, wrapped: bytes) -> bytes:
        """Return the file key of a stored row; a bad row raises CorruptedOrTampered."""
        return crypto.unwrap_dek(self.get(kek_id), kek_id, file_id, wrapped)

    def rewrap(self, kek_id: str, file_id: uuid.UUID, wrapped: bytes) -> WrappedDek:
        """Re-wrap a stored file key under the primary KEK (rotation); the blob is untouched."""
        return self.wrap(file_id, self.unwrap(kek_id, file_id, wrapped))

    def check_values(self) -> dict[str, str]:
        """Return ``{kek_id: check value}`` for every KEK, to store beside the wrapped keys."""
        return {kek_id: kek_check_value(key) for kek_id, key in self._keys.items()}

    def to_lines(self) -> list[str]:
        """Return the key lines, primary first, as a key file or COMPANION_KEK would hold them."""
        return [f"{k}:{base64.b64encode(v).decode('ascii')}" for k, v in self._keys.items()]


def verify_keyring(keyring: Keyring, known: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` unless every KEK id in ``known`` is configured and matches.

    ``known`` maps the KEK ids that wrap stored file keys to the check values recorded when
    they were first used. The service calls this at start, so a wrong key stops it before it
    wraps anything new under that key.
    """
    configured = keyring.check_values()
    problems = []
    for kek_id, expected in sorted(known.items()):
        actual = configured.get(kek_id)
        if actual is None:
            problems.append(
                f"stored file keys are wrapped under key-encryption key {kek_id!r}, which is not "
                "configured in COMPANION_KEK or COMPANION_KEK_FILE"
            )
        elif not hmac.compare_digest(actual, expected):
            problems.append(
                f"the configured key-encryption key {kek_id!r} is not the one that wrapped the "
                "stored file keys (its check value differs); restore the right key"
            )
    if problems:
        raise ConfigError(problems)


def generate_kek_line(kek_id: str | None = None) -> str:
    """Return a new key line ``kek_id:base64key`` with a fresh random KEK."""
    if kek_id is None:
        kek_id = f"kek-{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(3)}"
    crypto.check_kek_id(kek_id)
    return f"{kek_id}:{base64.b64encode(secrets.token_bytes(KEK_SIZE)).decode('ascii')}"


def parse_kek_lines(entries: Iterable[str], source: str) -> Keyring:
    """Build a keyring from key lines; ``source`` names where they came from in errors.

    Error messages name the entry and its id but never contain key material.
    """
    from ..keysets import parse_key_entries  # keysets reads key ids with this package's rule

    keys = parse_key_entries(
        entries,
        source,
        key_size=KEK_SIZE,
        id_name="kek_id",
        empty=f"{source} holds no key-encryption key ({GENERATE_HINT})",
    )
    return Keyring(keys)


def read_kek_file(path: str | os.PathLike[str]) -> list[str]:
    """Return the key lines of a key file, refusing one that group or others may access."""
    from ..keysets import read_private_lines  # keysets reads key ids with this package's rule

    return read_private_lines(path, "COMPANION_KEK_FILE")


def load_keyring(config: Mapping[str, Any]) -> Keyring:
    """Return the keyring configured by ``KEK`` or ``KEK_FILE``; raise ConfigError otherwise."""
    inline = (config.get("KEK") or "").strip()
    path = (config.get("KEK_FILE") or "").strip()
    if inline and path:
        raise ConfigError(["set COMPANION_KEK or COMPANION_KEK_FILE, not both"])
    if inline:
        return parse_kek_lines([e for e in inline.split(",") if e.strip()], "COMPANION_KEK")
    if path:
        return parse_kek_lines(read_kek_file(path), f"COMPANION_KEK_FILE {path}")
    raise ConfigError(
        [
            "no key-encryption key is configured: set COMPANION_KEK or COMPANION_KEK_FILE "
            f"({GENERATE_HINT})"
        ]
    )


__all__ = [
    "Keyring",
    "UnknownKek",
    "WrappedDek",
    "generate_kek_line",
    "kek_check_value",
    "load_keyring",
    "parse_kek_lines",
    "read_kek_file",
    "verify_keyring",
]
