"""Errors raised by the Zoom client, built in one place from Zoom's answer.

Each error keeps what Zoom said (its numeric ``code``, its ``message``, the body and headers) and
the ``x-zm-trackingid`` Zoom support asks for, so logs and callers never have to parse a response.
These are transport errors: the courses and recordings services translate them into domain errors.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests

from . import retry

# Enough of a non-JSON body (an HTML error page, a proxy's message) to see what it was.
_BODY_TEXT_LIMIT = 2000


class ZoomError(Exception):
    """Zoom refused or failed a request.

    :param message: Zoom's own ``message`` when it sent one, else a description of the failure.
    :param http_status: the HTTP status, ``None`` when no response arrived.
    :param zoom_code: Zoom's numeric error ``code`` (e.g. 3001 "Meeting does not exist"), if any.
    :param body: the decoded JSON body, or the (truncated) text of a non-JSON body.
    :param headers: the response headers.
    :param request_id: Zoom's ``x-zm-trackingid``, for support tickets and logs.
    :param operation: the client operation that failed (e.g. ``"create_meeting"``).
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        zoom_code: int | None = None,
        body: dict[str, Any] | str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        operation: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.zoom_code = zoom_code
        self.body = body
        self.headers = dict(headers or {})
        self.request_id = request_id
        self.operation = operation

    def __str__(self) -> str:
        facts = []
        if self.operation:
            facts.append(self.operation)
        if self.http_status is not None:
            facts.append(f"HTTP {self.http_status}")
        if self.zoom_code is not None:
            facts.append(f"Zoom code {self.zoom_code}")
        if self.request_id:
            facts.append(f"tracking id {self.request_id}")
        return f"{self.message} ({', '.join(facts)})" if facts else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r}, "
            f"zoom_code={self.zoom_code!r}, request_id={self.request_id!r})"
        )


class ZoomAuthError(ZoomError):
    """Zoom rejected our credentials or token (401 after one refresh, or the token endpoint)."""


class ZoomForbidden(ZoomError):
    """The app lacks a scope or the account/user may not do this (403)."""


class ZoomNotFound(ZoomError):
    """The meeting, registrant, user or recording does not exist (404)."""


class ZoomValidationError(ZoomError):
    """Zoom rejected the request body or parameters (400/422); ``errors`` lists field problems."""

    def __init__(self, message: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        body = self.body
        found = body.get("errors") if isinstance(body, dict) else None
        self.errors: list[dict[str, Any]] = found if isinstance(found, list) else []


class ZoomConflict(ZoomError):
    """The request conflicts with the resource's state (409)."""


class ZoomRateLimited(ZoomError):
    """Zoom's rate limit was hit (429).

    ``retry_after`` is how many seconds to wait, from ``Retry-After`` or, for a daily limit without
    one, the time until Zoom's daily reset at 00:00 UTC. ``daily`` tells a daily cap (retrying
    today is pointless) from a per-second one.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, daily: bool = False, **kwargs: Any
    ):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.daily = daily


class ZoomServerError(ZoomError):
    """Zoom failed on its side (5xx); safe calls are retried before this is raised."""


class ZoomConnectionError(ZoomError):
    """No answer from Zoom: connection refused or reset, DNS, TLS, or a timeout."""


_STATUS_CLASSES: dict[int, type[ZoomError]] = {
    400: ZoomValidationError,
    401: ZoomAuthError,
    403: ZoomForbidden,
    404: ZoomNotFound,
    409: ZoomConflict,
    422: ZoomValidationError,
    429: ZoomRateLimited,
}


def decode_body(response: requests.Response) -> dict[str, Any] | str:
    """Return the JSON object Zoom sent, or a bounded slice of the text when it is not JSON."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:_BODY_TEXT_LIMIT]
    return data if isinstance(data, dict) else str(data)[:_BODY_TEXT_LIMIT]


def error_from_response(
    response: requests.Response,
    *,
    operation: str | None = None,
    now: float | None = None,
    auth_endpoint: bool = False,
) -> ZoomError:
    """Build the error that matches a non-2xx response.

    :param now: the current epoch time, to turn an HTTP-date ``Retry-After`` into seconds.
    :param auth_endpoint: the response came from the OAuth token endpoint, where any client error
        means the credentials (or account id) are wrong.
    """
    status = response.status_code
    body = decode_body(response)
    zoom_code: int | None = None
    message = ""
    if isinstance(body, dict):
        raw_code = body.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            zoom_code = raw_code
        elif isinstance(raw_code, str) and raw_code.isdigit():
            zoom_code = int(raw_code)
        # The token endpoint speaks OAuth ({"reason", "error"}), the API speaks Zoom ({"message"}).
        message = str(body.get("message") or body.get("reason") or body.get("error") or "")
    if not message:
        message = f"Zoom answered HTTP {status} {response.reason or ''}".rstrip()

    headers = response.headers
    common: dict[str, Any] = {
        "http_status": status,
        "zoom_code": zoom_code,
        "body": body,
        "headers": headers,
        "request_id": headers.get("x-zm-trackingid"),
        "operation": operation,
    }
    if auth_endpoint and 400 <= status < 500 and status != 429:
        return ZoomAuthError(message, **common)
    if status == 429:
        now = time.time() if now is None else now
        daily = retry.is_daily_limit(headers.get("X-RateLimit-Type"), message)
        retry_after = retry.parse_retry_after(headers.get("Retry-After"), now)
        if retry_after is None and daily:
            retry_after = retry.seconds_until_daily_reset(now)
        return ZoomRateLimited(message, retry_after=retry_after, daily=daily, **common)
    if status >= 500:
        return ZoomServerError(message, **common)
    return _STATUS_CLASSES.get(status, ZoomError)(message, **common)
