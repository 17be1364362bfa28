"""Webhook delivery the way Zoom does it: signed, queued, retried, each attempt re-signed.

Every event is stored in the ``deliveries`` table with its body fixed at creation. An attempt
POSTs that body to the webhook URL with a fresh ``x-zm-request-timestamp`` and the signature
over it. Anything but a 2xx within the timeout (Zoom: three seconds) is a failure and is tried
again after 5, then 20, then 60 minutes (``Sandbox.retry_delays``; tests shorten them); after
the third retry the event is given up. Events do not wait for each other: a failing event does
not hold back later ones, so a receiver can see them out of order, as it can from Zoom.

``DeliveryWorker`` is the background thread ``companion sandbox serve`` runs; tests and the
admin endpoint can call :func:`deliver_due` directly instead.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests

from ..webhooks import signed_headers, url_validation_response
from .store import dumps, loads

if TYPE_CHECKING:
    from .core import Sandbox

log = logging.getLogger("companion.zoom.sandbox")

USER_AGENT = "Zoom Marketplace/1.0a"

# (url, body, headers, timeout) -> HTTP status; raises on a connection error or timeout.
Transport = Callable[[str, bytes, dict[str, str], float], int]


def http_transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    with requests.Session() as session:
        response = session.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
        return response.status_code


def event_body(
    sandbox: Sandbox,
    event: str,
    obj: dict[str, Any],
    *,
    event_ts: int,
    top: dict[str, Any] | None = None,
    payload_extra: dict[str, Any] | None = None,
) -> bytes:
    """Zoom's envelope, compact JSON like Zoom sends it."""
    payload: dict[str, Any] = {"account_id": sandbox.account_id}
    payload.update(payload_extra or {})
    payload["object"] = obj
    document: dict[str, Any] = {"event": event, "payload": payload, "event_ts": int(event_ts)}
    document.update(top or {})
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def enqueue(sandbox: Sandbox, event: str, body: bytes, *, due: float | None = None) -> int:
    now = sandbox.now()
    state = "pending" if sandbox.webhook_url else "undeliverable"
    cur = sandbox.store.execute(
        "INSERT INTO deliveries (event, body, state, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (event, body, state, now if due is None else due, now),
    )
    sandbox.delivery_wakeup.set()
    if cur.lastrowid is None:  # pragma: no cover - sqlite3 sets it after every INSERT
        raise RuntimeError("the delivery was not stored")
    return cur.lastrowid


def headers_for(sandbox: Sandbox, body: bytes) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "x-zm-trackingid": "v=2.0;clid=sandbox;rid=" + secrets.token_hex(8),
        "X-Companion-Sandbox": "1",
    }
    headers.update(signed_headers(sandbox.webhook_secret, body, now=sandbox.now()))
    return headers


def _attempt(sandbox: Sandbox, row: Any) -> bool:
    body = bytes(row["body"])
    headers = headers_for(sandbox, body)
    transport: Transport = sandbox.webhook_transport or http_transport
    entry: dict[str, Any] = {
        "at": sandbox.now(),
        "timestamp": headers["x-zm-request-timestamp"],
        "signature": headers["x-zm-signature"],
    }
    status: int | None = None
    try:
        status = transport(sandbox.webhook_url or "", body, headers, sandbox.delivery_timeout)
        entry["status"] = status
        ok = 200 <= status < 300
        error = None if ok else f"HTTP {status}"
    except Exception as exc:  # any failure to get an answer is a failed attempt
        ok = False
        error = f"{type(exc).__name__}: {exc}"[:500]
        entry["error"] = error
    attempts = row["attempts"] + 1
    now = sandbox.now()
    log_entries = loads(row["log"]) + [entry]
    if ok:
        state, next_at, delivered_at = "delivered", row["next_attempt_at"], now
    elif attempts <= len(sandbox.retry_delays):
        state, next_at, delivered_at = "pending", now + sandbox.retry_delays[attempts - 1], None
    else:
        state, next_at, delivered_at = "failed", row["next_attempt_at"], None
    sandbox.store.execute(
        "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, delivered_at = ?, "
        "last_status = ?, last_error = ?, log = ? WHERE id = ?",
        (state, attempts, next_at, delivered_at, status, error, dumps(log_entries), row["id"]),
    )
    if not ok:
        log.info("webhook %s (%s) attempt %d failed: %s", row["id"], row["event"], attempts, error)
    return ok


