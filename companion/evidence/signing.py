"""Evidence-pack signing keys: an Ed25519 key per organisation and signing key id, kept apart
from the cookie-signing ``SECRET_KEY``.

The configured signing keys (``COMPANION_SIGNING_KEYS`` / ``_FILE``, see :mod:`companion.keysets`)
are 32-byte seeds. Each organisation's private key is derived from one::

    HKDF-SHA256(ikm = seed <key_id>, salt = "companion-evidence",
                info = "companion evidence pack signing key v2|key:<key_id>|organisation:<id>")

so each organisation has its own public key and nothing per organisation must be kept secret. The
first key signs new packs; a pack names the key id that signed it. The public key of every
(organisation, key id) that signed a pack is recorded in ``evidence_signing_keys`` in the same
transaction as the pack, so a pack still verifies after its key was rotated out and its private
half removed from the configuration; a tampered pack, or one signed by any other key, does not.

Versions before keys were separated derived the key from ``SECRET_KEY`` alone (info "... v1|
organisation:<id>") and named it ``ed25519:`` + 16 hex digits of its public key's SHA-256. With
``COMPANION_LEGACY_SECRET_KEY`` set such packs verify, and ``companion keys reseal`` records their
public keys so that they keep verifying once it is unset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import keysets
from ..errors import CompanionError
from ..keysets import SIGNING, KeySet
from .models import EvidencePack, EvidenceSigningKey

_SALT = b"companion-evidence"
_INFO = b"companion evidence pack signing key v2|key:"
_LEGACY_INFO = b"companion evidence pack signing key v1|organisation:"
EXTENSION = "companion.evidence.signing"


class SigningKeyMismatch(CompanionError):
    """The configured key under this id is not the one that signed the organisation's earlier
    packs (a key line was replaced but kept its id)."""

    code = "signing_key_mismatch"
    status = 503


def _seed_to_key(ikm: bytes, info: bytes) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(ikm)
    return Ed25519PrivateKey.from_private_bytes(seed)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public: bytes) -> str:
    """The key id of a legacy pack: the first 16 hex digits of its public key's SHA-256."""
    return "ed25519:" + hashlib.sha256(public).hexdigest()[:16]


class SigningKeys:
    """The configured signing seeds by id (current first) and, for verifying only, the legacy
    secret."""

    def __init__(self, keys: KeySet, legacy_secret: str = ""):
        self.keys = keys
        self.legacy_secret = legacy_secret

    def __repr__(self) -> str:
        return f"SigningKeys({self.keys!r}, legacy={'yes' if self.legacy_secret else 'no'})"

    @property
    def current_id(self) -> str:
        return self.keys.current_id

    def private_key(self, organisation_id: int, key_id: str | None = None) -> Ed25519PrivateKey:
        key_id = key_id or self.current_id
        info = _INFO + key_id.encode() + b"|organisation:" + str(organisation_id).encode()
        return _seed_to_key(self.keys.get(key_id), info)

    def legacy_key(self, organisation_id: int) -> Ed25519PrivateKey | None:
        if not self.legacy_secret:
            return None
        info = _LEGACY_INFO + str(organisation_id).encode()
        return _seed_to_key(self.legacy_secret.encode("utf-8"), info)

    def configured_public(self, organisation_id: int, key_id: str) -> bytes | None:
        """The public key under ``key_id`` derivable from the configuration, if any."""
        if key_id in self.keys:
            return raw_public(self.private_key(organisation_id, key_id))
        legacy = self.legacy_key(organisation_id)
        if legacy is not None:
            public = raw_public(legacy)
            if hmac.compare_digest(fingerprint(public), key_id):
                return public
        return None


def signing_keys_from_config(config: Mapping[str, Any]) -> SigningKeys:
    return SigningKeys(keysets.load(SIGNING, config), str(config.get("LEGACY_SECRET_KEY") or ""))


