"""What every part of the sandbox's state shares: its store, clock, URLs and keys, and helpers.

:class:`SandboxBase` is the ground the resource mixins (``tokens.py``, ``account.py``,
``meetings.py``, ``registrants.py``, ``recordings.py``, ``admin.py``) stand on; ``core.Sandbox``
composes them into the one object the app, the simulation and the tests use.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .errors import bad_request, validation_failed
from .store import Store

try:  # the client package defines them too; keep one source when it is importable
    from companion.zoom import (
        SANDBOX_ACCOUNT_ID,
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
    )
except ImportError:  # pragma: no cover - only while the client package is incomplete
    SANDBOX_ACCOUNT_ID = "sandbox-account"
    SANDBOX_CLIENT_ID = "sandbox-client"
    SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - a fixed, public test credential

UTC = dt.UTC
RETRY_DELAYS = (5 * 60, 20 * 60, 60 * 60)  # Zoom: +5 min, then +20, then +60
DELIVERY_TIMEOUT = 3.0


def atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Sandbox method as one transaction: concurrent requests cannot interleave their
    read-modify-write, and an error leaves nothing half-done."""

    @functools.wraps(method)
    def wrapper(self: SandboxBase, *args: Any, **kwargs: Any) -> Any:
        with self.store.transaction():
            return method(self, *args, **kwargs)

    return wrapper


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def zoom_uuid() -> str:
    # Zoom's meeting-instance UUIDs are base64 of 16 bytes and may contain "/" and "+".
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            target[part] = nxt
        target = nxt
    target[parts[-1]] = copy.deepcopy(value)


def get_dotted(source: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(source, dict) or part not in source:
            return None
        source = source[part]
    return source


def encode_page(offset: int, kind: str) -> str:
    raw = json.dumps({"o": offset, "k": kind}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page(token: str | None, kind: str) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data.get("k") != kind or not isinstance(data.get("o"), int) or data["o"] < 0:
            raise ValueError
        return int(data["o"])
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("Invalid next_page_token.") from None


def page_size_of(raw: str | None, default: int = 30, maximum: int = 300) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_failed([("page_size", "Invalid field: must be a number.")]) from None
    if value < 1:
        raise validation_failed([("page_size", "Invalid field: must be at least 1.")])
    return min(value, maximum)


class SandboxBase:
    """The state every resource of the sandbox reads: the store, the clock, the URLs, the keys."""

    def __init__(
        self,
        store_path: str,
        *,
        webhook_url: str | None,
        webhook_secret: str,
        public_url: str,
        clock: Callable[[], float] = time.time,
        retry_delays: Iterable[float] = RETRY_DELAYS,
        delivery_timeout: float = DELIVERY_TIMEOUT,
        account_id: str = SANDBOX_ACCOUNT_ID,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
    ):
        self.store = Store(store_path)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.delivery_timeout = float(delivery_timeout)
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.delivery_wakeup = threading.Event()
        self.delivery_lock = threading.Lock()
        # Tests may deliver webhooks into a WSGI test client instead of over HTTP:
        # (url, body, headers, timeout) -> status. None means a real HTTP POST.
        self.webhook_transport: Callable[[str, bytes, dict[str, str], float], int] | None = None
        key = self.store.get_meta("signing_key")
        if key is None:
            key = secrets.token_hex(32)
            self.store.set_meta("signing_key", key)
        self._signing_key = bytes.fromhex(key)

    def close(self) -> None:
        self.store.close()

    # --- time -------------------------------------------------------------------------------

    def now(self) -> float:
        return float(self.clock())

    def now_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), tz=UTC).replace(microsecond=0)
