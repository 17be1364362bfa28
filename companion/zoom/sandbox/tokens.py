"""Tokens: OAuth access tokens, and the start-link (ZAK) and recording download tokens.

Models Zoom's Server-to-Server OAuth token endpoint (``POST /oauth/token`` with
``grant_type=account_credentials``; not in Zoom's Meetings spec, Zoom documents it with its OAuth
apps) and the tokens the Meetings API hands out inside its answers (``start_url``'s ``zak``,
``download_access_token``).
"""

from __future__ import annotations

import hmac
from typing import Any

from .base import SandboxBase, new_token
from .errors import ZoomApiError, invalid_token

ACCESS_TOKEN_TTL = 3600
SCOPES = (
    "meeting:read:meeting:admin meeting:write:meeting:admin meeting:update:meeting:admin "
    "meeting:delete:meeting:admin meeting:update:status:admin meeting:write:registrant:admin "
    "meeting:read:list_registrants:admin meeting:read:registrant:admin "
    "meeting:update:registrant_status:admin meeting:delete:registrant:admin "
    "meeting:read:list_meetings:admin cloud_recording:read:list_recording_files:admin "
    "cloud_recording:read:list_user_recordings:admin "
    "cloud_recording:delete:meeting_recording:admin cloud_recording:delete:recording_file:admin"
)


class Tokens(SandboxBase):
    """Issuing and checking the sandbox's tokens (a part of :class:`~.core.Sandbox`)."""

    def _issue(self, kind: str, ttl: float, scope: str = "") -> str:
        token = new_token(32)
        now = self.now()
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 3600,))
            conn.execute(
                "INSERT INTO tokens (token, kind, scope, expires_at) VALUES (?, ?, ?, ?)",
                (token, kind, scope, now + ttl),
            )
        return token

    def _token_row(self, token: str | None) -> Any:
        if not token:
            return None
        return self.store.one("SELECT * FROM tokens WHERE token = ?", (token,))

    def oauth_token(
        self,
        *,
        grant_type: str | None,
        account_id: str | None,
        client_id: str | None,
        client_secret: str | None,
    ) -> dict[str, Any]:
        """POST /oauth/token with ``grant_type=account_credentials``."""
        good_client = hmac.compare_digest(
            f"{client_id}:{client_secret}".encode(),
            f"{self.client_id}:{self.client_secret}".encode(),
        )
        if not client_id or not good_client:
            raise ZoomApiError(401, 0, "Invalid client_id or client_secret")
        if grant_type != "account_credentials":
            raise ZoomApiError(400, 0, "unsupported grant type")
        if not account_id or account_id != self.account_id:
            raise ZoomApiError(400, 0, "Invalid account_id")
        token = self._issue("access", ACCESS_TOKEN_TTL)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": SCOPES,
            "api_url": self.public_url,
        }

    def check_access_token(self, token: str | None) -> None:
        row = self._token_row(token)
        if row is None or row["kind"] != "access":
            raise invalid_token()
        if row["expires_at"] <= self.now():
            raise invalid_token("Access token is expired.")

    def revoke_access_tokens(self) -> int:
        return self.store.execute("DELETE FROM tokens WHERE kind = 'access'").rowcount

    def download_token_valid(self, token: str | None, instance_uuid: str) -> bool:
        row = self._token_row(token)
        if row is None or row["expires_at"] <= self.now():
            return False
        if row["kind"] == "access":
            return True
        return bool(row["kind"] == "download" and row["scope"] == instance_uuid)

    def start_token_valid(self, token: str | None, meeting_id: int) -> bool:
        row = self._token_row(token)
        return (
            row is not None
            and row["kind"] == "zak"
            and row["scope"] == str(meeting_id)
            and row["expires_at"] > self.now()
        )
