"""The home page and the health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, url_for

from .access import ROLE_LABELS, public, signed_in_user

bp = Blueprint("web", __name__)


def init_app(app: Flask) -> None:
    from . import policy

    # Templates ask the same rules the services enforce (companion.policy).
    app.jinja_env.globals.update(policy=policy, nav_items=policy.nav_items)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "current_user": signed_in_user(),
            "role_labels": ROLE_LABELS,
            "zoom_mode": current_app.config["ZOOM_MODE"],
        }


def warm_templates(app: Flask) -> int:
    """Compile every template before the server starts its threads.

    CPython 3.11 before 3.11.8 can fail with "AST constructor recursion depth mismatch" when two
    threads compile Python code at once (python/cpython#106905); Jinja compiles each template on
    first use. Compiling them all up front, in one thread, leaves nothing to race over.
    """
    names = app.jinja_env.list_templates(extensions=["html", "txt", "ics"])
    for name in names:
        app.jinja_env.get_template(name)
    return len(names)


def describe_database(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


@bp.get("/")
@public
def home() -> Any:
    user = signed_in_user()
    if user is None:
        return redirect(url_for("accounts.login"))
    return render_template("home.html", user=user)


@bp.get("/healthz")
@public
def healthz() -> Any:
    """Liveness and what the service is wired to; never a secret or a URL with credentials.

    It asks nothing of the database or the storage: a process manager restarts a process whose
    liveness fails, and a database that blinked is no reason to restart every web process.
    Whether the process can serve now is ``/readyz`` (companion/health.py)."""
    cfg = current_app.config
    body = {
        "status": "ok",
        "database": describe_database(cfg["DATABASE_URL"]),
        "zoom": cfg["ZOOM_MODE"],
        "zoom_sandbox": cfg["ZOOM_MODE"] == "sandbox",
        "mail": "smtp" if cfg["SMTP_HOST"] else "outbox",
        "storage": "s3-encrypted" if cfg.get("STORAGE_URL") else "local-encrypted",
    }
    return jsonify(body), 200
