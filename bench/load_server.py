"""The server that ``load_bench.py`` measures, in a process of its own.

    .venv/bin/python bench/load_server.py SPEC.json

``SPEC.json`` holds ``config`` (companion's settings), ``instance_path``, ``port`` and
``threads``. The app is served exactly as ``companion serve`` serves it (``serving.prepare`` and
``serving.serve``, so whatever waitress settings that module chooses apply here too), with one
difference: a bare one-route Flask app is mounted at ``/_bare`` in front of it, on the same server
and the same threads, so the bench can measure what the server itself costs in the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from companion import create_app, serving


def bare_app() -> Flask:
    """The baseline: Flask and the server, nothing of companion (no database, no template)."""
    bare = Flask("bare")

    @bare.get("/")
    def hello() -> Any:
        return {"status": "ok"}

    return bare


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    app = create_app(spec["config"], instance_path=spec["instance_path"], environ={})
    wsgi = DispatcherMiddleware(app.wsgi_app, {"/_bare": bare_app()})
    app.wsgi_app = wsgi  # type: ignore[method-assign]
    serving.prepare(app)
    serving.serve(app, host="127.0.0.1", port=int(spec["port"]), threads=int(spec["threads"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
