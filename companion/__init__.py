"""companion: safe-by-default online classes for children over Zoom."""

from __future__ import annotations

import datetime as dt
import logging
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
    logging.basicConfig(level=app.config["LOG_LEVEL"].upper())

    from . import access, db, errors, security, web
    from .accounts import views as accounts_views
    from .api import views as api_views
    from .audit import views as audit_views
    from .courses import api as courses_api
    from .courses import views as courses_views
    from .families import api as families_api
    from .families import family_views
    from .families import views as families_views
    from .mail import views as mail_views
    from .orgs import views as orgs_views

    db.init_app(app)
    # Recording keys: a missing, malformed or wrong key-encryption key stops the start here.
    from .recordings import vault

    vault.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    access.init_app(app)
    web.init_app(app)
    family_views.init_app(app)

    app.register_blueprint(web.bp)
    app.register_blueprint(accounts_views.bp)
    app.register_blueprint(orgs_views.bp)
    app.register_blueprint(mail_views.bp)
    app.register_blueprint(api_views.bp)
    app.register_blueprint(audit_views.bp)
    app.register_blueprint(courses_views.bp)
    app.register_blueprint(courses_api.bp)
    app.register_blueprint(families_views.bp)
    app.register_blueprint(families_views.agreement_bp)
    app.register_blueprint(family_views.bp)
    app.register_blueprint(families_api.bp)
    from .accounts import twofactor_views
    from .security_review import views as security_review_views

    app.register_blueprint(twofactor_views.bp)
    app.register_blueprint(security_review_views.bp)
    from .recordings import views as recordings_views
    from .webhooks import views as webhooks_views

    app.register_blueprint(recordings_views.bp)
    app.register_blueprint(recordings_views.concerns_bp)
    app.register_blueprint(webhooks_views.bp)
    from .evidence import views as evidence_views

    evidence_views.init_app(app)
    from .safeguarding import denials
    from .safeguarding import views as safeguarding_views

    app.register_blueprint(safeguarding_views.bp)
    denials.init_app(app)
    return app
