"""The production web server: one place that says how companion is served (waitress), so that
`companion serve`, the benchmarks and the tests serve it the same way."""

from __future__ import annotations

import logging
import resource
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

MiB = 1024 * 1024

# The largest piece of body the app hands waitress at once (recordings/views.py STREAM_CHUNK is
# 256 KiB; the audit CSV export writes about 64 KiB at a time; pages are far smaller).
LARGEST_CHUNK = 1 * MiB

# How much of a response waitress holds in memory per connection before the app's thread waits
# for the client (waitress blocks the writing thread in write_soon while more than this is
# unsent: that is the back-pressure a slow reader puts on a stream).
OUTBUF_HIGH_WATERMARK = 4 * MiB

# waitress moves an output buffer to a temporary file once it holds outbuf_overflow bytes
# (waitress/buffers.py OverflowableBuffer). A buffer holds at most the high watermark plus one
# chunk (channel.py rotates to a new buffer once the current one reached the watermark), so an
# overflow above that means nothing is ever written to disk: no decrypted recording in /tmp.
OUTBUF_OVERFLOW = OUTBUF_HIGH_WATERMARK + 2 * LARGEST_CHUNK

# Connections waitress keeps open at once. Zoom and other webhook senders keep connections
# alive; at the default 100, the 101st sender waited in the listen queue until an idle
# connection timed out (minutes), i.e. past Zoom's 3 s. An idle connection costs one file
# descriptor and a few KiB, so allow many; requests beyond the thread count then queue for a
# thread (waitress's task queue) instead of waiting to be accepted.
CONNECTION_LIMIT = 1000

# The kernel's queue of connections not yet accepted (capped by net.core.somaxconn): a burst
# of new connections waits there for a moment instead of being refused.
BACKLOG = 2048

# An idle keep-alive connection is closed after this long (checked every CLEANUP_INTERVAL), so
# abandoned connections give their place back; a connection with a request in progress (a
# slow reader of a recording) is never closed by it.
CHANNEL_TIMEOUT = 60
CLEANUP_INTERVAL = 10


def server_options(*, threads: int) -> dict[str, Any]:
    """waitress settings for companion's work (see the comments on each)."""
    return {
        "threads": threads,
        "ident": "companion",
        "connection_limit": CONNECTION_LIMIT,
        "backlog": BACKLOG,
        "channel_timeout": CHANNEL_TIMEOUT,
        "cleanup_interval": CLEANUP_INTERVAL,
        "outbuf_high_watermark": OUTBUF_HIGH_WATERMARK,
        "outbuf_overflow": OUTBUF_OVERFLOW,
        # select() cannot watch file descriptors numbered 1024 or more; with a thousand
        # connections plus the database and storage files, poll() is needed.
        "asyncore_use_poll": True,
    }


def _allow_open_files(wanted: int) -> None:
    """Raise this process's open-file limit so the connection limit can be reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open-file limit %s is below the %s connections allowed", target, wanted)


def serve(wsgi_app: Any, *, host: str, port: int, threads: int = 8) -> None:
    """Serve ``wsgi_app`` (the companion app, or one that wraps it) until interrupted."""
    import waitress

    # Each connection is a descriptor; leave room for the database, storage and mail.
    _allow_open_files(CONNECTION_LIMIT + 200)
    waitress.serve(wsgi_app, host=host, port=port, **server_options(threads=threads))


def prepare(app: Flask) -> None:
    """What a production process does before its first request."""
    from .web import warm_templates

    warm_templates(app)
