"""The S3 backend against a real S3 API on loopback (moto's server): chosen by configuration,
multipart uploads that appear only when complete and leave nothing when cut off, range reads,
deletion of every version, the whole vault on it, and a clear StorageError for each fault."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from click.testing import CliRunner
from flask import Flask
from sqlalchemy.orm import Session

from companion.config import SETTINGS, ConfigError, load
from companion.recordings import crypto, retention
from companion.recordings import vault as vault_module
from companion.recordings.s3storage import MIN_PART_SIZE, S3EncryptedStorage
from companion.recordings.storage import BlobMissing, LocalEncryptedStorage, StorageError

from ..conftest import Browser
from ..polling import poll
from .s3_helpers import S3Server, closed_port_url, silent_server
from .storage_helpers import UNFINISHED, leftovers, raw_bytes
from .vault_helpers import Vault, file_of

DEK = bytes(range(32))
FILE_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
RECORDING_ID = uuid.UUID("99999999-8888-4777-8666-555555555555")
KEY = f"{FILE_ID}.krec"
MIB = 1 << 20
SECRET = "s" * 40


def encrypt_into(blob: Any, plaintext: bytes) -> crypto.WriteStats:
    writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID)  # as the ingest does
    with writer:
        writer.write(plaintext)
    assert writer.stats is not None
    return writer.stats


def decrypt(store: S3EncryptedStorage, key: str = KEY) -> bytes:
    with store.open_reader(key) as blob:
        return b"".join(crypto.decrypt_stream(blob, DEK, FILE_ID, RECORDING_ID))


def ranges_asked(store: S3EncryptedStorage) -> list[tuple[int, int]]:
    """Every Range header the store's client sends from now on, as (first, last) byte."""
    seen: list[tuple[int, int]] = []

    def note(request: Any, **_: Any) -> None:
        if "Range" in request.headers:
            first, last = request.headers["Range"].decode().removeprefix("bytes=").split("-")
            seen.append((int(first), int(last)))

    store.client.meta.events.register("before-send.s3.GetObject", note)
    return seen


# --- configuration ---------------------------------------------------------------------------


def settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    environ = {"COMPANION_SECRET_KEY": SECRET, **{f"COMPANION_{k}": v for k, v in env.items()}}
    return load(tmp_path, environ)


def test_the_local_folder_stays_the_default(tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    assert cfg["STORAGE_URL"] == ""
    store = vault_module.storage_from_config(cfg)
    assert isinstance(store, LocalEncryptedStorage)
    assert store.root == tmp_path / "recordings"


def test_an_s3_url_chooses_the_object_store(tmp_path: Path) -> None:
    cfg = settings(
        tmp_path,
        STORAGE_URL="s3://school-recordings/north/vault/",
        S3_ENDPOINT_URL="https://objects.example.org",
        S3_REGION="eu-west-2",
        S3_ACCESS_KEY_ID="AKIDEXAMPLE",
        S3_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG",
        S3_ADDRESSING_STYLE="path",
        S3_TIMEOUT_SECONDS="12",
    )
    assert cfg["STORAGE_URL"] == "s3://school-recordings/north/vault"
    assert cfg["STORAGE_DIR"] is None  # not made up: no folder is used
    store = vault_module.storage_from_config(cfg)
    assert isinstance(store, S3EncryptedStorage)
    assert (store.bucket, store.prefix) == ("school-recordings", "north/vault/")
    assert store.client.meta.region_name == "eu-west-2"
    assert store.client.meta.endpoint_url == "https://objects.example.org"
    assert store.client.meta.config.s3 == {"addressing_style": "path"}
    assert store.client.meta.config.read_timeout == 12
    assert "wJalr" not in repr(store) and "AKID" not in repr(store)
    assert not (tmp_path / "recordings").exists()


def test_the_health_check_names_the_backend(app: Flask) -> None:
    assert app.test_client().get("/healthz").json["storage"] == "local-encrypted"
    app.config["STORAGE_URL"] = "s3://school-recordings"
    assert app.test_client().get("/healthz").json["storage"] == "s3-encrypted"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STORAGE_URL": "https://bucket/x"}, "must be an s3://bucket/prefix URL"),
        ({"STORAGE_URL": "s3://Bad_Bucket/x"}, "names a bucket S3 does not allow"),
        ({"STORAGE_URL": "s3://ab"}, "names a bucket S3 does not allow"),
        ({"STORAGE_URL": "s3://10.0.0.1/x"}, "names a bucket S3 does not allow"),
        ({"STORAGE_URL": "s3://key:secret@bucket/x"}, "give credentials with"),
        ({"STORAGE_URL": "s3://bucket/a b"}, "prefix with unusual characters"),
        ({"STORAGE_URL": "s3://bucket/../up"}, "prefix with unusual characters"),
        (
            {"STORAGE_URL": "s3://bucket", "S3_ENDPOINT_URL": "objects.example.org"},
            "COMPANION_S3_ENDPOINT_URL must be an http(s) URL",
        ),
        (
            {"STORAGE_URL": "s3://bucket", "STORAGE_DIR": "/srv/recordings"},
            "COMPANION_STORAGE_URL and COMPANION_STORAGE_DIR are both set",
        ),
        (
            {"S3_ENDPOINT_URL": "https://objects.example.org"},
            "COMPANION_S3_ENDPOINT_URL set without COMPANION_STORAGE_URL",
        ),
        (
            {"STORAGE_URL": "s3://bucket", "S3_ACCESS_KEY_ID": "AKIDEXAMPLE"},
            "object-store credentials are incomplete",
        ),
        ({"STORAGE_URL": "s3://bucket", "S3_ADDRESSING_STYLE": "dns"}, "must be one of auto"),
    ],
)
def test_bad_storage_settings_stop_the_start(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, **env)
    assert any(message in problem for problem in info.value.problems), info.value.problems


