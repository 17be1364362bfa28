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

How the package is laid out: the state (plain Python, no Flask) is one object,
``core.Sandbox``, composed of one mixin per Zoom resource over ``base.SandboxBase`` (the store,
clock, URLs and keys); the HTTP app maps Zoom's paths onto it with one blueprint per resource.

    core.py         Sandbox: the composition, the simulation entry point, the whole-state view
    base.py         SandboxBase and the helpers every part uses (transactions, ids, paging)
    tokens.py       OAuth access tokens, start-link (ZAK) and recording download tokens
    account.py      the host user, default meeting settings, account locks, settings rules
    meetings.py     meetings and their occurrences
    registrants.py  registrants
    recordings.py   cloud recordings and the signed links of their files
    admin.py        what Zoom does not do: injected faults, settings changed by hand, counters
    app.py          the WSGI app: hooks and error bodies for every request, the endpoint list
    routes/         the views, one blueprint per resource (oauth, meetings, registrants,
                    recordings, links, admin) and their shared request helpers (common.py)
    simulate.py     a simulated class: its events, and the recording it leaves
    delivery.py     webhook queue, signing, retries and endpoint validation
    schedule.py     occurrences of a recurring meeting in its time zone (zoneinfo)
    validation.py   Zoom's field rules for meeting and registrant bodies
    store.py        the sandbox's own SQLite file; errors.py, media.py, cli.py
"""

from __future__ import annotations

try:  # one definition when the client package provides them
    from companion.zoom import (
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
