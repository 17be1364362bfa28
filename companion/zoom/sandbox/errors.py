"""Zoom's error responses: an HTTP status and a body ``{"code": ..., "message": ...}``."""

from __future__ import annotations

from typing import Any

# Zoom answers a request body that breaks its field rules with code 300 "Validation Failed."
# and one entry per field.
VALIDATION_FAILED = "Validation Failed."


class ZoomApiError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}
        super().__init__(f"{status} {code} {message}")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def validation_failed(errors: list[tuple[str, str]]) -> ZoomApiError:
    return ZoomApiError(
        400,
        300,
        VALIDATION_FAILED,
        errors=[{"field": field, "message": message} for field, message in errors],
    )


def bad_request(message: str, code: int = 300) -> ZoomApiError:
    return ZoomApiError(400, code, message)


def meeting_not_found(meeting_id: Any) -> ZoomApiError:
    return ZoomApiError(404, 3001, f"Meeting does not exist: {meeting_id}.")


def user_not_found(user_id: str) -> ZoomApiError:
    return ZoomApiError(404, 1001, f"User does not exist: {user_id}.")


def no_recording() -> ZoomApiError:
    return ZoomApiError(404, 3301, "There is no recording for this meeting.")


def invalid_token(message: str = "Invalid access token.") -> ZoomApiError:
    return ZoomApiError(401, 124, message)
