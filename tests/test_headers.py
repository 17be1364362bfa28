"""Security headers and cookie flags on every response; no inline script or style anywhere."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from companion import ROOT
from companion.accounts.models import User

from . import factories
from .conftest import csrf_from
from .staff_helpers import sign_in

HTTPS = "https://classes.example.org"


def set_cookie_headers(response: Any, name: str = "companion_session") -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]


def cookie_flags(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_every_response_carries_the_security_headers(client: FlaskClient) -> None:
    for path in ("/login", "/healthz", "/api/v1/openapi.json", "/no-such-page", "/api/v1/me"):
        response = client.get(path)
        h = response.headers
        csp = h["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "script-src 'self'" in csp and "object-src 'none'" in csp, path
        assert h["X-Frame-Options"] == "DENY", path
        assert h["X-Content-Type-Options"] == "nosniff", path
        assert h["Referrer-Policy"] == "same-origin", path
        assert "Strict-Transport-Security" not in h, f"{path}: HSTS over plain http"


def test_signed_in_pages_are_not_cached(client: FlaskClient, admin: User) -> None:
    assert "no-store" not in client.get("/login").headers.get("Cache-Control", "")
    sign_in(client, admin.email)
    for path in ("/", "/staff", "/account/tokens", "/admin/organisation/"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store", path


def test_api_responses_are_not_cached(client: FlaskClient) -> None:
    assert client.get("/api/v1/me").headers["Cache-Control"] == "no-store"


def test_session_cookie_flags_over_http(client: FlaskClient, admin: User) -> None:
    response = sign_in(client, admin.email)
    [header] = set_cookie_headers(response)
    flags = cookie_flags(header)
    assert "httponly" in flags
    assert "samesite=lax" in header.lower()
    assert "secure" not in flags, "a Secure cookie would never come back over plain http"


class TestBehindHttps:
    @pytest.fixture
    def app_config(self) -> dict[str, Any]:
        return {"BASE_URL": HTTPS}

    def test_cookie_is_secure_and_hsts_is_sent(
        self, app: Flask, client: FlaskClient, admin: User
    ) -> None:
        assert app.config["SECURE_COOKIES"] is True
        token = csrf_from(client.get("/login", base_url=HTTPS).get_data(as_text=True))
        response = client.post(
            "/login",
            base_url=HTTPS,
            data={
                "email": admin.email,
                "password": factories.PASSWORD,
                "csrf_token": token,
            },
            headers={"Referer": HTTPS + "/login"},
        )
        assert response.status_code == 302
        [header] = set_cookie_headers(response)
        assert {"secure", "httponly"} <= cookie_flags(header)
        assert "samesite=lax" in header.lower()
        hsts = response.headers["Strict-Transport-Security"]
        assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 31536000

    def test_invite_links_use_the_public_address(self, app: Flask) -> None:
        assert app.config["BASE_URL"] == HTTPS


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"javascript:", re.I)


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(ROOT) for p in (ROOT / "templates").rglob("*.html"))
)
def test_templates_have_no_inline_script_or_style(template: Any) -> None:
    source = (ROOT / template).read_text(encoding="utf-8")
    for pattern in (INLINE_SCRIPT, INLINE_STYLE, INLINE_HANDLER, JS_URL):
        match = pattern.search(source)
        assert match is None, f"{template}: {match.group(0) if match else ''!r} breaks the CSP"


POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", re.I | re.S)
# A page with many forms renders the hidden fields once: {% set action_fields = ....hidden_tag() %}
CSRF_FIELDS_SET = re.compile(r"{%-?\s*set\s+(\w+)\s*=\s*[\w.]+\.hidden_tag\(\)\s*-?%}")


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(ROOT) for p in (ROOT / "templates").rglob("*.html"))
)
def test_every_post_form_carries_a_csrf_token(template: Any) -> None:
    source = (ROOT / template).read_text(encoding="utf-8")
    rendered_once = CSRF_FIELDS_SET.findall(source)
    for body in POST_FORM.findall(source):
        carries = "hidden_tag()" in body or "csrf_token()" in body
        carries = carries or any("{{ " + name + " }}" in body for name in rendered_once)
        assert carries, f"{template}: form without CSRF"


def test_a_page_whose_form_goes_to_zoom_allows_only_zoom_besides_itself() -> None:
    from companion.security import CSP, csp_allowing_forms_to
    from companion.zoom.accessor import start_origins

    real = start_origins({"ZOOM_MODE": "zoom"})
    assert real == ("https://*.zoom.us", "https://*.zoomgov.com")
    sandbox = start_origins({"ZOOM_MODE": "sandbox", "SANDBOX_URL": "http://127.0.0.1:8765/x"})
    assert sandbox == ("http://127.0.0.1:8765",)
    policy = csp_allowing_forms_to(*real)
    assert "form-action 'self' https://*.zoom.us https://*.zoomgov.com;" in policy
    # Nothing else is loosened.
    assert policy.replace(" https://*.zoom.us https://*.zoomgov.com", "") == CSP