# --- multipart upload ------------------------------------------------------------------------


def test_a_large_blob_goes_up_in_parts_and_appears_only_when_complete(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    plaintext = os.urandom(12 * MIB + 7)
    sent: list[int] = []
    s3_store.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda request, **_: sent.append(int(request.headers["Content-Length"])),
    )
    with s3_store.open_writer(KEY) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID)
        writer.write(plaintext[: 11 * MIB])
        # Two parts are up already, and still no blob: only an unfinished upload.
        poll(lambda: len(sent) >= 2, "two parts sent by the helper thread")
        assert sent == [MIN_PART_SIZE, MIN_PART_SIZE]
        assert s3_server.object_names(s3_bucket) == []
        assert leftovers(s3_store) == [KEY + UNFINISHED]
        assert not s3_store.exists(KEY)
        writer.write(plaintext[11 * MIB :])
        stats = writer.close()
    assert len(sent) == 3 and sum(sent) == stats.ciphertext_bytes
    assert leftovers(s3_store) == [KEY]
    head = s3_server.admin.head_object(Bucket=s3_bucket, Key="recordings/" + KEY)
    assert head["ETag"].endswith('-3"')  # S3's mark of an object made of three parts
    assert head["ContentLength"] == stats.ciphertext_bytes == s3_store.size(KEY)
    assert decrypt(s3_store) == plaintext


def test_a_small_blob_is_one_request(s3_store: S3EncryptedStorage) -> None:
    calls: list[str] = []
    s3_store.client.meta.events.register(
        "before-send.s3.*", lambda request, event_name, **_: calls.append(event_name)
    )
    with s3_store.open_writer(KEY) as blob:
        encrypt_into(blob, b"WEBVTT\n\n00:00.000 --> 00:01.000\nHello")
    assert calls == ["before-send.s3.PutObject"]


def test_an_aborted_upload_leaves_nothing(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    with pytest.raises(RuntimeError, match="download cut"), s3_store.open_writer(KEY) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID)
        try:
            writer.write(os.urandom(11 * MIB))
            raise RuntimeError("download cut")
        except BaseException:
            writer.abort()  # joins the helper thread, as the ingest does
            raise
    assert s3_server.uploads(s3_bucket) == []
    assert s3_server.object_names(s3_bucket) == []


