"""companion: safe-by-default online classes for children over Zoom."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

__all__ = ["create_app"]

ROOT = Path(__file__).resolve().parent.parent


def create_app(
    test_config: Mapping[str, Any] | None = None,
    *,
    instance_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Flask:
    """Build the web app: validated config, database, access rules, blueprints.

    Raises :class:`companion.config.ConfigError` when configuration is missing or malformed.
    """
    from . import config as config_module

    if instance_path is None:
        instance_path = os.environ.get("COMPANION_INSTANCE_PATH") or ROOT / "instance"
    instance = Path(instance_path).resolve()
    # The default database and key files live here; it holds secrets, so only the owner reads it.
    instance.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = config_module.load(instance, environ=environ, overrides=test_config)

    app = Flask(
        __name__,
        instance_path=str(instance),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(settings)
    secure = app.config["SECURE_COOKIES"]
    app.config.update(
        SESSION_COOKIE_NAME="companion_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"]),
        WTF_CSRF_TIME_LIMIT=None,  # the CSRF token lives as long as the server-side session
        WTF_CSRF_SSL_STRICT=secure,
        # Flask's own default is "no limit"; uploads (CSV) and webhooks are small.
        MAX_CONTENT_LENGTH=settings.get("MAX_CONTENT_LENGTH") or 5 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    from . import logs

    logs.configure(app.config)

    from . import access, db, errors, health, metrics, sealing, security, web
    from . import evidence as evidence_package
    from . import families as families_package
    from . import recordings as recordings_package
    from .accounts import twofactor_views
    from .accounts import views as accounts_views
    from .api import views as api_views
    from .audit import views as audit_views
    from .courses import api as courses_api
    from .courses import views as courses_views
    from .evidence import signing as evidence_signing
    from .evidence import views as evidence_views
    from .families import api as families_api
    from .families import family_views
    from .families import views as families_views
    from .mail import views as mail_views
    from .orgs import views as orgs_views
    from .recordings import vault
    from .recordings import views as recordings_views
    from .safeguarding import denials
    from .safeguarding import views as safeguarding_views
    from .security_review import views as security_review_views
    from .webhooks import views as webhooks_views

    db.init_app(app)
    # Keys, each for one purpose and none of them SECRET_KEY (README, "Keys"): a missing,
    # malformed or wrong key of any kind stops the start here, all named in one message.
    problems: list[str] = []
    for init_keys in (vault.init_app, sealing.init_app, evidence_signing.init_app):
        try:
            init_keys(app)
        except config_module.ConfigError as exc:
            problems += exc.problems
    if problems:
        raise config_module.ConfigError(problems)
    errors.init_app(app)
    security.init_app(app)
    metrics.init_app(app)
    access.init_app(app)
    web.init_app(app)
    family_views.init_app(app)
    evidence_views.init_app(app)
    denials.init_app(app)
    # Cross-package reactions (companion.signals): each package connects its receivers here, for
    # every app built (web, worker, commands) and never at import, so what a process happened to
    # import cannot decide whether, say, parents are told of a change. Receivers do not depend on
    # each other's order; packages come after those they react to.
    families_package.init_app(app)
    evidence_package.init_app(app)
    recordings_package.init_app(app)

    for blueprint in (
        web.bp,
        health.bp,
        metrics.bp,
        accounts_views.bp,
        twofactor_views.bp,
        orgs_views.bp,
        mail_views.bp,
        api_views.bp,
        audit_views.bp,
        security_review_views.bp,
        courses_views.bp,
        courses_api.bp,
        families_views.bp,
        families_views.agreement_bp,
        family_views.bp,
        families_api.bp,
        recordings_views.bp,
        recordings_views.concerns_bp,
        webhooks_views.bp,
        safeguarding_views.bp,
    ):
        app.register_blueprint(blueprint)
    return app
