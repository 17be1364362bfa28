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


# --- several processes (gunicorn) ------------------------------------------------------------
# One Python process serves one request's Python at a time (the GIL); waitress's threads overlap
# only the waiting. For more than one core, `companion serve --processes N` runs gunicorn: a
# master that starts N worker processes, each with its own threads (the gthread worker, so a
# slow reader or a long recording stream holds a thread, not a whole process), and restarts any
# that dies. Each worker builds its own app (nothing forked from a parent's open database
# connections).

# A worker that has not told the master it is alive for this long is killed and replaced. The
# gthread worker tells it from its main loop, whatever its threads are doing, so a long stream
# is not cut by it.
WORKER_TIMEOUT = 60
# On SIGTERM a worker stops taking requests and has this long to finish the ones it has.
GRACEFUL_TIMEOUT = 30
# Idle keep-alive connections close after this long (the reverse proxy keeps its own pool).
KEEPALIVE = 5


def process_options(*, host: str, port: int, processes: int, threads: int) -> dict[str, Any]:
    """gunicorn settings for companion's work (see the comments above)."""
    return {
        "bind": [f"{host}:{port}"],
        "workers": processes,
        "worker_class": "gthread",
        "threads": threads,
        # Connections one worker keeps open at once; as CONNECTION_LIMIT for waitress.
        "worker_connections": CONNECTION_LIMIT,
        "backlog": BACKLOG,
        "timeout": WORKER_TIMEOUT,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": KEEPALIVE,
        # The app logs what it does; gunicorn's access log would repeat every request.
        "accesslog": None,
        "errorlog": "-",
        "proc_name": "companion",
        # No `gunicorn.ctl` file in the working folder.
        "control_socket_disable": True,
    }


def serve_processes(
    make_app: Any, *, host: str, port: int, processes: int, threads: int = 8
) -> None:
    """Serve the app ``make_app()`` builds (in each worker process) with gunicorn until
    SIGTERM/SIGINT, which stops every worker after its running requests."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    from . import metrics

    options = process_options(host=host, port=port, processes=processes, threads=threads)

    def child_exit(_server: Any, worker: Any) -> None:
        metrics.mark_process_dead(worker.pid)

    class Companion(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:  # older gunicorn has no control socket settings
                    self.cfg.set(key, value)
            self.cfg.set("child_exit", child_exit)

        def load(self) -> Any:
            app = make_app()
            prepare(app)
            return app

    _allow_open_files(CONNECTION_LIMIT + 200)
    Companion().run()
