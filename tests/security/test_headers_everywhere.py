"""Issue 6, item 4, the gaps: the strict CSP on every kind of page (staff, family, error),
no-referrer on family pages, family cookie flags, HSTS only over HTTPS, no caching of any
authenticated page, and no asset from another origin anywhere (the product works offline).

Already covered (referenced): staff cookie flags over http and https and HSTS on https
(tests/test_headers.py), no inline script/style/handlers in templates (tests/test_headers.py),
no-store on recording responses (tests/recordings/test_retrieval.py).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from companion import ROOT
from companion.accounts.services import hash_token
from companion.db import utcnow
from companion.families.models import FamilyLink

from . import world as w

HTTPS = "https://classes.example.org"


@pytest.fixture
def world(app: Flask, db_session: Session, org: Any, admin: Any, lead: Any) -> w.World:
    return w.build(db_session, app, org, admin, lead)


def assert_strict_csp(response: Any, where: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, where
    assert "script-src 'self'" in csp or "default-src 'none'" in csp, where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where


def test_csp_on_staff_family_error_and_public_pages(
    app: Flask, db_session: Session, world: w.World
) -> None:
    teacher = w.staff_client(app, world.teacher_x)
    lead = w.staff_client(app, world.lead)
    parent = w.parent_client(app, db_session, world.family_a)
    anon = app.test_client()
    pages = {
        "staff page": teacher.get("/courses/"),
        "lead page": lead.get("/safeguarding/"),
        "staff 403": teacher.get("/safeguarding/"),
        "staff 404": teacher.get(f"/courses/{world.course_y.id}"),
        "family page": parent.get("/f/"),
        "family calendar": parent.get("/f/calendar.ics"),
        "family 404": parent.post(f"/f/classes/{world.class_y.id}/audio-only"),
        "bad family link": anon.get("/f/" + "x" * 43),
        "no such page": anon.get("/no/such/page"),
        "method not allowed": anon.delete("/login"),
        "sign-in": anon.get("/login"),
        "api error": anon.get("/api/v1/me"),
    }
    for where, response in pages.items():
        assert_strict_csp(response, where)


def test_family_pages_send_no_referrer_and_are_not_cached(
    app: Flask, db_session: Session, world: w.World
) -> None:
    parent = w.parent_client(app, db_session, world.family_a)
    for path in ("/f/", "/f/calendar.ics"):
        response = parent.get(path)
        assert response.status_code == 200, path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert response.headers["Cache-Control"] == "no-store", path
    link_problem = app.test_client().get("/f/" + "y" * 43)
    assert link_problem.headers["Referrer-Policy"] == "no-referrer"


def test_staff_pages_of_every_role_are_not_cached(app: Flask, world: w.World) -> None:
    for person, path in (
        (world.teacher_x, "/courses/"),
        (world.lead, "/safeguarding/"),
        (world.lead, f"/safeguarding/concerns/{world.concern_y.id}"),
        (world.admin, "/staff"),
        (world.admin, "/audit/"),
    ):
        response = w.staff_client(app, person).get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store", path


def test_no_hsts_over_plain_http(app: Flask) -> None:
    assert not app.config["BASE_URL"].startswith("https://")
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers


class TestFamilyCookieOverHttps:
    @pytest.fixture
    def app_config(self) -> dict[str, Any]:
        return {"BASE_URL": HTTPS}

    def test_the_family_cookie_is_secure_httponly_and_samesite(
        self, app: Flask, db_session: Session, world: w.World
    ) -> None:
        raw = secrets.token_urlsafe(32)
        contact = world.family_a.contacts[0]
        db_session.add(
            FamilyLink(
                family_id=contact.family_id,
                contact_id=contact.id,
                token_hash=hash_token(raw),
                created_at=utcnow(),
            )
        )
        db_session.commit()
        response = app.test_client().get(f"/f/{raw}", base_url=HTTPS)
        assert response.status_code in (302, 303), response.get_data(as_text=True)[:300]
        [cookie] = [
            h for h in response.headers.getlist("Set-Cookie") if h.startswith("companion_family=")
        ]
        flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite", "path"} <= flags
        assert "samesite=lax" in cookie.lower() or "samesite=strict" in cookie.lower()
        assert "path=/f/" in cookie.lower()
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")


# --- no external assets --------------------------------------------------------------------------

# An attribute or CSS rule that makes the browser fetch (or post to) something. A link the
# person follows (<a href>, such as the Zoom join link) is navigation, not an asset.
ASSET = re.compile(
    r"""(?:\b(?:src|action|poster|data|srcset|formaction)\s*=\s*["']?\s*"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?\s*|url\(\s*["']?|@import\s+["'])"""
    r"""(?:https?:)?//""",
    re.I,
)


def asset_files() -> list[Any]:
    files = [p for p in (ROOT / "templates").rglob("*") if p.is_file()]
    files += [p for p in (ROOT / "static").rglob("*") if p.is_file()]
    return sorted(files)


@pytest.mark.parametrize("path", asset_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_is_loaded_from_another_origin(path: Any) -> None:
    source = path.read_text(encoding="utf-8", errors="replace")
    found = ASSET.search(source)
    assert found is None, f"{path.relative_to(ROOT)} loads {found.group(0)!r} from elsewhere"
    if path.suffix in (".html", ".svg"):
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", source, re.I) is None
        assert re.search(r"\sstyle\s*=|\son[a-z]+\s*=", source, re.I) is None


def test_the_scan_would_catch_an_external_asset() -> None:
    assert ASSET.search('<script src="https://cdn.example.com/x.js">')
    assert ASSET.search("<link href='//fonts.example.com/a.css'>")
    assert ASSET.search("body { background: url(https://evil.example/x.png) }")
    assert not ASSET.search('<a href="/courses/">')
    assert not ASSET.search('<a href="https://zoom.example/j/1">Join</a>')


def test_rendered_pages_load_nothing_from_another_origin(
    app: Flask, db_session: Session, world: w.World
) -> None:
    lead = w.staff_client(app, world.lead)
    parent = w.parent_client(app, db_session, world.family_a)
    for client, path in (
        (lead, "/safeguarding/"),
        (lead, f"/safeguarding/concerns/{world.concern_y.id}"),
        (lead, "/recordings/"),
        (parent, "/f/"),
    ):
        body = client.get(path).get_data(as_text=True)
        assert ASSET.search(body) is None, path
