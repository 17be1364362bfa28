"""Property-based run over the whole JSON API from its own OpenAPI document.

Schemathesis generates valid and invalid requests for every documented operation and checks each
response: never a server error, status codes, content types and bodies as documented.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import Session

from companion.accounts import services
from companion.accounts.models import User

from .conftest import make_app
from .zoom_sandbox import SandboxZoom


@pytest.fixture
def api_token(db_session: Session, admin: User) -> str:
    return services.create_token(db_session, user=admin, name="schemathesis")


def _document_app() -> Any:
    # Every domain adds its operations when create_app imports it, so the document is read from
    # an app. The test app itself is per test (rolled-back database), hence `app=` in the call:
    # schemathesis' fixture-based loader does not work with pytest 9.
    return make_app("sqlite://", Path(tempfile.mkdtemp(prefix="companion-openapi-")))


schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _document_app())


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    # The app and its rolled-back database are per test; examples share them on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_document(case: Any, app: Flask, api_token: str) -> None:
    # A Zoom that answers, so a generated course that happens to be valid is created rather than
    # kept "pending in Zoom" with a 503 (which is right, but not what this test is about).
    sandbox = SandboxZoom()
    app.extensions["companion.zoom_client"] = sandbox.client
    try:
        response = case.call_and_validate(
            app=app,
            headers={"Authorization": f"Bearer {api_token}"},
            # Business rules (a real time zone, a date not in the past) cannot all live in the
            # schema, so a schema-valid body may rightly get a 422; everything else is checked.
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
    finally:
        sandbox.close()
    assert response.status_code < 500
