"""A local stand-in for Zoom: the part of Zoom's API companion uses, plus simulated classes.

It is NOT Zoom: every response carries ``X-Companion-Sandbox: 1``. It runs as its own process
(``companion sandbox serve``) with its own SQLite store, serves Zoom's paths under ``/v2`` with
Zoom's status codes, error bodies and validation rules, issues tokens at ``/oauth/token`` for the
fixed credentials below, and sends webhooks signed exactly as Zoom signs them. See ``app.py`` for
the endpoint list and ``simulate.py`` for what a simulated class emits.

    app = create_sandbox_app("sandbox.sqlite3", webhook_url="http://127.0.0.1:5000/zoom/webhook",
                             webhook_secret=secret, public_url="http://127.0.0.1:5001")
    sandbox = app.extensions["zoom_sandbox"]
    sandbox.simulate_class(meeting_id, participants=[registrant_id, "A guest"])
"""

from __future__ import annotations

try:  # one definition when the client package provides them
    from companion.zoom import (  # type: ignore[attr-defined]
        SANDBOX_ACCOUNT_ID,
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
    )
except ImportError:  # pragma: no cover - only while the client package is incomplete
    SANDBOX_ACCOUNT_ID = "sandbox-account"
    SANDBOX_CLIENT_ID = "sandbox-client"
    SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - a fixed, public test credential

from .app import SANDBOX_HEADER, create_sandbox_app, sandbox_of  # noqa: E402
from .core import HOST_EMAIL, HOST_USER_ID, Sandbox  # noqa: E402
from .delivery import DeliveryWorker, deliver_due, validate_endpoint  # noqa: E402
from .simulate import end_instance, simulate_class  # noqa: E402

__all__ = [
    "HOST_EMAIL",
    "HOST_USER_ID",
    "SANDBOX_ACCOUNT_ID",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_HEADER",
    "DeliveryWorker",
    "Sandbox",
    "create_sandbox_app",
    "deliver_due",
    "end_instance",
    "sandbox_of",
    "simulate_class",
    "validate_endpoint",
]
