"""The app's one Zoom client, built from its configuration on first use.

Tests (and the benchmark) put their own client in ``app.extensions[EXTENSION_KEY]``.
"""

from __future__ import annotations

import threading
from typing import cast

from flask import Flask, current_app

from .api import ZoomApi
from .client import client_from_config

EXTENSION_KEY = "companion.zoom_client"
_lock = threading.Lock()


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