_app_keys = keysets.AppKeys(SIGNING, EXTENSION, signing_keys_from_config)


def init_app(app: Flask) -> None:
    """Load the signing keys (ConfigError stops the start)."""
    _app_keys.init_app(app)


def keys_for(app: Flask | None = None, *, reload: bool = False) -> SigningKeys:
    return _app_keys.get(app, reload=reload)


@dataclass(frozen=True)
class PublicKeyInfo:
    key_id: str
    public_key_b64: str


def current_public(keys: SigningKeys, organisation_id: int) -> PublicKeyInfo:
    public = raw_public(keys.private_key(organisation_id))
    return PublicKeyInfo(keys.current_id, base64.b64encode(public).decode("ascii"))


def recorded(session: Session, organisation_id: int) -> list[EvidenceSigningKey]:
    """Every public key recorded for the organisation, oldest first."""
    return list(
        session.scalars(
            select(EvidenceSigningKey)
            .where(EvidenceSigningKey.organisation_id == organisation_id)
            .order_by(EvidenceSigningKey.first_used_at, EvidenceSigningKey.id)
        )
    )


def _recorded_one(session: Session, organisation_id: int, key_id: str) -> bytes | None:
    row = session.scalars(
        select(EvidenceSigningKey).where(
            EvidenceSigningKey.organisation_id == organisation_id,
            EvidenceSigningKey.key_id == key_id,
        )
    ).first()
    return base64.b64decode(row.public_key) if row is not None else None


def note_use(session: Session, organisation_id: int, key_id: str, public: bytes) -> None:
    """Record the public key before it signs a pack, in the pack's transaction; refuse a key
    that is not the one recorded under its id (the pack would not verify as before)."""
    known = _recorded_one(session, organisation_id, key_id)
    if known is None:
        try:
            with session.begin_nested():
                session.add(
                    EvidenceSigningKey(
                        organisation_id=organisation_id,
                        key_id=key_id,
                        public_key=base64.b64encode(public).decode("ascii"),
                    )
                )
        except IntegrityError:
            # Another export recorded it a moment ago; compare with that one.
            known = _recorded_one(session, organisation_id, key_id)
    if known is not None and not hmac.compare_digest(known, public):
        raise SigningKeyMismatch(
            f"The evidence-pack signing key {key_id!r} is not the one that signed this "
            "organisation's earlier packs. Restore that key, or add a new key with a new id "
            "first in COMPANION_SIGNING_KEYS (`companion keys rotate --kind signing`)."
        )


def public_key_for(
    session: Session, keys: SigningKeys, organisation_id: int, key_id: str
) -> bytes | None:
    """The public key a pack naming ``key_id`` must verify with: the recorded one, else one the
    configuration gives (a key that has not signed for this organisation yet, or a legacy one)."""
    if not key_id:
        return None
    return _recorded_one(session, organisation_id, key_id) or keys.configured_public(
        organisation_id, key_id
    )


def record_earlier_keys(session: Session, keys: SigningKeys) -> tuple[int, list[str]]:
    """Record the public key of every (organisation, key id) that signed a pack and is not
    recorded yet, from the configuration (legacy keys included). Returns how many were recorded
    and the ones the configuration cannot give (their packs no longer verify)."""
    done, missing = 0, []
    pairs = session.execute(
        select(EvidencePack.organisation_id, EvidencePack.key_id).distinct()
    ).all()
    for organisation_id, key_id in pairs:
        if _recorded_one(session, organisation_id, key_id) is not None:
            continue
        public = keys.configured_public(organisation_id, key_id)
        if public is None:
            missing.append(f"organisation {organisation_id}: {key_id}")
            continue
        session.add(
            EvidenceSigningKey(
                organisation_id=organisation_id,
                key_id=key_id,
                public_key=base64.b64encode(public).decode("ascii"),
            )
        )
        done += 1
    session.flush()
    return done, missing
