"""The sandbox's token endpoint and the bearer check on every API call."""

from __future__ import annotations

import base64

import requests
from flask.testing import FlaskClient

from companion.zoom.sandbox import SANDBOX_ACCOUNT_ID, SANDBOX_HEADER, create_sandbox_app

from .conftest import BASIC, PUBLIC_URL, TOKEN_URL, WEBHOOK_SECRET, Api, FakeClock, fetch_token


def test_token_for_account_credentials(zoom_client: FlaskClient) -> None:
    r = zoom_client.post(TOKEN_URL, headers={"Authorization": BASIC})
    assert r.status_code == 200
    assert r.headers[SANDBOX_HEADER] == "1"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20
    assert "meeting:write:meeting:admin" in body["scope"]


def test_token_parameters_may_be_a_form_body(zoom_client: FlaskClient) -> None:
    r = zoom_client.post(
        "/oauth/token",
        data={"grant_type": "account_credentials", "account_id": SANDBOX_ACCOUNT_ID},
        headers={"Authorization": BASIC},
    )
    assert r.status_code == 200


def test_wrong_client_credentials(zoom_client: FlaskClient) -> None:
    wrong = "Basic " + base64.b64encode(b"sandbox-client:nope").decode()
    for headers in ({"Authorization": wrong}, {}):
        r = zoom_client.post(TOKEN_URL, headers=headers)
        assert r.status_code == 401
        assert r.get_json() == {
            "reason": "Invalid client_id or client_secret",
            "error": "invalid_client",
        }


def test_wrong_grant_or_account(zoom_client: FlaskClient) -> None:
    r = zoom_client.post(
        "/oauth/token?grant_type=client_credentials&account_id=sandbox-account",
        headers={"Authorization": BASIC},
    )
    assert r.status_code == 400
    assert r.get_json()["error"] == "unsupported_grant_type"
    r = zoom_client.post(
        "/oauth/token?grant_type=account_credentials&account_id=someone-else",
        headers={"Authorization": BASIC},
    )
    assert r.status_code == 400
    assert r.get_json()["error"] == "invalid_request"


def test_api_needs_a_valid_bearer_token(zoom_client: FlaskClient) -> None:
    invalid = {"code": 124, "message": "Invalid access token."}
    r = zoom_client.get("/v2/users/me/meetings")
    assert r.status_code == 401 and r.get_json() == invalid
    r = zoom_client.get("/v2/users/me/meetings", headers={"Authorization": "Bearer made-up"})
    assert r.status_code == 401 and r.get_json() == invalid
    token = fetch_token(zoom_client)
    # Zoom takes the token only from the header.
    r = zoom_client.get(f"/v2/users/me/meetings?access_token={token}")
    assert r.status_code == 401 and r.get_json() == invalid
    r = zoom_client.get("/v2/users/me/meetings", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.headers[SANDBOX_HEADER] == "1"


def test_token_expires_after_an_hour(zoom_client: FlaskClient, clock: FakeClock) -> None:
    api = Api(zoom_client, fetch_token(zoom_client))
    clock.advance(3599)
    assert api.get("/v2/users/me/meetings").status_code == 200
    clock.advance(1)
    r = api.get("/v2/users/me/meetings")
    assert r.status_code == 401
    assert r.get_json() == {"code": 124, "message": "Access token is expired."}


def test_several_tokens_are_valid_and_revoking_ends_them(zoom_client: FlaskClient) -> None:
    first = Api(zoom_client, fetch_token(zoom_client))
    second = Api(zoom_client, fetch_token(zoom_client))
    assert first.get("/v2/users/me/meetings").status_code == 200
    assert second.get("/v2/users/me/meetings").status_code == 200
    r = zoom_client.post("/_sandbox/tokens/revoke")
    assert r.get_json() == {"revoked": 2}
    assert first.get("/v2/users/me/meetings").status_code == 401


def test_unknown_user_and_unknown_path(api: Api) -> None:
    r = api.get("/v2/users/someone@example.org/meetings")
    assert r.status_code == 404
    assert r.get_json() == {"code": 1001, "message": "User does not exist: someone@example.org."}
    r = api.get("/v2/webinars/1")
    assert r.status_code == 404
    assert r.headers[SANDBOX_HEADER] == "1"


def test_state_survives_a_restart(store_path: str, clock: FakeClock) -> None:
    def app():
        return create_sandbox_app(
            store_path,
            webhook_url=None,
            webhook_secret=WEBHOOK_SECRET,
            public_url=PUBLIC_URL,
            clock=clock,
        )

    first = app()
    api = Api(first.test_client(), fetch_token(first.test_client()))
    meeting = api.create_meeting()
    first.extensions["zoom_sandbox"].close()

    second = app()
    again = Api(second.test_client(), api.token)  # the token is in the store too
    r = again.get(f"/v2/meetings/{meeting['id']}")
    assert r.status_code == 200
    assert r.get_json()["occurrences"] == meeting["occurrences"]
    second.extensions["zoom_sandbox"].close()


def test_over_real_http(sandbox_app, live) -> None:
    base = live(sandbox_app)
    with requests.Session() as http:
        r = http.post(
            f"{base}/oauth/token",
            params={"grant_type": "account_credentials", "account_id": SANDBOX_ACCOUNT_ID},
            auth=("sandbox-client", "sandbox-secret"),
            timeout=10,
        )
        assert r.status_code == 200
        token = r.json()["access_token"]
        r = http.get(f"{base}/v2/users/me/meetings", timeout=10)
        assert r.status_code == 401 and r.json()["code"] == 124
        r = http.get(
            f"{base}/v2/users/me/meetings",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert r.status_code == 200
        assert r.headers[SANDBOX_HEADER] == "1"
        assert r.json()["meetings"] == []
