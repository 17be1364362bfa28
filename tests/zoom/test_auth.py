"""Server-to-Server OAuth: one token fetched, shared, refreshed before expiry, once on a 401."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest
import requests
import responses

from companion.zoom import (
    AccessToken,
    FileTokenCache,
    TokenCache,
    ZoomAuthError,
    ZoomConnectionError,
)

from .zoom_helpers import (
    ACCOUNT_ID,
    API,
    BASIC,
    CLIENT_SECRET,
    OAUTH,
    add_token,
    bearer,
    make_client,
)

MEETING = f"{API}/meetings/85746065432"


def test_token_is_fetched_with_account_credentials_and_used_as_bearer():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        add_token(rsps)
        rsps.get(MEETING, json={"id": 85746065432}, match=[bearer("tok-1")])
        assert client.get_meeting(85746065432) == {"id": 85746065432}
        token_call = rsps.calls[0].request
    assert token_call.method == "POST" and token_call.url == OAUTH
    assert token_call.headers["Authorization"] == BASIC
    assert token_call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert token_call.body == f"grant_type=account_credentials&account_id={ACCOUNT_ID}"
    assert token_call.req_kwargs["timeout"] == 15
    assert client.calls == {"oauth_token": 1, "get_meeting": 1}


def test_token_is_cached_until_60_seconds_before_expiry():
    client, clock = make_client()
    with responses.RequestsMock() as rsps:
        add_token(rsps, "tok-1", expires_in=3600)
        rsps.get(MEETING, json={}, match=[bearer("tok-1")])
        client.get_meeting(85746065432)
        clock.advance(3600 - 61)
        client.get_meeting(85746065432)
        assert client.calls["oauth_token"] == 1

        # 60 s before expiry it is refreshed, before Zoom could reject it mid-flight
        clock.advance(1)
        rsps.replace(responses.POST, OAUTH, json={"access_token": "tok-2", "expires_in": 3600})
        rsps.get(MEETING, json={}, match=[bearer("tok-2")])
        client.get_meeting(85746065432)
    assert client.calls == {"oauth_token": 2, "get_meeting": 3}


def test_a_401_refreshes_the_token_once_and_retries():
    client, clock = make_client()
    with responses.RequestsMock() as rsps:
        add_token(rsps, "tok-1")
        add_token(rsps, "tok-2")
        rsps.get(
            MEETING,
            status=401,
            json={"code": 124, "message": "Invalid access token."},
            match=[bearer("tok-1")],
        )
        rsps.get(MEETING, json={"id": 85746065432}, match=[bearer("tok-2")])
        assert client.get_meeting(85746065432)["id"] == 85746065432
    assert client.calls == {"oauth_token": 2, "get_meeting": 2}
    assert clock.sleeps == []


def test_a_second_401_raises_auth_error_with_zooms_code():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        add_token(rsps, "tok-1")
        add_token(rsps, "tok-2")
        rsps.get(MEETING, status=401, json={"code": 124, "message": "Invalid access token."})
        with pytest.raises(ZoomAuthError) as caught:
            client.get_meeting(85746065432)
    assert caught.value.http_status == 401
    assert caught.value.zoom_code == 124
    assert caught.value.message == "Invalid access token."
    assert client.calls == {"oauth_token": 2, "get_meeting": 2}


def test_a_post_rejected_with_401_is_sent_again_with_the_new_token():
    # Zoom did not process a request it refused to authenticate, so this is not a duplicate.
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        add_token(rsps, "tok-1")
        add_token(rsps, "tok-2")
        url = f"{API}/users/me/meetings"
        rsps.post(url, status=401, json={"code": 124, "message": "x"}, match=[bearer("tok-1")])
        rsps.post(url, status=201, json={"id": 5}, match=[bearer("tok-2")])
        assert client.create_meeting("me", {"topic": "Art"}) == {"id": 5}
    assert client.calls == {"oauth_token": 2, "create_meeting": 2}


def test_refused_credentials_raise_auth_error_with_zooms_reason():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        rsps.post(
            OAUTH,
            status=400,
            json={"reason": "Invalid client_id or client_secret", "error": "invalid_client"},
        )
        with pytest.raises(ZoomAuthError, match="Invalid client_id or client_secret") as caught:
            client.get_meeting(85746065432)
    assert caught.value.operation == "oauth_token"
    assert caught.value.http_status == 400
    assert client.calls == {"oauth_token": 1}


def test_a_token_answer_without_a_token_is_an_auth_error():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        rsps.post(OAUTH, json={"token_type": "bearer"})
        with pytest.raises(ZoomAuthError, match="without an access token"):
            client.get_meeting(85746065432)


def test_an_unreachable_token_endpoint_is_retried_even_for_a_post():
    # The create itself was never sent, so waiting and trying again cannot duplicate it.
    client, clock = make_client()
    with responses.RequestsMock() as rsps:
        rsps.post(OAUTH, body=requests.ConnectTimeout("slow"))
        add_token(rsps)
        rsps.post(f"{API}/users/me/meetings", status=201, json={"id": 9})
        assert client.create_meeting("me", {})["id"] == 9
    assert clock.sleeps == [0.5]
    assert client.calls == {"oauth_token": 2, "create_meeting": 1}


def test_a_token_endpoint_that_stays_down_raises_connection_error():
    client, clock = make_client(max_retries=2)
    with responses.RequestsMock() as rsps:
        rsps.post(OAUTH, body=requests.ConnectionError("refused"))
        with pytest.raises(ZoomConnectionError) as caught:
            client.get_meeting(1)
    assert caught.value.http_status is None
    assert clock.sleeps == [0.5, 1.0]
    assert client.calls == {"oauth_token": 3}


def test_concurrent_threads_fetch_one_token():
    client, _ = make_client()
    fetches = []

    def slow_token(request):
        fetches.append(request)
        time.sleep(0.05)  # real time: let every thread pile up on the cache lock
        return 200, {}, '{"access_token": "tok-1", "expires_in": 3600}'

    errors: list[BaseException] = []

    def work():
        try:
            client.get_meeting(85746065432)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, OAUTH, callback=slow_token)
        rsps.get(MEETING, json={}, match=[bearer("tok-1")])
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(fetches) == 1
    assert client.calls == {"oauth_token": 1, "get_meeting": 8}


def test_a_token_another_thread_already_replaced_is_not_fetched_again():
    cache = TokenCache()
    issued = iter(["tok-1", "tok-2", "tok-3"])
    fetches = []

    def fetch():
        fetches.append(1)
        return AccessToken(next(issued), 10_000.0)

    def now():
        return 0.0

    assert cache.get("k", fetch, clock=now).value == "tok-1"
    # thread A saw tok-1 rejected and refreshed
    assert cache.get("k", fetch, clock=now, stale="tok-1").value == "tok-2"
    # thread B, also rejected with tok-1, gets A's token instead of minting a third
    assert cache.get("k", fetch, clock=now, stale="tok-1").value == "tok-2"
    assert len(fetches) == 2


def test_tokens_are_cached_per_credentials():
    cache = TokenCache()
    a = cache.get("url acct-a client", lambda: AccessToken("a", 10_000.0), clock=lambda: 0.0)
    b = cache.get("url acct-b client", lambda: AccessToken("b", 10_000.0), clock=lambda: 0.0)
    assert (a.value, b.value) == ("a", "b")


def test_file_cache_shares_one_token_between_processes_and_is_private(tmp_path: Path):
    path = tmp_path / "zoom-token.json"
    first, second = FileTokenCache(path), FileTokenCache(path)  # as if two processes
    fetches = []

    def fetch():
        fetches.append(1)
        return AccessToken(f"tok-{len(fetches)}", 10_000.0)

    def now():
        return 0.0

    assert first.get("k", fetch, clock=now).value == "tok-1"
    assert second.get("k", fetch, clock=now).value == "tok-1"
    assert len(fetches) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    # "second" was refused with tok-1 and refreshed; "first" picks tok-2 up from the file
    assert second.get("k", fetch, clock=now, stale="tok-1").value == "tok-2"
    assert first.get("k", fetch, clock=now, stale="tok-1").value == "tok-2"
    assert len(fetches) == 2


def test_file_cache_refetches_when_the_file_is_torn(tmp_path: Path, caplog):
    path = tmp_path / "zoom-token.json"
    path.write_text('{"k": {"access_tok')
    cache = FileTokenCache(path)
    with caplog.at_level(logging.WARNING):
        token = cache.get("k", lambda: AccessToken("fresh", 10_000.0), clock=lambda: 0.0)
    assert token.value == "fresh"
    assert FileTokenCache(path).get("k", _never, clock=lambda: 0.0).value == "fresh"


def _never() -> AccessToken:
    raise AssertionError("should have used the cached token")


def _fetch_in_child(path: str, log_path: str, barrier) -> None:  # runs in a forked process
    def fetch() -> AccessToken:
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.1)
        return AccessToken(f"tok-{os.getpid()}", 10_000.0)

    barrier.wait()
    token = FileTokenCache(path).get("k", fetch, clock=lambda: 0.0)
    with open(log_path + ".used", "a") as used:
        used.write(token.value + "\n")


def test_file_cache_lock_holds_across_real_processes(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    path, log_path = str(tmp_path / "token.json"), str(tmp_path / "fetches.log")
    barrier = ctx.Barrier(4)
    workers = [
        ctx.Process(target=_fetch_in_child, args=(path, log_path, barrier)) for _ in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(Path(log_path).read_text().split()) == 1
    assert len(set(Path(log_path + ".used").read_text().split())) == 1


def test_tokens_and_secrets_never_reach_the_logs_or_reprs(caplog):
    client, _ = make_client()
    with caplog.at_level(logging.DEBUG), responses.RequestsMock() as rsps:
        add_token(rsps, "tok-secret-1")
        add_token(rsps, "tok-secret-2")
        rsps.get(MEETING, status=401, json={"code": 124, "message": "Invalid access token."})
        with pytest.raises(ZoomAuthError) as caught:
            client.get_meeting(85746065432)
    text = caplog.text + repr(caught.value) + str(caught.value) + repr(client)
    for secret in ("tok-secret-1", "tok-secret-2", CLIENT_SECRET, BASIC.split()[1]):
        assert secret not in text
    assert "/meetings/{meetingId}" in caplog.text
    assert "tok" not in repr(AccessToken("tok-secret-1", 1.0))
