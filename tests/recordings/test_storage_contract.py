"""The RecordingStorage contract, run against both backends: the local folder and an S3 bucket
(moto's S3 server on loopback). What only one backend does (fsync order, multipart parts) is
tested beside it: test_storage.py and test_s3_storage.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from companion.recordings import crypto
from companion.recordings.storage import (
    BlobMissing,
    LocalEncryptedStorage,
    RecordingStorage,
    StorageError,
)

from .storage_helpers import add_clutter, leftovers, part_size, raw_bytes, source_of

DEK = bytes(range(32))
FILE_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
RECORDING_ID = uuid.UUID("99999999-8888-4777-8666-555555555555")
KEY = f"{FILE_ID}.krec"
S = 4096


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> RecordingStorage:
    if request.param == "local":
        return LocalEncryptedStorage(tmp_path / "recordings")
    return request.getfixturevalue("s3_store")


def put(store: RecordingStorage, plaintext: bytes, key: str = KEY) -> crypto.WriteStats:
    with store.open_writer(key) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID, seg_log2=12)
        writer.write(plaintext)
        return writer.close()


def test_is_a_recording_storage(store: RecordingStorage) -> None:
    assert isinstance(store, RecordingStorage)
    store.check()


def test_round_trip_through_the_encrypted_format(store: RecordingStorage) -> None:
    plaintext = os.urandom(3 * S + 7)
    stats = put(store, plaintext)
    assert store.exists(KEY)
    assert store.size(KEY) == stats.ciphertext_bytes
    assert leftovers(store) == [KEY]
    assert list(store.keys()) == [KEY]
    with store.open_reader(KEY) as blob:
        assert b"".join(crypto.decrypt_stream(blob, DEK, FILE_ID, RECORDING_ID)) == plaintext
    with store.open_reader(KEY) as blob:
        reader = crypto.DecryptingReader(blob, DEK, FILE_ID, RECORDING_ID)
        assert b"".join(reader.iter_range(S - 3, S + 3)) == plaintext[S - 3 : S + 4]


def test_production_segments_on_the_writers_helper_thread(store: RecordingStorage) -> None:
    plaintext = os.urandom((3 << 20) + 11)
    with store.open_writer(KEY) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID)  # 1 MiB segments
        writer.write(plaintext)
        writer.close()
    with store.open_reader(KEY) as blob:
        assert b"".join(crypto.decrypt_stream(blob, DEK, FILE_ID, RECORDING_ID)) == plaintext


def test_only_ciphertext_reaches_the_store(store: RecordingStorage) -> None:
    plaintext = b"a child's face " * 1000
    put(store, plaintext)
    raw = raw_bytes(store, KEY)
    assert b"child" not in raw
    assert raw[:4] == b"KREC"


def test_the_blob_appears_only_when_complete(store: RecordingStorage) -> None:
    data = os.urandom(part_size(store) + 100)  # far enough for the store to hold some of it
    with store.open_writer(KEY) as blob:
        blob.write(data)
        assert not store.exists(KEY)
        assert list(store.keys()) == []
        with pytest.raises(BlobMissing):
            store.open_reader(KEY)
    assert leftovers(store) == [KEY]
    assert raw_bytes(store, KEY) == data


def test_a_failed_write_leaves_nothing(store: RecordingStorage) -> None:
    with pytest.raises(RuntimeError, match="download cut"), store.open_writer(KEY) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID, seg_log2=12)
        writer.write(os.urandom(part_size(store) + 5 * S))
        raise RuntimeError("download cut")
    assert leftovers(store) == []
    assert not store.exists(KEY)


def test_a_failed_rewrite_keeps_the_previous_blob(store: RecordingStorage) -> None:
    put(store, b"first")
    before = raw_bytes(store, KEY)
    with pytest.raises(RuntimeError), store.open_writer(KEY) as blob:
        blob.write(os.urandom(part_size(store) + 1))
        raise RuntimeError
    assert raw_bytes(store, KEY) == before
    assert leftovers(store) == [KEY]


def test_closing_the_writer_early_does_not_lose_the_blob(store: RecordingStorage) -> None:
    with store.open_writer(KEY) as blob:
        blob.write(b"data")
        blob.close()  # some libraries close what they are handed
    assert raw_bytes(store, KEY) == b"data"


def test_an_empty_blob_is_a_blob(store: RecordingStorage) -> None:
    with store.open_writer(KEY):
        pass
    assert store.exists(KEY) and store.size(KEY) == 0
    with store.open_reader(KEY) as blob:
        assert blob.read() == b""


def test_missing_blob(store: RecordingStorage) -> None:
    with pytest.raises(BlobMissing) as info:
        store.open_reader(KEY)
    assert info.value.status == 404 and isinstance(info.value, StorageError)
    assert KEY in info.value.message
    with pytest.raises(BlobMissing):
        store.size(KEY)
    assert not store.exists(KEY)


def test_delete_is_idempotent(store: RecordingStorage) -> None:
    put(store, b"data")
    put(store, b"other", "other-key")
    assert store.delete(KEY) is True
    assert store.delete(KEY) is False
    assert leftovers(store) == ["other-key"]
    assert not store.exists(KEY)


def test_the_reader_seeks_and_reads_like_a_file(store: RecordingStorage) -> None:
    with store.open_writer(KEY) as blob:
        blob.write(bytes(range(256)) * 64)
    data = bytes(range(256)) * 64
    with store.open_reader(KEY) as blob:
        assert blob.read(10) == data[:10]
        assert blob.tell() == 10
        assert blob.seek(-5, os.SEEK_END) == len(data) - 5
        assert blob.read(100) == data[-5:]
        assert blob.read(1) == b""
        blob.seek(1000)
        assert blob.read(3) == data[1000:1003]
        blob.seek(7, os.SEEK_CUR)
        assert blob.read() == data[1010:]


def test_cleanup_partials_after_a_killed_writer(store: RecordingStorage) -> None:
    put(store, b"kept")
    code = source_of(store) + textwrap.dedent(
        f"""
        import os
        writer = store.open_writer("{uuid.uuid4()}")
        blob = writer.__enter__()
        blob.write(b"x" * {part_size(store) + 100})
        os._exit(9)  # killed mid-write: no cleanup runs
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    assert result.returncode == 9
    assert len(leftovers(store)) == 2  # the blob, and a partial file or an unfinished upload
    assert list(store.keys()) == [KEY]
    assert store.cleanup_partials() == 1
    assert leftovers(store) == [KEY]
    assert store.cleanup_partials() == 0


