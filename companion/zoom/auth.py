"""Server-to-Server OAuth tokens: fetched once, shared, refreshed shortly before they expire.

Zoom's S2S grant has no refresh token: a new access token is requested with the account
credentials. Zoom has been seen invalidating older tokens when a new one is issued, so every
thread (:class:`TokenCache`) and every worker process on a host (:class:`FileTokenCache`) must
share one token and fetch a new one only when it is about to expire or Zoom has rejected it.
A fetch happens under the cache's lock, so concurrent callers wait for the one fetch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from .errors import ZoomAuthError, ZoomConnectionError, decode_body, error_from_response

log = logging.getLogger(__name__)

# Refetch this long before expiry, as Zoom's own SDK does, so a token never dies in flight.
REFRESH_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class AccessToken:
    """An OAuth access token and when it stops working (epoch seconds)."""

    value: str
    expires_at: float
    scope: str = ""

    def usable(self, now: float, *, stale: str | None = None) -> bool:
        """True if the token has more than the refresh margin left and is not the rejected one."""
        return self.value != stale and now < self.expires_at - REFRESH_MARGIN_SECONDS

    def __repr__(self) -> str:
        # Tokens end up in tracebacks and debuggers; never show the value.
        return f"AccessToken(value=<redacted>, expires_at={self.expires_at!r})"


Fetch = Callable[[], AccessToken]
Clock = Callable[[], float]


class TokenCache:
    """Tokens shared by all threads of this process, keyed by token URL + account + client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, AccessToken] = {}

    def get(self, key: str, fetch: Fetch, *, clock: Clock, stale: str | None = None) -> AccessToken:
        """Return a usable token for ``key``, fetching a new one only if needed.

        :param stale: a token value Zoom just rejected (401). If the cache still holds it, a new
            token is fetched; if another thread already replaced it, the replacement is returned.
        """
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.usable(clock(), stale=stale):
                return token
            token = fetch()
            self._tokens[key] = token
            return token

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


class FileTokenCache(TokenCache):
    """Tokens shared by every process on this host through one file, locked with ``flock``.

    The file holds ``{key: {"access_token", "expires_at"}}`` and is created owner-only (0600):
    it contains live credentials. It is rewritten in place under the lock; a torn or unreadable
    file is treated as empty, which costs one token fetch and nothing else.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        # The last token seen, to skip the file on the hot path while it is still good.
        self._memo: dict[str, AccessToken] = {}

    def get(self, key: str, fetch: Fetch, *, clock: Clock, stale: str | None = None) -> AccessToken:
        memo = self._memo.get(key)
        if memo is not None and memo.usable(clock(), stale=stale):
            return memo
        # flock excludes other processes; the thread lock keeps this process's threads in line
        # (and is cheaper than each of them opening the file).
        with self._lock, self._locked_file() as fd:
            tokens = _read_tokens(fd)
            token = tokens.get(key)
            if token is None or not token.usable(clock(), stale=stale):
                token = fetch()
                tokens[key] = token
                _write_tokens(fd, tokens)
            self._memo[key] = token
            return token

    def clear(self) -> None:
        with self._lock, self._locked_file() as fd:
            self._memo.clear()
            _write_tokens(fd, {})

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock


def _read_tokens(fd: int) -> dict[str, AccessToken]:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks) or b"{}")
        return {
            key: AccessToken(str(entry["access_token"]), float(entry["expires_at"]))
            for key, entry in data.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("zoom token cache file is unreadable; fetching a new token")
        return {}


def _write_tokens(fd: int, tokens: dict[str, AccessToken]) -> None:
    payload = json.dumps(
        {key: {"access_token": t.value, "expires_at": t.expires_at} for key, t in tokens.items()}
    ).encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, payload)
    os.fsync(fd)


def cache_key(oauth_url: str, account_id: str, client_id: str) -> str:
    """The cache key of one set of credentials (the secret is deliberately not part of it)."""
    return f"{oauth_url} {account_id} {client_id}"


def fetch_token(
    http: requests.Session,
    *,
    oauth_url: str,
    account_id: str,
    client_id: str,
    client_secret: str,
    timeout: float,
    now: float,
) -> AccessToken:
    """Request a new S2S token: form body ``grant_type=account_credentials&account_id=…`` with
    HTTP Basic ``client_id:client_secret``.

    :raises ZoomAuthError: the endpoint refused the credentials, or answered without a token.
    :raises ZoomRateLimited, ZoomServerError: the endpoint is limiting or failing.
    :raises ZoomConnectionError: no answer.
    """
    try:
        response = http.post(
            oauth_url,
            data={"grant_type": "account_credentials", "account_id": account_id},
            auth=(client_id, client_secret),
            headers={"Accept": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise ZoomConnectionError(
            f"no answer from the Zoom token endpoint: {type(exc).__name__}",
            operation="oauth_token",
        ) from exc
    with response:
        if not response.ok:
            raise error_from_response(
                response, operation="oauth_token", now=now, auth_endpoint=True
            )
        body = decode_body(response)
    value = body.get("access_token") if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if (
        not isinstance(value, str)
        or not value
        or not isinstance(expires_in, int | float)
        or isinstance(expires_in, bool)
    ):
        raise ZoomAuthError(
            "the Zoom token endpoint answered without an access token",
            http_status=response.status_code,
            headers=response.headers,
            request_id=response.headers.get("x-zm-trackingid"),
            operation="oauth_token",
        )
    scope = body.get("scope") if isinstance(body, dict) else ""
    return AccessToken(value, now + float(expires_in), scope if isinstance(scope, str) else "")
