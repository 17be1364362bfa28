"""The app's one Zoom client, built from its configuration on first use.

Tests (and the benchmark) put their own client in ``app.extensions[EXTENSION_KEY]``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Flask, current_app

from .api import ZoomApi
from .client import client_from_config

EXTENSION_KEY = "companion.zoom_client"
_lock = threading.Lock()


def start_origins(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Where a host's start link leads: Zoom's web sites (a start URL is on the account's
    zoom.us subdomain, or zoomgov.com for government accounts), or the sandbox.

    Source: Zoom's "Start a meeting" workflow (developers.zoom.us/docs/isv/workflows/
    start-meeting): the host is handed the meeting's ``start_url``, a ``/s/<meeting id>`` address
    on the account's zoom.us host (e.g. ``us05web.zoom.us``); Zoom for Government accounts are
    served from zoomgov.com instead. The sandbox answers ``<SANDBOX_URL>/s/<id>``
    (zoom/sandbox/routes/links.py).
    """
    if config.get("ZOOM_MODE") == "sandbox":
        parts = urlsplit(str(config.get("SANDBOX_URL") or ""))
        return (f"{parts.scheme}://{parts.netloc}",) if parts.scheme and parts.netloc else ()
    return ("https://*.zoom.us", "https://*.zoomgov.com")


def zoom_for(app: Flask | None = None) -> ZoomApi:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    client = app.extensions.get(EXTENSION_KEY)
    if client is None:
        with _lock:
            client = app.extensions.get(EXTENSION_KEY)
            if client is None:
                built: ZoomApi = client_from_config(app.config)
                app.extensions[EXTENSION_KEY] = client = built
    # Whatever a test put there stands in for the client: any object with ZoomApi's methods.
    return cast(ZoomApi, client)
