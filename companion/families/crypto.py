"""Registrant join links at rest: Fernet under a key derived from SECRET_KEY for this purpose.

A family's Zoom join link admits whoever holds it, so a database dump alone must not give it
away. The key is derived with HKDF and its own label, so it is neither the cookie-signing key nor
the key of course passcodes.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"companion/family-join-url/v1"


class Unreadable(Exception):
    """The stored value cannot be decrypted (the secret key changed); fetch it again from Zoom."""


@functools.lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(value: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(value.encode()).decode("ascii")


def unseal(token: str, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise Unreadable("the join link cannot be decrypted") from None
