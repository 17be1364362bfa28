"""Issue 10, item 6: `companion serve` is configured for its work.

* A large recording (64 MiB, stored through the real vault) streamed to a slow reader through
  the real `companion serve` (a subprocess) never opens a temporary file: waitress holds the
  unsent part in memory up to its high watermark and makes the app's thread wait (back-pressure)
  instead of spilling decrypted bytes to disk.
* 200 webhook senders on keep-alive connections (more than waitress's default connection limit
  of 100, far more than the threads) are all answered, and one more still gets in at once.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import ROOT, serving
from companion.accounts import services as accounts
from companion.accounts.models import StaffSession, User
from companion.db import make_engine, utcnow
from companion.recordings import crypto, vault
from companion.recordings import services as recordings
from companion.recordings.ingest import blob_key
from companion.recordings.models import Recording, RecordingFile
from companion.zoom.webhooks import sandbox_webhook_secret, sign

from . import factories
from .conftest import make_app, own_database_url
from .live_db import companion_env, signed_in_cookie
from .servers import free_port, wait_for_port

SIZE = 64 * 1024 * 1024


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    tmpdir: Path
    cookies: dict[str, str]
    token: str
    sha256: str
    secret: str

    def temp_files_open(self) -> list[str]:
        """Files the server has open in its temporary directory (a spilled buffer shows as
        ``<tmpdir>/#123 (deleted)``)."""
        found = []
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith(str(self.tmpdir)):
                found.append(target)
        return found


def store_recording(app: Any, session: Session, org_id: int, plaintext: bytes) -> RecordingFile:
    """A verified MP4 in the vault: encrypted with a new file key wrapped by the app's KEK."""
    now = utcnow()
    rec = Recording(
        organisation_id=org_id,
        zoom_meeting_id=85746065,
        zoom_uuid=f"serve-{uuid.uuid4()}",
        topic="A long class",
        started_at=now,
        ended_at=now,
        delete_after=now.replace(year=now.year + 1),
    )
    session.add(rec)
    session.flush()
    file_id = uuid.uuid4()
    dek = crypto.new_file_key()
    key = blob_key(file_id)
    with vault.storage_for(app).open_writer(key) as blob:
        writer = crypto.EncryptingWriter(blob, dek, file_id, rec.id)
        view = memoryview(plaintext)
        for at in range(0, len(view), 1 << 22):
            writer.write(view[at : at + (1 << 22)])
        stats = writer.close()
    keyring = vault.keyring_for(app)
    vault.note_kek_use(session, keyring)
    wrapped = keyring.wrap(file_id, dek)
    file = RecordingFile(
        id=file_id,
        recording_id=rec.id,
        zoom_file_id=f"zf-{file_id}",
        file_type="MP4",
        file_extension="MP4",
        download_url="https://zoom.invalid/not-used",
        expected_size=len(plaintext),
        size=stats.plaintext_bytes,
        sha256=stats.sha256,
        blob_key=key,
        kek_id=wrapped.kek_id,
        wrapped_dek=wrapped.wrapped,
        state="verified",
        stored_at=now,
        verified_at=now,
    )
    session.add(file)
    session.flush()
    return file


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    database_url = own_database_url(folder, "serve", migrated=True)
    engine = make_engine(database_url)
    app = make_app(database_url, folder, TESTING=False)
    plaintext = os.urandom(SIZE)
    with app.app_context(), Session(engine, expire_on_commit=False) as session, session.begin():
        org = factories.organisation(session)
        lead = factories.user(session, org, role="safeguarding_lead", email="lead@serve.test")
        file = store_recording(app, session, org.id, plaintext)
        lead_id, org_id = lead.id, org.id
    cookies = signed_in_cookie(app, engine, lead_id)
    with app.app_context(), Session(engine, expire_on_commit=False) as session, session.begin():
        lead = session.get(User, lead_id)
        staff = session.scalars(select(StaffSession).where(StaffSession.user_id == lead_id)).one()
        grant = recordings.grant_access(
            session,
            lead,  # type: ignore[arg-type]
            staff,
            recording_id=file.recording_id,
            file_id=file.id,
            reason="Checking the whole class after a concern.",
            now=utcnow(),
        )
    assert org_id and accounts  # the lead's organisation owns the recording
    tmpdir = folder / "tmp"
    tmpdir.mkdir()
    port = free_port()
    env = companion_env(database_url, folder, TMPDIR=str(tmpdir))
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "companion", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=str(ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout=60, process=process, what="companion serve")
        yield Served(
            url=f"http://127.0.0.1:{port}",
            process=process,
            tmpdir=tmpdir,
            cookies=cookies,
            token=grant.token,
            sha256=hashlib.sha256(plaintext).hexdigest(),
            secret=sandbox_webhook_secret(app.config),
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        engine.dispose()


def test_the_buffer_settings_keep_every_chunk_in_memory() -> None:
    options = serving.server_options(threads=8)
    from companion.recordings.views import STREAM_CHUNK

    assert STREAM_CHUNK <= serving.LARGEST_CHUNK
    # A buffer holds at most the high watermark plus one chunk before waitress rotates it.
    assert options["outbuf_overflow"] > options["outbuf_high_watermark"] + serving.LARGEST_CHUNK
    assert options["connection_limit"] >= 400


def test_a_large_recording_streams_to_a_slow_reader_without_a_temporary_file(
    served: Served,
) -> None:
    url = f"{served.url}/recordings/open/{served.token}/file"
    response = requests.get(url, cookies=served.cookies, stream=True, timeout=60)
    assert response.status_code == 200, response.text[:500]
    assert int(response.headers["Content-Length"]) == SIZE
    digest = hashlib.sha256()
    received = 0
    spilled: list[str] = []
    started = time.monotonic()
    for n, chunk in enumerate(response.iter_content(chunk_size=256 * 1024)):
        digest.update(chunk)
        received += len(chunk)
        # A slow reader: the server gets well ahead of it and must wait, not spill.
        time.sleep(0.004)
        if n % 8 == 0:
            spilled += served.temp_files_open()
    elapsed = time.monotonic() - started
    spilled += served.temp_files_open()
    assert received == SIZE and digest.hexdigest() == served.sha256
    assert spilled == [], f"decrypted bytes went to temporary files: {sorted(set(spilled))}"
    assert list(served.tmpdir.iterdir()) == []
    assert elapsed > 1.0  # it really was slow: the server's buffer filled up meanwhile


def webhook_request(secret: str, n: int) -> tuple[bytes, dict[str, str]]:
    document = {
        "event": "meeting.started",
        "payload": {
            "account_id": "AAAA",
            "object": {"id": "85746065", "uuid": f"keepalive-{n}", "topic": "Class", "type": 8},
        },
        "event_ts": int(time.time() * 1000),
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    return body, {
        "x-zm-request-timestamp": timestamp,
        "x-zm-signature": sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def test_keep_alive_senders_beyond_the_old_limit_are_all_answered_promptly(
    served: Served,
) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    connections: list[http.client.HTTPConnection] = []
    worst = 0.0
    try:
        # 200 senders, each keeping its connection open after its first event.
        for n in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            body, headers = webhook_request(served.secret, n)
            started = time.monotonic()
            conn.request("POST", "/zoom/webhook", body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            worst = max(worst, time.monotonic() - started)
            assert answer.status == 200 and not answer.will_close
            connections.append(conn)
        # Each sends again on its open connection, and one more sender connects.
        for n, conn in enumerate(connections):
            body, headers = webhook_request(served.secret, 1000 + n)
            started = time.monotonic()
            conn.request("POST", "/zoom/webhook", body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            worst = max(worst, time.monotonic() - started)
            assert answer.status == 200
        started = time.monotonic()
        extra = requests.get(served.url + "/healthz", timeout=5)
        assert extra.status_code == 200
        worst = max(worst, time.monotonic() - started)
    finally:
        for conn in connections:
            conn.close()
    assert worst < 3.0  # Zoom's limit
