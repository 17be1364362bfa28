"""A committed database of a test's own, and a way into it as a signed-in staff member.

For tests of real concurrency (locks, streams, the production server), where the rolled-back
session of ``tests/conftest.py`` cannot show anything: every request there shares one
connection, so nobody can wait on anybody.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from companion import ROOT
from companion.accounts import services as accounts
from companion.accounts.models import User
from companion.db import utcnow

from .conftest import SECRET, TEST_KEYS_ENV


def signed_in_cookie(app: Flask, engine: Engine, user_id: int) -> dict[str, str]:
    """The cookie of a browser in which ``user_id`` has signed in (both factors)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        user = session.get(User, user_id)
        assert user is not None
        now = utcnow()
        raw = accounts.start_session(session, user, now=now, ip="127.0.0.1")
        row = session.scalars(
            accounts.select(accounts.StaffSession).where(
                accounts.StaffSession.token_hash == accounts.hash_token(raw)
            )
        ).one()
        row.second_factor_at = now
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    return {app.config["SESSION_COOKIE_NAME"]: serializer.dumps({"sid": raw, "_permanent": True})}


def companion_env(database_url: str, instance: Path, **extra: str) -> dict[str, str]:
    """The environment of a `companion` command run against that database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPANION_")}
    env.update(
        {
            "COMPANION_DATABASE_URL": database_url,
            "COMPANION_SECRET_KEY": SECRET,
            **TEST_KEYS_ENV,
            "COMPANION_STORAGE_DIR": str(instance / "recordings"),
            "COMPANION_INSTANCE_PATH": str(instance),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def companion_command(args: list[str], env: dict[str, str], **kwargs: Any) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "companion", *args],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        **kwargs,
    )
