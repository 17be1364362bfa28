"""The app's keyring and blob storage, and the start-up check that the keys are the right ones.

``init_app`` runs inside ``create_app``: it loads the key-encryption keys from the configuration
(``COMPANION_KEK`` / ``COMPANION_KEK_FILE``) and compares each key's check value with the one
stored when that key first wrapped a file key. A missing, malformed or wrong key raises
:class:`ConfigError`, so the service does not start (FORMAT.md, "Key check value").

Running processes pick up a rotated key file by themselves (its modification time is checked
before each use), so ``companion keys rotate`` needs no restart for readers to know a new key.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..config import ConfigError
from ..db import get_engine, utcnow
from ..errors import CompanionError
from . import keys
from .models import KekCheck
from .storage import LocalEncryptedStorage, RecordingStorage

log = logging.getLogger(__name__)

KEYRING_EXTENSION = "companion.recordings.keyring"
STORAGE_EXTENSION = "companion.recordings.storage"
_lock = threading.Lock()


class KeyNotUsable(CompanionError):
    """The primary KEK may not wrap new file keys (retired, or not the key the DB knows)."""

    code = "kek_not_usable"
    status = 503


@dataclass
class _LoadedKeyring:
    keyring: keys.Keyring
    # (mtime_ns, size, inode) of the key file when it was read; None for COMPANION_KEK.
    file_stamp: tuple[int, int, int] | None


def _file_stamp(config: Mapping[str, Any]) -> tuple[int, int, int] | None:
    path = (config.get("KEK_FILE") or "").strip()
    if not path or (config.get("KEK") or "").strip():
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def known_check_values(engine: Engine) -> dict[str, str]:
    """``{kek_id: check value}`` of every KEK the database has used and not retired.

    Read over a raw connection without a transaction: this runs while the app is being built,
    possibly before the tables exist (``companion db upgrade`` builds an app too), and must not
    wait for a SQLite write lock that another connection holds.
    """
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kek_checks'")
        else:
            cur.execute("SELECT 1 WHERE to_regclass('kek_checks') IS NOT NULL")
        if cur.fetchone() is None:
            return {}
        cur.execute("SELECT kek_id, check_value FROM kek_checks WHERE retired_at IS NULL")
        rows = {str(k): str(v) for k, v in cur.fetchall()}
        cur.close()
        return rows
    finally:
        try:
            raw.rollback()
        finally:
            raw.close()


def load_checked_keyring(config: Mapping[str, Any], engine: Engine) -> keys.Keyring:
    """The configured keyring, verified against the check values in the database."""
    keyring = keys.load_keyring(config)
    try:
        known = known_check_values(engine)
    except Exception as exc:  # the database may be down; wrapping checks again on every use
        log.warning("could not compare the key-encryption keys with the database: %s", exc)
        return keyring
    keys.verify_keyring(keyring, known)
    return keyring


def init_app(app: Flask) -> None:
    """Load and check the keys (raising ConfigError), and set up the blob storage."""
    keyring = load_checked_keyring(app.config, get_engine(app))
    app.extensions[KEYRING_EXTENSION] = _LoadedKeyring(keyring, _file_stamp(app.config))
    log.debug("recordings keyring: %r", keyring)


def keyring_for(app: Flask | None = None, *, reload: bool = False) -> keys.Keyring:
    """The app's keyring; re-read (and re-checked) when the key file changed since it was read."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    loaded: _LoadedKeyring | None = app.extensions.get(KEYRING_EXTENSION)
    stamp = _file_stamp(app.config)
    if loaded is not None and not reload and stamp == loaded.file_stamp:
        return loaded.keyring
    with _lock:
        loaded = app.extensions.get(KEYRING_EXTENSION)
        if loaded is None or reload or stamp != loaded.file_stamp:
            keyring = load_checked_keyring(app.config, get_engine(app))
            if loaded is not None and keyring.ids != loaded.keyring.ids:
                log.info("key-encryption keys reloaded: %r", keyring)
            loaded = _LoadedKeyring(keyring, stamp)
            app.extensions[KEYRING_EXTENSION] = loaded
        return loaded.keyring


def unwrap(app: Flask, kek_id: str, file_id: Any, wrapped: bytes) -> bytes:
    """The file key of a stored row; a KEK this process has not seen yet is looked up again."""
    keyring = keyring_for(app)
    if kek_id not in keyring:
        keyring = keyring_for(app, reload=True)
    return keyring.unwrap(kek_id, file_id, wrapped)


def note_kek_use(session: Session, keyring: keys.Keyring) -> str:
    """Record (or check) the primary KEK's check value before it wraps a file key.

    Runs in the transaction that stores the wrapped key, with the row locked, so a key retired
    or replaced meanwhile is refused rather than used. Returns the primary's id.
    """
    kek_id = keyring.primary_id
    value = keyring.check_values()[kek_id]
    row = session.scalars(
        select(KekCheck).where(KekCheck.kek_id == kek_id).with_for_update()
    ).first()
    if row is None:
        session.add(KekCheck(kek_id=kek_id, check_value=value, created_at=utcnow()))
        session.flush()
        return kek_id
    if row.retired_at is not None:
        raise KeyNotUsable(
            f"key-encryption key {kek_id!r} was retired; restart companion with the current keys"
        )
    if not hmac.compare_digest(row.check_value, value):
        raise KeyNotUsable(
            f"the configured key-encryption key {kek_id!r} is not the one the database knows"
        )
    return kek_id


def storage_from_config(config: Mapping[str, Any]) -> RecordingStorage:
    """The object store ``COMPANION_STORAGE_URL`` names, else the local folder.

    Building either makes no network call (the S3 client connects on its first request), so
    it is safe wherever the app is built; :meth:`RecordingStorage.check` is the readiness test.
    """
    if config.get("STORAGE_URL"):
        # Imported here: boto3 takes a while to import and only this backend needs it.
        from .s3storage import S3EncryptedStorage

        return S3EncryptedStorage.from_config(config)
    return LocalEncryptedStorage(config["STORAGE_DIR"])


def storage_for(app: Flask | None = None) -> RecordingStorage:
    """The blob storage (tests put their own in ``app.extensions[STORAGE_EXTENSION]``)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    store = app.extensions.get(STORAGE_EXTENSION)
    if store is None:
        with _lock:
            store = app.extensions.get(STORAGE_EXTENSION)
            if store is None:
                store = storage_from_config(app.config)
                app.extensions[STORAGE_EXTENSION] = store
    return store


__all__ = [
    "ConfigError",
    "KeyNotUsable",
    "init_app",
    "keyring_for",
    "known_check_values",
    "load_checked_keyring",
    "note_kek_use",
    "storage_for",
    "storage_from_config",
    "unwrap",
]