@pytest.mark.parametrize(
    "key",
    [
        "",
        "..",
        "../escape",
        "/etc/passwd",
        "a/b",
        "a\\b",
        ".hidden",
        "x.partial",
        "a..b",
        "a.b.c",
        "a b",
        "a\0b",
        "a" * 129,
        "é",
    ],
)
def test_unsafe_keys_are_refused(store: RecordingStorage, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe storage key"):
        store.open_writer(key).__enter__()
    with pytest.raises(ValueError, match="unsafe storage key"):
        store.open_reader(key)
    with pytest.raises(ValueError, match="unsafe storage key"):
        store.delete(key)
    with pytest.raises(ValueError, match="unsafe storage key"):
        store.exists(key)


def test_keys_lists_only_blobs(store: RecordingStorage) -> None:
    put(store, b"1", "b-key")
    put(store, b"2", "a-key.m4a")
    add_clutter(store)
    assert list(store.keys()) == ["a-key.m4a", "b-key"]


def test_no_io_through_a_closed_blob_file(store: RecordingStorage) -> None:
    with store.open_writer(KEY) as blob:
        blob.write(b"data")
    with pytest.raises(ValueError, match="after it was closed"):
        blob.write(b"late")
    reader = store.open_reader(KEY)
    reader.close()
    with pytest.raises(ValueError, match="after it was closed"):
        reader.read(1)