def test_an_upload_aborted_by_someone_else_is_a_clear_error(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    with pytest.raises(StorageError) as info, s3_store.open_writer(KEY) as blob:
        blob.write(os.urandom(MIN_PART_SIZE))
        # Say, a cleanup run by hand while the worker was uploading.
        assert s3_store.cleanup_partials() == 1
        blob.write(os.urandom(MIN_PART_SIZE))
    # moto answers a part for an upload it no longer has with HTTP 500 (S3 says NoSuchUpload).
    assert f"could not store {KEY}: the object store at" in info.value.message
    assert s3_server.uploads(s3_bucket) == [] and s3_server.object_names(s3_bucket) == []


def test_s3s_answer_for_an_upload_cut_off(s3_store: S3EncryptedStorage) -> None:
    # What S3 itself answers there, given to the client as S3 sends it.
    with Stubber(s3_store.client) as stub:
        stub.add_response("create_multipart_upload", {"UploadId": "gone"})
        stub.add_client_error(
            "upload_part", service_error_code="NoSuchUpload", http_status_code=404
        )
        stub.add_response("abort_multipart_upload", {})
        with pytest.raises(StorageError) as info, s3_store.open_writer(KEY) as blob:
            blob.write(os.urandom(MIN_PART_SIZE))
        stub.assert_no_pending_responses()
    assert info.value.message == (
        f"could not store {KEY}: the upload was cut off (the store no longer knows it); "
        "nothing was stored"
    )


def test_cleanup_aborts_only_stale_uploads_under_the_prefix(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    admin = s3_server.admin
    admin.create_multipart_upload(Bucket=s3_bucket, Key="recordings/" + KEY)
    admin.create_multipart_upload(Bucket=s3_bucket, Key="other-app/" + KEY)
    # moto dates every upload 2010-11-10, so this one counts as a day old and more.
    assert s3_store.cleanup_partials(older_than=24 * 3600) == 1
    assert s3_server.uploads(s3_bucket) == ["other-app/" + KEY]


def test_cleanup_spares_an_upload_younger_than_asked(s3_store: S3EncryptedStorage) -> None:
    # The age filter against an answer as S3 gives it (moto's dates are all the same).
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with Stubber(s3_store.client) as stub:
        stub.add_response(
            "list_multipart_uploads",
            {
                "Uploads": [
                    {"Key": "recordings/" + KEY, "UploadId": "in-progress", "Initiated": started}
                ]
            },
            {"Bucket": s3_store.bucket, "Prefix": "recordings/"},
        )
        assert s3_store.cleanup_partials(older_than=3600) == 0
        stub.assert_no_pending_responses()  # and no abort was sent


# --- range reads -----------------------------------------------------------------------------


@pytest.fixture
def big_blob(s3_store: S3EncryptedStorage) -> bytes:
    plaintext = os.urandom(12 * MIB + 5)
    with s3_store.open_writer(KEY) as blob:
        encrypt_into(blob, plaintext)
    return plaintext


def test_a_range_of_a_recording_reads_only_around_it(
    s3_store: S3EncryptedStorage, big_blob: bytes
) -> None:
    asked = ranges_asked(s3_store)
    start = 7 * MIB + 12345
    with s3_store.open_reader(KEY) as blob:
        reader = crypto.DecryptingReader(blob, DEK, FILE_ID, RECORDING_ID)
        assert b"".join(reader.iter_range(start, start + 99)) == big_blob[start : start + 100]
    # The header, the final segment (checked on opening) and the one segment of the range.
    assert len(asked) == 3
    assert asked[0][0] == 0
    assert asked[1][1] == s3_store.size(KEY) - 1
    segment = crypto.HEADER_SIZE + 7 * (MIB + crypto.TAG_SIZE)
    assert asked[2] == (segment, segment + MIB + crypto.TAG_SIZE - 1)
    assert sum(last - first + 1 for first, last in asked) < 2 * MIB


def test_reading_on_reads_ahead_in_growing_windows(
    s3_store: S3EncryptedStorage, big_blob: bytes
) -> None:
    asked = ranges_asked(s3_store)
    raw = raw_bytes(s3_store, KEY)
    with s3_store.open_reader(KEY) as blob:
        pieces = []
        while piece := blob.read(64 * 1024):  # small reads, as a copying loop makes
            pieces.append(piece)
    assert b"".join(pieces) == raw
    # 193 small reads, a handful of requests; each window follows the last without a gap.
    assert len(asked) <= 7, asked
    assert [first for first, _ in asked[1:]] == [last + 1 for _, last in asked[:-1]]
    assert max(last - first + 1 for first, last in asked) <= 8 * MIB
    with s3_store.open_reader(KEY) as blob:
        assert b"".join(crypto.decrypt_stream(blob, DEK, FILE_ID, RECORDING_ID)) == big_blob


def test_a_seek_starts_a_small_window_again(s3_store: S3EncryptedStorage, big_blob: bytes) -> None:
    raw = raw_bytes(s3_store, KEY)
    with s3_store.open_reader(KEY) as blob:
        for _ in range(4):
            blob.read(MIB)  # the windows grow: 1, 2 and 4 MiB
        asked = ranges_asked(s3_store)
        blob.seek(10 * MIB)
        assert blob.read(10) == raw[10 * MIB : 10 * MIB + 10]
        blob.seek(1000)  # back: before the window held
        assert blob.read(10) == raw[1000:1010]
    assert asked == [(10 * MIB, 10 * MIB + 256 * 1024 - 1), (1000, 1000 + 256 * 1024 - 1)]


def test_a_blob_replaced_or_deleted_while_read_is_an_error(
    s3_store: S3EncryptedStorage, big_blob: bytes
) -> None:
    reader = s3_store.open_reader(KEY)
    reader.read(10)
    with s3_store.open_writer(KEY) as blob:
        encrypt_into(blob, b"another recording")
    reader.seek(5 * MIB)
    with pytest.raises(StorageError, match="was replaced while it was read"):
        reader.read(10)
    reader = s3_store.open_reader(KEY)
    s3_store.delete(KEY)
    with pytest.raises(BlobMissing, match="was deleted while it was read"):
        reader.read(10)


# --- deletion on a versioned bucket ----------------------------------------------------------


def test_delete_removes_every_version_on_a_versioned_bucket(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    s3_server.admin.put_bucket_versioning(
        Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    for text in (b"first copy", b"second copy"):  # a retried ingest writes the key again
        with s3_store.open_writer(KEY) as blob:
            encrypt_into(blob, text)
    with s3_store.open_writer("neighbour.krec") as blob:
        encrypt_into(blob, b"another file")
    with s3_store.open_writer(KEY[:8]) as blob:  # a key KEY starts with
        encrypt_into(blob, b"a prefix of the key")
    name = "recordings/" + KEY
    assert s3_server.versions(s3_bucket).count((name, "version")) == 2

    assert s3_store.delete(KEY) is True
    kept = s3_server.versions(s3_bucket)
    assert [v for v in kept if v[0] == name] == []  # no version, no delete marker
    assert ("recordings/neighbour.krec", "version") in kept
    assert ("recordings/" + KEY[:8], "version") in kept
    assert s3_store.delete(KEY) is False


def test_delete_clears_a_delete_marker_left_by_a_plain_delete(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    s3_server.admin.put_bucket_versioning(
        Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    with s3_store.open_writer(KEY) as blob:
        encrypt_into(blob, b"data")
    s3_server.admin.delete_object(Bucket=s3_bucket, Key="recordings/" + KEY)  # by hand, say
    assert not s3_store.exists(KEY)
    assert s3_store.delete(KEY) is False  # not readable before; its old data goes all the same
    assert s3_server.versions(s3_bucket) == []


# --- the vault on S3: ingest -> retrieval -> retention ---------------------------------------


@pytest.fixture
def vault_s3(app: Flask, db_session: Session, tmp_path: Path, s3_store: S3EncryptedStorage):
    v = Vault(app, db_session, tmp_path, storage=s3_store)
    yield v
    v.close()


@pytest.fixture
def vault(vault_s3: Vault) -> Vault:
    """The recordings fixtures (a course in Zoom) use this vault, so the S3 one."""
    return vault_s3


def test_ingest_retrieval_and_retention_on_a_versioned_bucket(
    app: Flask,
    vault: Vault,
    course_in_zoom: Any,
    browser: Browser,
    lead: Any,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    s3_server.admin.put_bucket_versioning(
        Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    cls = course_in_zoom.classes[0]
    size = 11 * MIB + 3  # three parts of the upload
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at, recording_bytes=size)
    assert vault.work() == {"verified": 2, "zoom_deleted": 1}

    files = vault.files()
    mp4 = file_of(files, "MP4")
    assert mp4.state == "zoom_deleted" and mp4.size == size
    assert vault.blob_names() == sorted(f.blob_key for f in files)
    head = s3_server.admin.head_object(Bucket=s3_bucket, Key="recordings/" + mp4.blob_key)
    assert head["ETag"].endswith('-3"')
    assert raw_bytes(vault.storage, mp4.blob_key)[:4] == b"KREC"

    (rec,) = vault.recordings()
    browser.login(lead.email)
    granted = browser.post(
        f"/recordings/{rec.id}/files/{mp4.id}/access",
        {"reason": "Concern #3: what was said near the end."},
        form_page=f"/recordings/{rec.id}",
    )
    assert granted.status_code == 302
    url = granted.headers["Location"] + "/file"
    whole = browser.client.get(url)
    assert whole.status_code == 200 and len(whole.data) == size
    assert hashlib.sha256(whole.data).hexdigest() == mp4.sha256  # what Zoom sent
    part = browser.client.get(url, headers={"Range": f"bytes={size - 1000}-"})
    assert part.status_code == 206 and part.data == whole.data[-1000:]

    assert retention.sweep(app, vault.storage, now=rec.delete_after) == {"deleted": 1}
    assert vault.recordings()[0].state == "deleted"
    assert vault.blob_names() == []
    assert s3_server.versions(s3_bucket) == []  # no old version of the ciphertext either


def test_the_worker_finishes_an_upload_cut_off_by_its_death(
    vault: Vault, course_in_zoom: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    # A multipart upload left by a killed worker (as test_storage_contract makes one).
    s3_server.admin.create_multipart_upload(Bucket=s3_bucket, Key="recordings/" + KEY)
    cls = course_in_zoom.classes[0]
    vault.run_class(course_in_zoom.zoom_meeting_id, cls.starts_at)
    vault.process_webhooks()
    assert vault.ingest()["partials_removed"] == 1
    assert s3_server.uploads(s3_bucket) == []


# --- faults ----------------------------------------------------------------------------------


def test_the_store_going_down_mid_upload(
    s3_server: S3Server, s3_store: S3EncryptedStorage, s3_bucket: str
) -> None:
    part_sent = threading.Event()
    s3_store.client.meta.events.register("after-call.s3.UploadPart", lambda **_: part_sent.set())
    with pytest.raises(StorageError) as info, s3_store.open_writer(KEY) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID)
        try:
            writer.write(os.urandom(6 * MIB))
            assert part_sent.wait(10)  # by the writer's helper thread
            s3_server.stop()
            writer.write(os.urandom(6 * MIB))
            writer.close()
        except BaseException:
            writer.abort()
            raise
    error = info.value
    assert error.code == "storage_unavailable"
    assert f"could not store {KEY}" in error.message
    assert f"the object store at {s3_server.url} cannot be reached" in error.message
    # The abort could not reach the store either; what it kept is invisible, then cleaned up.
    s3_server.start()
    assert s3_server.object_names(s3_bucket) == []
    assert s3_server.uploads(s3_bucket) == ["recordings/" + KEY]
    assert s3_store.cleanup_partials() == 1
    assert leftovers(s3_store) == []


def test_a_store_that_is_down(s3_store: S3EncryptedStorage) -> None:
    down = S3EncryptedStorage(
        s3_store.url, endpoint_url=closed_port_url(), access_key_id="a", secret_access_key="b"
    )
    for attempt in (down.check, lambda: down.exists(KEY), lambda: list(down.keys())):
        with pytest.raises(StorageError, match="cannot be reached") as info:
            attempt()
        assert info.value.code == "storage_unavailable"
    with pytest.raises(StorageError, match="cannot be reached"), down.open_writer(KEY) as blob:
        encrypt_into(blob, b"data")


def test_a_store_that_does_not_answer(s3_store: S3EncryptedStorage) -> None:
    with silent_server() as url:
        slow = S3EncryptedStorage(
            s3_store.url,
            endpoint_url=url,
            access_key_id="a",
            secret_access_key="b",
            timeout=1,
            max_attempts=1,
        )
        started = time.monotonic()
        with pytest.raises(StorageError, match="did not answer within 1 s") as info:
            slow.open_reader(KEY)
        assert info.value.code == "storage_unavailable"
        with pytest.raises(StorageError, match="did not answer within 1 s"):
            slow.check()
        assert time.monotonic() - started < 10


def test_the_readiness_check_gives_up_quickly(s3_store: S3EncryptedStorage) -> None:
    with silent_server() as url:
        slow = S3EncryptedStorage(
            s3_store.url, endpoint_url=url, access_key_id="a", secret_access_key="b", timeout=120
        )
        started = time.monotonic()
        with pytest.raises(StorageError, match="did not answer within 5 s"):
            slow.check()
        assert time.monotonic() - started < 8  # one try, whatever the request timeout


def test_wrong_credentials(s3_server: S3Server, s3_bucket: str) -> None:
    key_id, secret = s3_server.new_access_key()
    s3_server.require_credentials()
    right = s3_server.storage(s3_bucket, access_key_id=key_id, secret_access_key=secret)
    right.check()
    with right.open_writer(KEY) as blob:
        encrypt_into(blob, b"data")
    unknown = s3_server.storage(s3_bucket, access_key_id="AKIAUNKNOWN", secret_access_key=secret)
    wrong_secret = s3_server.storage(
        s3_bucket, access_key_id=key_id, secret_access_key="not-the-secret"
    )
    for store, code in ((unknown, "InvalidAccessKeyId"), (wrong_secret, "SignatureDoesNotMatch")):
        with pytest.raises(StorageError) as info:
            store.check()
        assert info.value.code == "storage_credentials"
        assert f"refused the credentials ({code})" in info.value.message
        assert "COMPANION_S3_ACCESS_KEY_ID" in info.value.message
        assert secret not in info.value.message
        with pytest.raises(StorageError, match="refused the credentials"):
            store.open_reader(KEY)
        with (
            pytest.raises(StorageError, match="refused the credentials"),
            store.open_writer("other") as blob,
        ):
            encrypt_into(blob, b"data")


def test_a_missing_bucket(s3_server: S3Server) -> None:
    store = s3_server.storage("companion-no-such-bucket")
    expected = "the bucket 'companion-no-such-bucket' does not exist"
    with pytest.raises(StorageError, match=expected) as info:
        store.check()
    assert info.value.code == "storage_bucket_missing"
    assert "COMPANION_STORAGE_URL" in info.value.message
    # Not "the recording is missing": HEAD answers have no body, and the backend asks again.
    for attempt in (
        lambda: store.open_reader(KEY),
        lambda: store.size(KEY),
        lambda: store.exists(KEY),
        lambda: list(store.keys()),
        lambda: store.delete(KEY),
    ):
        with pytest.raises(StorageError, match=expected) as info:
            attempt()
        assert not isinstance(info.value, BlobMissing)
    with pytest.raises(StorageError, match=expected), store.open_writer(KEY) as blob:
        encrypt_into(blob, b"data")


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Any]:
    folder = tmp_path / "instance"
    env: dict[str, Any] = {s.env: None for s in SETTINGS}
    env["COMPANION_INSTANCE_PATH"] = str(folder)
    runner = CliRunner()

    def run(*args: str, **settings: str) -> Any:
        from companion.cli import main

        extra = {f"COMPANION_{k}": v for k, v in settings.items()}
        return runner.invoke(main, list(args), env={**env, **extra})

    assert run("init").exit_code == 0
    yield run


def s3_settings(server: S3Server, bucket: str) -> dict[str, str]:
    from .s3_helpers import ACCESS_KEY, REGION, SECRET_KEY

    return {
        "STORAGE_URL": f"s3://{bucket}/recordings",
        "S3_ENDPOINT_URL": server.url,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_ADDRESSING_STYLE": "path",
    }


def test_storage_check_command(command: Any, s3_server: S3Server, s3_bucket: str) -> None:
    ready = command("storage", "check", **s3_settings(s3_server, s3_bucket))
    assert ready.exit_code == 0, ready.output
    assert f"Recordings storage ready: S3EncryptedStorage('s3://{s3_bucket}/recordings'" in (
        ready.output
    )
    missing = command("storage", "check", **s3_settings(s3_server, "companion-not-made"))
    assert missing.exit_code == 1
    assert "not ready" in missing.stderr and "'companion-not-made' does not exist" in (
        missing.stderr
    )
    assert "Traceback" not in missing.output
    local = command("storage", "check")
    assert local.exit_code == 0 and "LocalEncryptedStorage" in local.output


def test_storage_cleanup_command(command: Any, s3_server: S3Server, s3_bucket: str) -> None:
    s3_server.admin.create_multipart_upload(Bucket=s3_bucket, Key="recordings/" + KEY)
    done = command("storage", "cleanup", "--hours", "1", **s3_settings(s3_server, s3_bucket))
    assert done.exit_code == 0, done.output
    assert "Removed 1 leftover(s)" in done.output
    assert s3_server.uploads(s3_bucket) == []


def test_the_worker_does_not_start_without_its_bucket(command: Any, s3_server: S3Server) -> None:
    result = command("worker", "--once", **s3_settings(s3_server, "companion-not-made"))
    assert result.exit_code == 2
    assert "companion worker: the recordings storage is not ready" in result.stderr
    assert "'companion-not-made' does not exist" in result.stderr
