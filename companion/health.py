"""Readiness: whether this process can do its work now (``GET /readyz``).

``/healthz`` (``web.py``) says the process is alive and how it is wired, so a process manager
restarts only a process that is stuck, never every web process because the database blinked.
``/readyz`` is what a load balancer asks before sending traffic: it checks, each on its own,

* the database: one ``SELECT 1`` on a connection of the pool;
* the recordings storage: the storage's own quick check (the local folder is there and
  writable; the bucket answers a one-key listing with these credentials);
* the keys: each kind of key (recordings, sealing, evidence signing) loads from its setting or
  file as configured now, and the recordings keys still match the check values in the database.

It answers 200 when all pass and 503 otherwise, with JSON naming every check and, for a failed
one, a short reason. The reason is written for the body: it never carries a URL, a path, a key
or an exception's text (which may hold any of them); those go to the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from .access import public
from .db import get_engine

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


class NotReady(Exception):
    """A check failed; ``reason`` is safe to show to anyone."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_database(app: Flask) -> None:
    from .db import get_session

    session = get_session()
    try:
        # The request's own session: on SQLite it reads without taking the write lock.
        session.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness: the database is not reachable: %s", _first_line(exc))
        raise NotReady("the database cannot be reached") from exc
    finally:
        # The storage check that follows may call an object store: not with a transaction open.
        session.rollback()


def check_storage(app: Flask) -> None:
    from .recordings import vault
    from .recordings.storage import StorageError

    try:
        vault.storage_for(app).check()
    except StorageError as exc:
        log.warning("readiness: the recordings storage is not usable: %s", exc.message)
        kind = "object store" if app.config.get("STORAGE_URL") else "folder"
        raise NotReady(f"the recordings {kind} is not usable ({exc.code})") from exc
    except Exception as exc:
        log.warning("readiness: the recordings storage check failed: %s", _first_line(exc))
        raise NotReady("the recordings storage could not be checked") from exc


def check_keys(app: Flask) -> None:
    from .evidence import signing
    from .sealing import check_database as check_sealed_values
    from .sealing import sealer_from_config

    failed = []
    for name, load in (
        ("recordings", _recordings_keys),
        ("sealing", lambda a: check_sealed_values(sealer_from_config(a.config), get_engine(a))),
        ("signing", lambda a: signing.signing_keys_from_config(a.config)),
    ):
        try:
            load(app)
        except Exception as exc:
            log.warning("readiness: the %s keys do not load: %s", name, _first_line(exc))
            failed.append(name)
    if failed:
        raise NotReady(f"these keys do not load or do not match the database: {', '.join(failed)}")


def _recordings_keys(app: Flask) -> None:
    from .recordings import keys, vault

    keyring = keys.load_keyring(app.config)
    try:
        known = vault.known_check_values(get_engine(app))
    except Exception:
        return  # the database check says so; the keys themselves loaded
    keys.verify_keyring(keyring, known)


CHECKS: tuple[tuple[str, Callable[[Flask], None]], ...] = (
    ("database", check_database),
    ("storage", check_storage),
    ("keys", check_keys),
)


def readiness(app: Flask) -> tuple[bool, dict[str, Any]]:
    """Run every check (one failing does not hide the others); the body of ``/readyz``."""
    checks: dict[str, Any] = {}
    for name, check in CHECKS:
        try:
            check(app)
        except NotReady as exc:
            checks[name] = {"ok": False, "error": exc.reason}
        else:
            checks[name] = {"ok": True}
    ready = all(c["ok"] for c in checks.values())
    failed = [name for name, c in checks.items() if not c["ok"]]
    return ready, {
        "status": "ready" if ready else "not ready",
        "failed": failed,
        "checks": checks,
        # Which web process answered (several serve behind one port): for the operator.
        "process": os.getpid(),
    }


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


@bp.get("/readyz")
@public
def readyz() -> Any:
    ready, body = readiness(current_app._get_current_object())  # type: ignore[attr-defined]
    return jsonify(body), 200 if ready else 503
