"""Zoom webhook signatures, URL validation and redelivery keys: pure functions, no Flask.

Zoom signs every webhook request with the app's secret token:

    x-zm-request-timestamp: <unix seconds>
    x-zm-signature: v0=<hex HMAC-SHA256(secret, "v0:" + timestamp + ":" + raw body)>

The HMAC covers the raw body bytes exactly as sent; re-serialised JSON gives other bytes and
another signature, so :func:`verify` takes ``bytes``. Zoom re-signs each retry with a fresh
timestamp (the sandbox does the same), which is why a replay window can be enforced at all.

The same functions are used by companion's intake (``/zoom/webhook``) and by the sandbox that
sends events, so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

SIGNATURE_HEADER = "x-zm-signature"
TIMESTAMP_HEADER = "x-zm-request-timestamp"
SIGNATURE_VERSION = "v0"
DEFAULT_TOLERANCE_SECONDS = 300

# Keys longer than this are shortened with a hash so they fit an indexed column.
_MAX_KEY_LENGTH = 255


class WebhookRejected(Exception):
    """A webhook request that must not be accepted; ``reason`` is safe to log (no body)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``x-zm-signature`` value Zoom sends for ``body`` at ``timestamp``."""
    message = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + _hmac_hex(secret, message)


def signed_headers(secret: str, body: bytes, *, now: float) -> dict[str, str]:
    """The two signature headers for a request sent at ``now`` (used by the sandbox sender)."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


class Headers(Protocol):
    """A request's headers: a plain mapping or werkzeug's ``Headers`` (which is not one)."""

    def get(self, key: str) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


def _header(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; werkzeug's Headers are not.
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


def verify(
    secret_or_secrets: str | Iterable[str],
    headers: Headers,
    body: bytes,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`WebhookRejected` unless ``body`` carries a valid, fresh Zoom signature.

    ``secret_or_secrets`` may list several secrets so that a rotated secret and its successor
    are both accepted for a while. The timestamp must be within ``tolerance`` seconds of
    ``now`` in either direction: old requests are replays, future ones are forged or come from
    a badly wrong clock.
    """
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else list(secret_or_secrets)
    secrets = [s for s in secrets if s]
    if not secrets:
        raise WebhookRejected("no webhook secret configured")
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected("missing x-zm-signature header")
    timestamp = _header(headers, TIMESTAMP_HEADER)
    if not timestamp:
        raise WebhookRejected("missing x-zm-request-timestamp header")
    timestamp = timestamp.strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookRejected("x-zm-request-timestamp is not a whole number of seconds")
    age = now - int(timestamp)
    if age > tolerance:
        raise WebhookRejected(f"timestamp is {int(age)} s old (tolerance {tolerance} s)")
    if -age > tolerance:
        raise WebhookRejected(f"timestamp is {int(-age)} s in the future (tolerance {tolerance} s)")
    given = signature.strip().encode("utf-8", "replace")
    matched = False
    for secret in secrets:
        expected = sign(secret, timestamp, body).encode("ascii")
        # Every secret is compared, so the time taken does not reveal which one matched.
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise WebhookRejected("signature does not match")


def url_validation_response(secret: str, plain_token: str) -> dict[str, str]:
    """The answer to Zoom's ``endpoint.url_validation`` challenge."""
    return {
        "plainToken": plain_token,
        "encryptedToken": _hmac_hex(secret, plain_token.encode("utf-8")),
    }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _storable(text: str) -> bool:
    """Whether every database companion runs on stores ``text`` as it is."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def dedupe_key(event: Mapping[str, Any]) -> str:
    """A key that is the same for every delivery of one Zoom event and differs between events.

    Zoom publishes no per-event id, so the key is built from what identifies the occurrence:
    the event name, the meeting instance (``uuid``, else ``id``), for recording events the file
    ids, and for participant events the participant and the time of what happened to them.
    The delivery timestamp and ``event_ts`` are never part of it: a retry is re-signed with a
    new timestamp but is the same event.
    """
    name = _text(event.get("event"))
    payload = event.get("payload")
    if not isinstance(payload, Mapping):
        payload = {}
    obj = payload.get("object")
    if not isinstance(obj, Mapping):
        obj = {}
    parts = [name, _text(obj.get("uuid") or obj.get("id"))]

    if name == "endpoint.url_validation":
        parts.append(_text(payload.get("plainToken")))
    if name.startswith("recording."):
        files = obj.get("recording_files") or []
        audio = obj.get("participant_audio_files") or []
        ids = sorted(
            _text(f.get("id") or f.get("file_name") or f.get("download_url"))
            for f in [*files, *audio]
            if isinstance(f, Mapping)
        )
        parts.append(",".join(ids))
    participant = obj.get("participant")
    if isinstance(participant, Mapping):
        who = (
            participant.get("participant_uuid")
            or participant.get("registrant_id")
            or participant.get("user_id")
            or participant.get("id")
            or participant.get("user_name")
        )
        when = (
            participant.get("join_time")
            or participant.get("leave_time")
            or participant.get("date_time")
        )
        parts += [_text(who), _text(participant.get("registrant_id")), _text(when)]
    if not any(parts[1:]):
        # An event we do not know the shape of: the payload itself identifies it.
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        parts.append(hashlib.sha256(canonical.encode()).hexdigest())

    key = "|".join(parts)
    # The key is a text column: PostgreSQL refuses a NUL and a lone surrogate in text, so a key
    # holding one (any field of a signed body may) is kept by its hash, like one too long.
    if len(key) > _MAX_KEY_LENGTH or not _storable(key):
        raw = key.encode("utf-8", "surrogatepass")
        prefix = name[:80] if _storable(name[:80]) else ""
        key = f"{prefix}|sha256:{hashlib.sha256(raw).hexdigest()}"
    return key


# The same derivation label must never be reused for another purpose.
_SANDBOX_SECRET_LABEL = b"companion zoom sandbox webhook secret v1"


def sandbox_webhook_secret(config: Mapping[str, Any]) -> str:
    """The webhook secret companion checks and, in sandbox mode, the sandbox signs with.

    A configured ``ZOOM_WEBHOOK_SECRET`` always wins. In sandbox mode with none set, a fixed
    secret is derived from ``SECRET_KEY``, so companion and ``companion sandbox serve`` agree
    without anyone copying a value around. With real Zoom the secret must be configured
    (config loading already refuses to start without it).
    """
    configured = config.get("ZOOM_WEBHOOK_SECRET") or ""
    if configured:
        return str(configured)
    if config.get("ZOOM_MODE", "sandbox") != "sandbox":
        raise ValueError("COMPANION_ZOOM_WEBHOOK_SECRET is required with real Zoom credentials")
    secret_key = config.get("SECRET_KEY") or ""
    if not secret_key:
        raise ValueError("SECRET_KEY is needed to derive the sandbox webhook secret")
    digest = hmac.new(str(secret_key).encode("utf-8"), _SANDBOX_SECRET_LABEL, hashlib.sha256)
    # Zoom's secret tokens are 22 URL-safe characters; keep the same shape.
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")[:22]
