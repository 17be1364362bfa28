"""CSRF on every form, and the security headers every response carries."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from .access import signed_in_user
from .errors import CompanionError, domain_error_response

csrf = CSRFProtect()

# No inline script or style anywhere, and nothing loaded from another origin: the product works
# offline and an injected <script> has nowhere to run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def csp_allowing_forms_to(*origins: str) -> str:
    """The policy of a page one of whose forms ends, through companion's redirect, on another
    site (Chromium applies form-action to the redirects that follow a submit)."""
    return CSP.replace("form-action 'self'", " ".join(("form-action 'self'", *origins)))


class CsrfFailed(CompanionError):
    code = "csrf"
    status = 400


def init_app(app: Flask) -> None:
    csrf.init_app(app)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> Any:
        # Reuse the domain error page so the message is the same everywhere. Returned, not
        # raised: an exception raised inside an error handler becomes a 500.
        return domain_error_response(
            CsrfFailed(
                "This form has expired or was not sent from companion. "
                "Reload the page and try again."
            )
        )

    @app.after_request
    def _headers(response: Any) -> Any:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if g.get("family") is not None or request.path.startswith("/f/"):
            # Family pages carry personal links; never leak the URL to another site.
            h["Referrer-Policy"] = "no-referrer"
        if (
            signed_in_user() is not None
            or g.get("family") is not None
            or request.path.startswith("/api/")
            or response.status_code >= 400
        ):
            h["Cache-Control"] = "no-store"
            h["Pragma"] = "no-cache"
        if request.is_secure or app.config["BASE_URL"].startswith("https://"):
            h.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        return response
