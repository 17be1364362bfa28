"""`companion sandbox serve` and `companion sandbox simulate-class`, end to end on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from companion.cli import main
from companion.zoom.webhooks import sandbox_webhook_secret, verify

from ..polling import poll
from .conftest import Receiver, weekly_class

SECRET_KEY = "cli-test-secret-key-that-is-long-enough-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path, receiver: tuple[Receiver, str]) -> Iterator[dict[str, Any]]:
    target, url = receiver
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "COMPANION_INSTANCE_PATH": str(tmp_path / "instance"),
        "COMPANION_SECRET_KEY": SECRET_KEY,
        "COMPANION_SANDBOX_URL": base,
        "COMPANION_BASE_URL": url.removesuffix("/zoom/webhook"),
        "COMPANION_ZOOM_WEBHOOK_SECRET": "",
        "COMPANION_ZOOM_ACCOUNT_ID": "",
        "COMPANION_ZOOM_CLIENT_ID": "",
        "COMPANION_ZOOM_CLIENT_SECRET": "",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "companion", "sandbox", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"sandbox did not start: {output}")
            time.sleep(0.1)
        yield {"base": base, "env": env, "receiver": target, "tmp": tmp_path}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()


def token(base: str) -> str:
    r = requests.post(
        f"{base}/oauth/token",
        params={"grant_type": "account_credentials", "account_id": "sandbox-account"},
        auth=("sandbox-client", "sandbox-secret"),
        timeout=10,
    )
    return r.json()["access_token"]


def test_serve_and_simulate_a_class(served: dict[str, Any], monkeypatch: Any) -> None:
    base, target = served["base"], served["receiver"]
    r = requests.get(f"{base}/healthz", timeout=5)
    assert r.headers["X-Companion-Sandbox"] == "1" and r.json()["sandbox"] is True
    headers = {"Authorization": f"Bearer {token(base)}"}
    meeting = requests.post(
        f"{base}/v2/users/me/meetings", json=weekly_class(), headers=headers, timeout=10
    ).json()
    kid = requests.post(
        f"{base}/v2/meetings/{meeting['id']}/registrants",
        json={"email": "kid@example.org", "first_name": "Kid", "auto_approve": True},
        headers=headers,
        timeout=10,
    ).json()["registrant_id"]

    for key, value in served["env"].items():
        if key.startswith("COMPANION_"):
            monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        main,
        [
            "sandbox",
            "simulate-class",
            str(meeting["id"]),
            "--occurrence",
            meeting["occurrences"][0]["occurrence_id"],
            "--participants",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Kid (registrant " + kid + ")" in result.output
    assert "Guest 1 (guest)" in result.output
    assert "recording MP4" in result.output

    # The background worker delivers every event, signed with the secret companion derives.
    secret = sandbox_webhook_secret({"SECRET_KEY": SECRET_KEY, "ZOOM_MODE": "sandbox"})
    poll(
        lambda: any(
            json.loads(x["body"])["event"] == "recording.completed" for x in target.requests
        ),
        "the recording.completed webhook",
    )
    events = [json.loads(x["body"]) for x in target.requests]
    # The endpoint is challenged when serving starts (this receiver does not answer it).
    assert any(e["event"] == "endpoint.url_validation" for e in events)
    names = [e["event"] for e in events if e["event"] != "endpoint.url_validation"]
    assert names[0] == "meeting.started" and names[-1] == "recording.completed"
    assert names.count("meeting.participant_admitted") == 2
    for request in target.requests:
        verify(secret, request["headers"], request["body"], now=time.time())

    as_json = CliRunner().invoke(
        main,
        [
            "sandbox",
            "simulate-class",
            str(meeting["id"]),
            "--guest",
            "Visitor",
            "--no-end",
            "--json",
        ],
    )
    assert as_json.exit_code == 0, as_json.output
    live = json.loads(as_json.output)
    assert live["live"] is True and live["participants"][0]["name"] == "Visitor"

    state = requests.get(f"{base}/_sandbox/state", timeout=5).json()
    assert state["meetings"][0]["status"] == "started"
    assert Path(served["tmp"], "instance", "zoom-sandbox.sqlite3").exists()


def test_simulate_class_reports_errors(monkeypatch: Any) -> None:
    runner = CliRunner()
    monkeypatch.setenv("COMPANION_SECRET_KEY", SECRET_KEY)
    result = runner.invoke(
        main,
        ["sandbox", "simulate-class", "123", "--url", f"http://127.0.0.1:{free_port()}"],
    )
    assert result.exit_code != 0
    assert "not reachable" in result.output
