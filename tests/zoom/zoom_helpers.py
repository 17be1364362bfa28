"""Shared pieces for the Zoom client tests: a fake clock, stubbed jitter, a client on both."""

from __future__ import annotations

import base64
import random
from typing import Any

import responses

from companion.zoom import RequestBudget, TokenCache, ZoomClient

API = "https://api.zoom.us/v2"
OAUTH = "https://zoom.us/oauth/token"
ACCOUNT_ID = "acct-1"
CLIENT_ID = "client-id"
CLIENT_SECRET = "client-secret-value"
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """Epoch time that only moves when someone sleeps (or a test says so)."""

    def __init__(self, now: float = START):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MaxJitter(random.Random):
    """Jitter pinned to its ceiling so a backoff schedule is exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


def unlimited_budget(clock: FakeClock) -> RequestBudget:
    # A budget that never waits, so retry tests see only the retry sleeps.
    rate = 1e9
    return RequestBudget(
        {"light": rate, "medium": rate, "heavy": rate, "resource_intensive": rate},
        burst=1e6,
        clock=clock,
        sleep=clock.sleep,
    )


def make_client(clock: FakeClock | None = None, **overrides: Any) -> tuple[ZoomClient, FakeClock]:
    clock = clock or FakeClock()
    kwargs: dict[str, Any] = {
        "account_id": ACCOUNT_ID,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_cache": TokenCache(),
        "budget": unlimited_budget(clock),
        "sleep": clock.sleep,
        "clock": clock,
        "rng": MaxJitter(),
    }
    kwargs.update(overrides)
    return ZoomClient(**kwargs), clock


def add_token(
    rsps: responses.RequestsMock, token: str = "tok-1", expires_in: int = 3600
) -> responses.BaseResponse:
    """Register one token answer exactly as Zoom's S2S endpoint gives it."""
    return rsps.post(
        OAUTH,
        json={
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": "meeting:read:meeting:admin",
        },
        match=[
            responses.matchers.header_matcher({"Authorization": BASIC}),
            responses.matchers.urlencoded_params_matcher(
                {"grant_type": "account_credentials", "account_id": ACCOUNT_ID}
            ),
        ],
    )


def bearer(token: str = "tok-1") -> Any:
    return responses.matchers.header_matcher({"Authorization": f"Bearer {token}"})
