"""Meeting passcodes at rest: Fernet (AES-CBC + HMAC) under a key derived from SECRET_KEY.

A database dump alone does not give anybody a class's passcode. The key is derived with HKDF and
a purpose label, so it is never the cookie-signing key itself.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"companion/course-passcode/v1"


class PasscodeUnreadable(Exception):
    """The stored passcode cannot be decrypted (the secret key changed); rotate it."""


@functools.lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(passcode: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(passcode.encode()).decode("ascii")


def unseal(token: str, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise PasscodeUnreadable("the course passcode cannot be decrypted") from None
