"""Local blob storage: atomic durable writes, nothing left by failures, OS errors wrapped.

What every backend must do is in test_storage_contract.py; this is what the folder does."""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path

import pytest

from companion.recordings import crypto, storage
from companion.recordings.storage import (
    LocalEncryptedStorage,
    StorageError,
)

DEK = bytes(range(32))
FILE_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
RECORDING_ID = uuid.UUID("99999999-8888-4777-8666-555555555555")
KEY = f"{FILE_ID}.krec"
S = 4096


@pytest.fixture
def store(tmp_path: Path) -> LocalEncryptedStorage:
    return LocalEncryptedStorage(tmp_path / "recordings")


def names(store: LocalEncryptedStorage) -> list[str]:
    return sorted(os.listdir(store.root))


def put(store: LocalEncryptedStorage, plaintext: bytes, key: str = KEY) -> crypto.WriteStats:
    with store.open_writer(key) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID, seg_log2=12)
        writer.write(plaintext)
        return writer.close()


def test_permissions(store: LocalEncryptedStorage) -> None:
    put(store, b"x")
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.root / KEY).stat().st_mode) == 0o600


def test_a_write_in_progress_is_a_hidden_partial_file(store: LocalEncryptedStorage) -> None:
    with store.open_writer(KEY) as blob:
        blob.write(b"partial data")
        assert not store.exists(KEY)
        (partial,) = names(store)
        assert partial.startswith(f".{KEY}.") and partial.endswith(".partial")
        assert list(store.keys()) == []
    assert names(store) == [KEY]
    assert (store.root / KEY).read_bytes() == b"partial data"


def test_write_is_synced_then_renamed_then_the_folder_synced(
    store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    monkeypatch.setattr(storage.os, "replace", replace)
    put(store, b"data")
    assert events == ["fsync-file", "rename", "fsync-folder"]


def enospc_after(limit: int, real_write):
    written = 0

    def write(fd: int, data) -> int:
        nonlocal written
        if written + len(data) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += len(data)
        return real_write(fd, data)

    return write


def test_full_disk_while_writing(
    store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.os, "write", enospc_after(2 * S, os.write))
    with pytest.raises(StorageError) as info:
        put(store, os.urandom(10 * S))
    assert info.value.code == "disk_full"
    assert "disk is full" in info.value.message and KEY in info.value.message
    assert isinstance(info.value.__cause__, OSError)
    assert names(store) == []


def test_full_disk_at_sync(store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", fsync)
    with pytest.raises(StorageError) as info:
        put(store, b"data")
    assert info.value.code == "disk_full"
    assert names(store) == []


def test_io_error_at_rename(store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage.os, "replace", replace)
    with pytest.raises(StorageError, match="could not write .*: Input/output error"):
        put(store, b"data")
    assert names(store) == []


def test_folder_sync_failure_removes_the_renamed_blob(
    store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sync_folder() -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store, "_sync_folder", sync_folder)
    with pytest.raises(StorageError):
        put(store, b"data")
    assert names(store) == []


def test_read_errors_are_storage_errors(
    store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(store, b"data")
    blob = store.open_reader(KEY)

    def read(fd: int, size: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage.os, "read", read)
    with pytest.raises(StorageError, match="could not read"):
        blob.read(10)
    blob.close()


def test_delete_is_idempotent_and_synced(
    store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(store, b"data")
    syncs = []
    real = store._sync_folder
    monkeypatch.setattr(store, "_sync_folder", lambda: (syncs.append(1), real()))
    assert store.delete(KEY) is True
    assert store.delete(KEY) is False
    assert names(store) == []
    assert len(syncs) == 2


def test_cleanup_can_spare_writes_in_progress(store: LocalEncryptedStorage) -> None:
    old = store.root / ".old.abc.partial"
    old.write_bytes(b"x")
    os.utime(old, (1_000_000, 1_000_000))
    with store.open_writer(KEY) as blob:
        blob.write(b"in progress")
        assert store.cleanup_partials(older_than=3600) == 1
    assert names(store) == [KEY]


def test_root_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError, match="could not create the recordings folder"):
        LocalEncryptedStorage(blocker / "recordings")


def test_full_disk_with_production_segments(
    store: LocalEncryptedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    mib = 1 << 20
    monkeypatch.setattr(storage.os, "write", enospc_after(3 * mib, os.write))
    with pytest.raises(StorageError) as info, store.open_writer(KEY) as blob:
        writer = crypto.EncryptingWriter(blob, DEK, FILE_ID, RECORDING_ID)  # 1 MiB, helper thread
        with writer:
            for _ in range(8):
                writer.write(os.urandom(mib))
    assert info.value.code == "disk_full"
    assert names(store) == []


def test_check_names_a_missing_folder(store: LocalEncryptedStorage) -> None:
    store.check()
    store.root.rmdir()  # say, a volume that was not mounted
    with pytest.raises(StorageError, match="the recordings folder .* is missing"):
        store.check()
