"""Small secrets at rest, one key per purpose: course passcodes, families' join links and
two-factor seeds are sealed, recovery codes are kept as keyed hashes, all under the data-sealing
keys (``COMPANION_SEALING_KEYS`` / ``_FILE``, see :mod:`companion.keysets`), never under the
cookie-signing ``SECRET_KEY``. Rotating the session secret therefore changes nothing stored.

A sealed value is text in its own column::

    sv1:<key_id>:<base64url(nonce || AES-256-GCM ciphertext and tag)>

    key   = HKDF-SHA256(ikm = data-sealing key <key_id>, salt = none,
                        info = "companion-sealing/v1|" || purpose)
    aad   = "companion-sealing/v1|" || purpose || "|" || key_id
    nonce = 12 random bytes

Each purpose gets its own subkey and is also bound as associated data, so a value sealed for one
purpose (a join link) never opens as another (a passcode). The key id travels with the value:
the first configured key seals, the others still open what they sealed, and ``companion keys
reseal`` moves older values onto the current key. A recovery code's hash is
HMAC-SHA256(HKDF(key, info = "companion-keyed-hash/v1|recovery-code"), code), stored beside the
id of the key that made it.

Versions before keys were separated sealed with Fernet under HKDF(SECRET_KEY, info = the
purpose's old label). Those values open only while ``COMPANION_LEGACY_SECRET_KEY`` holds that
secret; nothing new is ever sealed with it, and the start-up check refuses to start while such
values exist and it is not set, rather than let two-factor sign-in fail for everyone.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from . import keysets
from .config import ENV_PREFIX, ConfigError
from .keysets import SEALING, KeySet

log = logging.getLogger(__name__)

PREFIX = "sv1"
_SEAL_LABEL = b"companion-sealing/v1|"
_HASH_LABEL = b"companion-keyed-hash/v1|"
_NONCE_SIZE = 12
EXTENSION = "companion.sealing"


class Purpose(enum.Enum):
    """What a sealed value (or keyed hash) is for; the value is its label in the key derivation."""

    COURSE_PASSCODE = "course-passcode"
    JOIN_LINK = "family-join-link"
    TOTP_SEED = "totp-seed"
    RECOVERY_CODE = "recovery-code"

    @property
    def legacy_label(self) -> bytes:
        """The HKDF label this purpose had under SECRET_KEY before keys were separated."""
        return _LEGACY_LABELS[self]


_LEGACY_LABELS = {
    Purpose.COURSE_PASSCODE: b"companion/course-passcode/v1",
    Purpose.JOIN_LINK: b"companion/family-join-url/v1",
    Purpose.TOTP_SEED: b"companion/totp-seed/v1",
    Purpose.RECOVERY_CODE: b"companion/recovery-code/v1",
}


class Unreadable(Exception):
    """A stored value cannot be opened: its key is not configured, it is not the key that sealed
    it, the value was sealed for another purpose, or it was changed."""

    def __init__(self, purpose: Purpose, key_id: str | None, reason: str):
        super().__init__(f"the {purpose.value} cannot be opened: {reason}")
        self.purpose = purpose
        self.key_id = key_id


def _derive(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


@functools.lru_cache(maxsize=64)
def _legacy_fernet(secret: str, label: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(secret.encode(), label)))


def key_id_of(token: str) -> str | None:
    """The id of the key that sealed ``token``; None for a value sealed the legacy way."""
    prefix, sep, rest = token.partition(":")
    if prefix != PREFIX or not sep:
        return None
    key_id, _, _ = rest.partition(":")
    return key_id


class Sealer:
    """Seals and opens values under a key set (and, for reading only, the legacy secret)."""

    def __init__(self, keys: KeySet, legacy_secret: str = ""):
        self.keys = keys
        self.legacy_secret = legacy_secret
        self._aeads: dict[tuple[str, Purpose], AESGCM] = {}
        self._peppers: dict[tuple[str, Purpose], bytes] = {}

    def __repr__(self) -> str:
        return f"Sealer({self.keys!r}, legacy={'yes' if self.legacy_secret else 'no'})"

    @property
    def current_id(self) -> str:
        return self.keys.current_id

    def _aead(self, key_id: str, purpose: Purpose) -> AESGCM:
        found = self._aeads.get((key_id, purpose))
        if found is None:
            key = _derive(self.keys.get(key_id), _SEAL_LABEL + purpose.value.encode())
            found = self._aeads[(key_id, purpose)] = AESGCM(key)
        return found

    @staticmethod
    def _aad(key_id: str, purpose: Purpose) -> bytes:
        return _SEAL_LABEL + purpose.value.encode() + b"|" + key_id.encode()

    def seal(self, purpose: Purpose, value: str) -> str:
        """Seal ``value`` under the current key."""
        if purpose is Purpose.RECOVERY_CODE:
            raise ValueError("recovery codes are kept as keyed hashes, never sealed")
        key_id = self.current_id
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = self._aead(key_id, purpose).encrypt(
            nonce, value.encode("utf-8"), self._aad(key_id, purpose)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{PREFIX}:{key_id}:{body}"

    def unseal(self, purpose: Purpose, token: str) -> str:
        """Open a value sealed for ``purpose``; raise :class:`Unreadable` when it cannot be."""
        key_id = key_id_of(token)
        if key_id is None:
            return self._unseal_legacy(purpose, token)
        if key_id not in self.keys:
            raise Unreadable(
                purpose, key_id, f"{SEALING.what} {key_id!r} is not configured"
            ) from None
        body = token.split(":", 2)[2]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if len(raw) <= _NONCE_SIZE:
                raise ValueError("too short")
            plain = self._aead(key_id, purpose).decrypt(
                raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], self._aad(key_id, purpose)
            )
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
            raise Unreadable(
                purpose, key_id, "changed, sealed for another purpose, or under another key"
            ) from None

    def _unseal_legacy(self, purpose: Purpose, token: str) -> str:
        if not self.legacy_secret:
            raise Unreadable(
                purpose,
                None,
                f"sealed with the session secret by an earlier version, and "
                f"{ENV_PREFIX}LEGACY_SECRET_KEY is not set",
            )
        try:
            fernet = _legacy_fernet(self.legacy_secret, purpose.legacy_label)
            return fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise Unreadable(
                purpose, None, f"{ENV_PREFIX}LEGACY_SECRET_KEY is not the secret that sealed it"
            ) from None

    def is_current(self, token: str) -> bool:
        return key_id_of(token) == self.current_id

    def reseal(self, purpose: Purpose, token: str) -> str:
        """The same value sealed under the current key (unchanged when it already is)."""
        if self.is_current(token):
            return token
        return self.seal(purpose, self.unseal(purpose, token))

    # -- keyed hashes (values kept only to be compared, such as recovery codes) ----------------

    def _pepper(self, key_id: str, purpose: Purpose) -> bytes:
        found = self._peppers.get((key_id, purpose))
        if found is None:
            found = _derive(self.keys.get(key_id), _HASH_LABEL + purpose.value.encode())
            self._peppers[(key_id, purpose)] = found
        return found

    def keyed_hash(self, purpose: Purpose, value: str) -> tuple[str, str]:
        """``(key_id, hex digest)`` of ``value`` under the current key, to store together."""
        key_id = self.current_id
        return key_id, self._digest(self._pepper(key_id, purpose), value)

    @staticmethod
    def _digest(pepper: bytes, value: str) -> str:
        return hmac.new(pepper, value.encode(), hashlib.sha256).hexdigest()

    def keyed_hashes(self, purpose: Purpose, value: str) -> list[tuple[str | None, str]]:
        """``(key_id, hex digest)`` under every configured key, and ``(None, digest)`` under
        the legacy secret when it is set: what a stored hash of ``value`` may be."""
        found: list[tuple[str | None, str]] = [
            (key_id, self._digest(self._pepper(key_id, purpose), value)) for key_id in self.keys
        ]
        if self.legacy_secret:
            pepper = _derive(self.legacy_secret.encode(), purpose.legacy_label)
            found.append((None, self._digest(pepper, value)))
        return found


def sealer_from_config(config: Mapping[str, Any]) -> Sealer:
    """The sealer configured by SEALING_KEYS(_FILE) and LEGACY_SECRET_KEY; ConfigError if none."""
    return Sealer(keysets.load(SEALING, config), str(config.get("LEGACY_SECRET_KEY") or ""))


# --- the app's sealer ----------------------------------------------------------------------------

_app_sealer = keysets.AppKeys(SEALING, EXTENSION, sealer_from_config)


def init_app(app: Flask) -> None:
    """Load the sealing keys and check them against the database; ConfigError stops the start."""
    from .db import get_engine

    sealer = _app_sealer.init_app(app)
    check_database(sealer, get_engine(app))
    log.debug("sealing keys: %r", sealer)


def sealer_for(app: Flask | None = None, *, reload: bool = False) -> Sealer:
    """The app's sealer; read again when its key file changed (``companion keys rotate``)."""
    return _app_sealer.get(app, reload=reload)


