"""Deny by default: every route declares who may use it, and the declarations hold.

These tests walk the app's URL map, so every route any package adds is covered automatically.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.routing import Rule as UrlRule
from werkzeug.routing.converters import AnyConverter, UUIDConverter

from companion.access import ROLES, allow, family, public, rule_for
from companion.accounts import services
from companion.accounts.models import User

from . import factories
from .staff_helpers import csrf_of, sign_in

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def undeclared(app: Flask) -> list[str]:
    return sorted(
        f"{rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule_for(app, rule.endpoint) is None
    )


def sample_path(rule: UrlRule) -> str:
    """The rule's URL with every parameter filled in with 1 (or the converter's equivalent)."""
    values: dict[str, Any] = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        if isinstance(converter, UUIDConverter):
            values[name] = uuid.UUID(int=1)
        elif isinstance(converter, AnyConverter):
            values[name] = converter.items[0]  # type: ignore[attr-defined]
        else:
            values[name] = 1
    built = rule.build(values, append_unknown=False)
    assert built is not None, rule.rule
    return built[1]


def routes(app: Flask, kinds: set[str]) -> list[tuple[str, str, UrlRule]]:
    found = []
    for rule in app.url_map.iter_rules():
        access = rule_for(app, rule.endpoint)
        if access is None or access.kind not in kinds:
            continue
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            found.append((method, sample_path(rule), rule))
    return found


def call(client: FlaskClient, method: str, path: str, csrf: str, **kwargs: Any) -> Any:
    if method == "GET":
        return client.get(path, **kwargs)
    if path.startswith("/api/"):
        return client.open(path, method=method, json={}, **kwargs)
    # A valid CSRF token, so that what refuses the request is the access rule, not CSRF.
    return client.open(path, method=method, data={"csrf_token": csrf}, **kwargs)


def test_every_route_declares_who_may_use_it(app: Flask) -> None:
    assert undeclared(app) == []


def test_a_route_without_declaration_is_caught_and_refused(app: Flask, client: FlaskClient) -> None:
    app.add_url_rule("/forgotten", endpoint="forgotten", view_func=lambda: "secret stuff")

    assert undeclared(app) == ["/forgotten (forgotten)"]
    response = client.get("/forgotten")
    assert response.status_code == 403
    assert "secret stuff" not in response.get_data(as_text=True)


def test_anonymous_requests_to_every_protected_route_are_refused(
    app: Flask, client: FlaskClient
) -> None:
    csrf = csrf_of(client, "/login")
    protected = routes(app, {"staff", "family"})
    assert any(path.startswith("/api/") for _, path, _ in protected)
    assert any(not path.startswith("/api/") for _, path, _ in protected)

    for method, path, rule in protected:
        response = call(client, method, path, csrf)
        where = f"{method} {path}"
        kind = rule_for(app, rule.endpoint).kind  # type: ignore[union-attr]
        if kind == "family":
            assert response.status_code == 401, where
        elif path.startswith("/api/"):
            assert response.status_code == 401, where
            assert response.json["error"]["code"] == "unauthorized", where
        else:
            assert response.status_code == 302, where
            assert response.headers["Location"].startswith("/login?next="), where


@pytest.mark.parametrize("role", ROLES)
def test_staff_routes_refuse_roles_they_do_not_name(
    app: Flask, db_session: Session, org: Any, role: str
) -> None:
    person = factories.user(db_session, org, role=role)
    token = services.create_token(db_session, user=person, name="access map")
    browser = app.test_client()
    assert sign_in(browser, person.email).status_code == 302
    csrf = csrf_of(browser, "/")
    api = {"Authorization": f"Bearer {token}"}

    checked = 0
    for method, path, rule in routes(app, {"staff"}):
        if role in rule_for(app, rule.endpoint).roles:  # type: ignore[union-attr]
            continue
        headers = api if path.startswith("/api/") else {}
        response = call(browser, method, path, csrf, headers=headers)
        assert response.status_code == 403, f"{role}: {method} {path}"
        checked += 1
    if role != "admin":
        assert checked > 0, "admin-only pages exist, so other roles must meet some refusals"


def test_declarations_are_checked_when_written() -> None:
    with pytest.raises(ValueError):
        allow()
    with pytest.raises(ValueError):
        allow("teacher", "janitor")
    with pytest.raises(RuntimeError):

        @public
        @allow("admin")
        def twice() -> None:  # pragma: no cover - never called
            pass

    @family
    def for_parents() -> None:  # pragma: no cover - never called
        pass

    assert for_parents.companion_access.kind == "family"  # type: ignore[attr-defined]


def test_static_files_are_public(client: FlaskClient) -> None:
    response = client.get("/static/companion.css")
    assert response.status_code == 200


def test_healthz_is_public_and_tells_no_secrets(
    app: Flask, client: FlaskClient, admin: User
) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert body["database"] in ("sqlite", "postgresql")
    assert body["database"] == (
        "postgresql" if "postgres" in app.config["DATABASE_URL"] else "sqlite"
    )
    assert body["zoom"] == "sandbox"
    assert body["mail"] == "outbox"
    assert body["storage"]
    assert_no_secrets(app, response.get_data(as_text=True))


def assert_no_secrets(app: Flask, raw: str) -> None:
    secrets = [app.config["SECRET_KEY"], app.config["DATABASE_URL"], app.config["STORAGE_DIR"]]
    secrets += [
        str(value)
        for name, value in app.config.items()
        if isinstance(value, str)
        and len(value) >= 4
        and any(word in name for word in ("SECRET", "PASSWORD", "TOKEN", "KEY"))
    ]
    for secret in secrets:
        assert secret not in raw


class TestHealthzWithRealServices:
    @pytest.fixture
    def app_config(self) -> dict[str, Any]:
        return {
            "ZOOM_ACCOUNT_ID": "account-id-value",
            "ZOOM_CLIENT_ID": "client-id-value",
            "ZOOM_CLIENT_SECRET": "zoom-client-secret-value",
            "ZOOM_WEBHOOK_SECRET": "zoom-webhook-secret-value",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_USERNAME": "mailer",
            "SMTP_PASSWORD": "smtp-password-value",
        }

    def test_reports_modes_without_credentials(self, app: Flask, client: FlaskClient) -> None:
        response = client.get("/healthz")
        assert response.json["zoom"] == "zoom"
        assert response.json["mail"] == "smtp"
        raw = response.get_data(as_text=True)
        assert_no_secrets(app, raw)
        for value in (
            "zoom-client-secret-value",
            "zoom-webhook-secret-value",
            "smtp-password-value",
        ):
            assert value not in raw
