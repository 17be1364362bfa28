"""The production web server: one place that says how companion is served (waitress), so that
`companion serve`, the benchmarks and the tests serve it the same way."""

from __future__ import annotations

from typing import Any

from flask import Flask


def server_options(*, threads: int) -> dict[str, Any]:
    """waitress settings for companion's work (see the comments on each)."""
    return {"threads": threads, "ident": "companion"}


def serve(wsgi_app: Any, *, host: str, port: int, threads: int = 8) -> None:
    """Serve ``wsgi_app`` (the companion app, or one that wraps it) until interrupted."""
    import waitress

    waitress.serve(wsgi_app, host=host, port=port, **server_options(threads=threads))


def prepare(app: Flask) -> None:
    """What a production process does before its first request."""
    from .web import warm_templates

    warm_templates(app)
