"""Two-factor sign-in for tests: leads and admins made by the factories have a known TOTP seed,
and the sign-in helpers (`browser.login`, `staff_helpers.sign_in`) enter its code by themselves.

A test about enrolment makes a lead or admin without it:
``factories.user(db, org, role="admin", **NO_TWO_FACTOR)``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from companion import sealing
from companion.accounts import twofactor
from companion.accounts.models import User
from companion.accounts.twofactor_models import TotpUsedStep
from companion.db import utcnow

from .keys_helpers import suite_sealer

# The seed every factory-made lead and admin has (base32, 160 bits).
KNOWN_SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NO_TWO_FACTOR: dict[str, Any] = {"totp_secret_encrypted": None, "totp_enabled_at": None}
CODE_PAGE = "/login/code"


def enrolled_fields(seed: str = KNOWN_SEED, sealer: sealing.Sealer | None = None) -> dict[str, Any]:
    """User columns for two-factor already on with ``seed``."""
    return {
        "totp_secret_encrypted": twofactor.seal_seed(seed, sealer or suite_sealer()),
        "totp_enabled_at": utcnow(),
    }


def code_now(seed: str = KNOWN_SEED, *, offset_steps: int = 0) -> str:
    return twofactor.code_at(seed, twofactor.current_step(utcnow()) + offset_steps)


def fresh_code(app: Flask, email: str) -> str:
    """A valid code for ``email`` that has not been used yet (codes are single-use: a second
    sign-in in the same 30 s takes the next step's code, still inside the accepted window)."""
    provider = app.extensions["companion.sessions"]
    session = provider.open()
    try:
        sealed, user_id = session.execute(
            select(User.totp_secret_encrypted, User.id).where(User.email == email.strip().lower())
        ).one()
        last = session.scalar(
            select(func.max(TotpUsedStep.step)).where(TotpUsedStep.user_id == user_id)
        )
    finally:
        provider.close(session)
    seed = twofactor.open_seed(sealed, sealing.sealer_for(app))
    now_step = twofactor.current_step(utcnow())
    # The current step's code first, then later ones: the earliest code the window accepts
    # (the step before now) is refused if a 30-second boundary passes before the server checks
    # it, which a loaded machine made happen (a sign-in failing now and then).
    for step in range(now_step, now_step + twofactor.DRIFT_STEPS + 1):
        if last is None or step > last:
            return twofactor.code_at(seed, step)
    raise AssertionError(
        f"{email} has used every code of this 30-second window; advance the clock "
        "(clock.advance(seconds=30)) before signing in again"
    )


def finish_sign_in(client: FlaskClient, response: Any, email: str, **request_kwargs: Any) -> Any:
    """When the password step sends the browser to the code page, enter a fresh code there.

    Returns the code step's response (a redirect to where the sign-in was going), or the
    password step's own response when no code was asked for.
    """
    location = response.headers.get("Location", "") if response.status_code == 302 else ""
    if urlsplit(location).path != CODE_PAGE:
        return response
    from .conftest import csrf_from

    page = client.get(location, **request_kwargs)
    return client.post(
        location,
        data={
            "code": fresh_code(client.application, email),
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
        **request_kwargs,
    )