def deliver_due(sandbox: Sandbox, *, force: bool = False) -> int:
    """Attempt every pending delivery that is due (or all pending ones with ``force``).

    Returns how many attempts were made. Serialised per sandbox, so the background worker and
    an admin request never send the same attempt twice.
    """
    if not sandbox.webhook_url:
        return 0
    with sandbox.delivery_lock:
        if force:
            rows = sandbox.store.query(
                "SELECT * FROM deliveries WHERE state = 'pending' ORDER BY next_attempt_at, id"
            )
        else:
            rows = sandbox.store.query(
                "SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id",
                (sandbox.now(),),
            )
        for row in rows:
            _attempt(sandbox, row)
        return len(rows)


def redeliver(sandbox: Sandbox, delivery_id: int) -> dict[str, Any]:
    """Send an event again now, as Zoom does when a slow 2xx made it retry."""
    row = sandbox.store.one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    if row is None:
        raise KeyError(delivery_id)
    with sandbox.delivery_lock:
        ok = _attempt(sandbox, row)
    return {"id": delivery_id, "delivered": ok, **delivery(sandbox, delivery_id)}


def delivery(sandbox: Sandbox, delivery_id: int) -> dict[str, Any]:
    row = sandbox.store.one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    if row is None:
        raise KeyError(delivery_id)
    return {
        "id": row["id"],
        "event": row["event"],
        "state": row["state"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "log": loads(row["log"]),
        "body": loads(bytes(row["body"])),
    }


def deliveries(sandbox: Sandbox, *, since_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    rows = sandbox.store.query(
        "SELECT id FROM deliveries WHERE id > ? ORDER BY id LIMIT ?", (since_id, limit)
    )
    return [delivery(sandbox, r["id"]) for r in rows]


def next_due_in(sandbox: Sandbox) -> float | None:
    row = sandbox.store.one(
        "SELECT min(next_attempt_at) AS due FROM deliveries WHERE state = 'pending'"
    )
    if row is None or row["due"] is None:
        return None
    due: float = row["due"]
    return max(0.0, due - sandbox.now())


def validate_endpoint(sandbox: Sandbox) -> dict[str, Any]:
    """Zoom's ``endpoint.url_validation`` challenge against the webhook URL."""
    if not sandbox.webhook_url:
        return {"ok": False, "reason": "no webhook URL configured"}
    plain = secrets.token_urlsafe(16)
    body = json.dumps(
        {
            "payload": {"plainToken": plain},
            "event_ts": int(sandbox.now() * 1000),
            "event": "endpoint.url_validation",
        },
        separators=(",", ":"),
    ).encode()
    headers = headers_for(sandbox, body)
    try:
        with requests.Session() as session:
            response = session.post(
                sandbox.webhook_url,
                data=body,
                headers=headers,
                timeout=sandbox.delivery_timeout,
                allow_redirects=False,
            )
    except requests.RequestException as exc:
        return {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    try:
        answer = response.json()
    except ValueError:
        answer = None
    expected = url_validation_response(sandbox.webhook_secret, plain)
    ok = response.status_code in (200, 204) and answer == expected
    reason = "validated" if ok else f"HTTP {response.status_code}, answer {answer!r}"
    return {"ok": ok, "status": response.status_code, "reason": reason}


class DeliveryWorker(threading.Thread):
    """Background sender for ``companion sandbox serve``."""

    def __init__(self, sandbox: Sandbox, *, poll: float = 1.0, validate: bool = True):
        super().__init__(name="zoom-sandbox-webhooks", daemon=True)
        self.sandbox = sandbox
        self.poll = poll
        self.validate = validate
        self._stop_event = threading.Event()
        self.validation: dict[str, Any] | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.sandbox.delivery_wakeup.set()

    def run(self) -> None:
        if self.validate and self.sandbox.webhook_url:
            # Separately, so that events are not held back while companion is starting.
            threading.Thread(
                target=self._validate_once, name="zoom-sandbox-url-validation", daemon=True
            ).start()
        while not self._stop_event.is_set():
            try:
                deliver_due(self.sandbox)
            except Exception:
                log.exception("webhook delivery failed")
            due = next_due_in(self.sandbox)
            wait = self.poll if due is None else min(self.poll, max(due, 0.01))
            self.sandbox.delivery_wakeup.wait(wait)
            self.sandbox.delivery_wakeup.clear()

    def _validate_once(self) -> None:
        # Companion may still be starting; try for a while before reporting.
        for _ in range(30):
            if self._stop_event.is_set():
                return
            self.validation = validate_endpoint(self.sandbox)
            if self.validation["ok"]:
                log.info("webhook endpoint %s validated", self.sandbox.webhook_url)
                return
            self._stop_event.wait(1.0)
        log.warning(
            "webhook endpoint %s did not pass URL validation: %s",
            self.sandbox.webhook_url,
            self.validation and self.validation.get("reason"),
        )