def seal(purpose: Purpose, value: str) -> str:
    """Seal ``value`` for ``purpose`` under the app's current data-sealing key."""
    return sealer_for().seal(purpose, value)


def unseal(purpose: Purpose, token: str) -> str:
    """Open a stored value; a key id this process has not seen yet is looked up again."""
    sealer = sealer_for()
    key_id = key_id_of(token)
    if key_id is not None and key_id not in sealer.keys:
        sealer = sealer_for(reload=True)
    return sealer.unseal(purpose, token)


# --- what the database holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str
    purpose: Purpose


# Every column that holds a sealed value; `companion keys reseal` and the start-up check use it.
SEALED_COLUMNS = (
    SealedColumn("courses", "passcode_encrypted", Purpose.COURSE_PASSCODE),
    SealedColumn("families", "join_url_encrypted", Purpose.JOIN_LINK),
    SealedColumn("users", "totp_secret_encrypted", Purpose.TOTP_SEED),
)


@dataclass(frozen=True)
class KeyUse:
    """How many values of one column are sealed under one key (None: the legacy secret)."""

    column: SealedColumn
    key_id: str | None
    count: int
    sample: str


def _key_id_sql(dialect: str, column: str) -> str:
    if dialect == "sqlite":
        rest = f"substr({column}, {len(PREFIX) + 2})"
        key = f"substr({rest}, 1, instr({rest}, ':') - 1)"
    else:
        key = f"split_part({column}, ':', 2)"
    return f"CASE WHEN {column} LIKE '{PREFIX}:%' THEN {key} ELSE '' END"


def key_uses(source: Engine | Session) -> list[KeyUse]:
    """Which keys seal the stored values, with one sample each.

    From an engine (the start-up check) this reads over a raw connection without a transaction,
    as the recordings' key check does: it runs while the app is being built, possibly before the
    tables exist (``companion db upgrade`` builds an app too), and must not wait for a SQLite
    write lock. From a session (the commands) it reads inside the session's transaction.
    """
    if isinstance(source, Session):
        connection = source.connection()
        cur = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            return _key_uses(cur, connection.dialect.name)
        finally:
            cur.close()
    raw = source.raw_connection()
    try:
        cur = raw.cursor()
        try:
            return _key_uses(cur, source.dialect.name)
        finally:
            cur.close()
    finally:
        try:
            raw.rollback()
        finally:
            raw.close()


def _key_uses(cur: Any, dialect: str) -> list[KeyUse]:
    uses: list[KeyUse] = []
    for col in SEALED_COLUMNS:
        if dialect == "sqlite":
            cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (col.table,)
            )
        else:
            cur.execute("SELECT 1 WHERE to_regclass(%s) IS NOT NULL", (col.table,))
        if cur.fetchone() is None:
            continue
        key = _key_id_sql(dialect, col.column)
        # Table and column names come from SEALED_COLUMNS above, never from input.
        cur.execute(
            f"SELECT {key}, COUNT(*), MIN({col.column}) FROM {col.table} "  # noqa: S608
            f"WHERE {col.column} IS NOT NULL AND {col.column} <> '' GROUP BY 1"
        )
        for key_id, count, sample in cur.fetchall():
            uses.append(KeyUse(col, str(key_id) or None, int(count), str(sample)))
    return uses


def problems_with(sealer: Sealer, uses: list[KeyUse]) -> list[str]:
    """What stops the stored values from opening with ``sealer``, one line per key and column."""
    problems: list[str] = []
    for use in uses:
        what = f"{use.count} {use.column.purpose.value} value(s) in {use.column.table}"
        if use.key_id is None and not sealer.legacy_secret:
            problems.append(
                f"{what} were sealed with the session secret by an earlier version: set "
                f"{ENV_PREFIX}LEGACY_SECRET_KEY to that secret (the SECRET_KEY they were sealed "
                "with), then run `companion keys reseal` to move them onto the sealing key"
            )
            continue
        if use.key_id is not None and use.key_id not in sealer.keys:
            problems.append(
                f"{what} are sealed under {SEALING.what} {use.key_id!r}, which is not configured "
                f"in {ENV_PREFIX}SEALING_KEYS or {ENV_PREFIX}SEALING_KEYS_FILE; restore it"
            )
            continue
        try:
            sealer.unseal(use.column.purpose, use.sample)
        except Unreadable:
            if use.key_id is None:
                problems.append(
                    f"{ENV_PREFIX}LEGACY_SECRET_KEY does not open the {what} sealed by an "
                    "earlier version; set it to the SECRET_KEY they were sealed with"
                )
            else:
                problems.append(
                    f"the configured {SEALING.what} {use.key_id!r} does not open the {what} "
                    "sealed under that id; restore the right key"
                )
    return problems


def check_database(sealer: Sealer, engine: Engine) -> None:
    """Raise ConfigError when stored values would not open with these keys."""
    try:
        uses = key_uses(engine)
    except Exception as exc:  # the database may be down or not migrated; opening says it later
        log.warning("could not compare the sealing keys with the database: %s", exc)
        return
    problems = problems_with(sealer, uses)
    if problems:
        raise ConfigError(problems)


__all__ = [
    "PREFIX",
    "SEALED_COLUMNS",
    "Purpose",
    "Sealer",
    "Unreadable",
    "check_database",
    "init_app",
    "key_id_of",
    "key_uses",
    "seal",
    "sealer_for",
    "sealer_from_config",
    "unseal",
]
