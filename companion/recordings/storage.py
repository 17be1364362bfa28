"""Where encrypted recording blobs live: a small interface and a local-folder implementation.

The other implementation, for S3-compatible object stores, is in :mod:`.s3storage`; the
configuration chooses one (``vault.storage_for``).

Storage sees only ciphertext: the caller hands the writer to :class:`~.crypto.EncryptingWriter`.
A blob appears under its key only once it is complete and on disk (written to a temporary file,
synced, renamed, directory synced); a failed write leaves nothing behind. Every OS error becomes a
:class:`StorageError`, so callers handle one family of errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import CompanionError

PARTIAL_SUFFIX = ".partial"
# Keys name blobs by internal ids (a UUID and an optional extension), never by user input.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}(?:\.[A-Za-z0-9]{1,16})?")


class StorageError(CompanionError):
    """The blob store failed; nothing was half-written. ``key`` names the blob when known."""

    code = "storage"
    status = 503

    def __init__(self, message: str, *, key: str | None = None, code: str | None = None):
        super().__init__(message, code=code, key=key)
        self.key = key


class BlobMissing(StorageError):
    code = "blob_missing"
    status = 404


class BlobFile(Protocol):
    """The binary file :meth:`RecordingStorage.open_reader` returns (and the writer yields)."""

    def read(self, size: int = -1, /) -> bytes: ...
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...
    def close(self) -> None: ...


@runtime_checkable
class RecordingStorage(Protocol):
    """A store of opaque, already encrypted blobs addressed by safe keys."""

    def open_writer(self, key: str) -> contextlib.AbstractContextManager[BlobFile]:
        """Yield a file to write the blob to; on a clean exit it becomes ``key`` atomically
        and durably, on an exception it is removed and ``key`` is left as it was."""
        ...

    def open_reader(self, key: str) -> BlobFile:
        """Open the blob for reading (seekable); raise :class:`BlobMissing` if absent."""
        ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the blob durably; deleting a missing blob is fine. True if it existed."""
        ...

    def keys(self) -> Iterator[str]:
        """Every stored key (not partial writes), e.g. for an orphan sweep."""
        ...

    def cleanup_partials(self, older_than: float = 0.0) -> int:
        """Remove leftovers of interrupted writes (only those older than ``older_than``
        seconds, if given); return how many were removed."""
        ...

    def check(self) -> None:
        """Raise :class:`StorageError` if blobs cannot be kept here now (a readiness check:
        quick, and it writes nothing)."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe blob name, else raise ValueError (a programming error)."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or key.endswith(PARTIAL_SUFFIX):
        raise ValueError(
            f"unsafe storage key {key!r}: use an id such as a UUID, optionally with an extension"
        )
    return key


def _error(action: str, key: str | None, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return StorageError(
            f"the recordings disk is full: could not {action}"
            + (f" {key}" if key else "")
            + "; nothing was stored",
            key=key,
            code="disk_full",
        )
    reason = exc.strerror or exc.__class__.__name__
    return StorageError(f"could not {action}" + (f" {key}" if key else "") + f": {reason}", key=key)


class _GuardedFile:
    """A thin file over a descriptor whose every OS error is a :class:`StorageError`."""

    def __init__(self, fd: int, key: str, action: str, *, owned_by_storage: bool = False):
        self._fd = fd
        self._key = key
        self._action = action
        # A writer's file is closed by the storage after syncing it; a caller's close (say, by
        # a library that closes what it is given) must not free the descriptor before that.
        self._owned_by_storage = owned_by_storage

    def fileno(self) -> int:
        return self._fd

    def read(self, size: int = -1, /) -> bytes:
        if self._fd < 0:
            raise ValueError(f"read from blob {self._key} after it was closed")
        try:
            if size is None or size < 0:
                parts = []
                while chunk := os.read(self._fd, 1 << 20):
                    parts.append(chunk)
                return b"".join(parts)
            return os.read(self._fd, size)
        except OSError as exc:
            raise _error(self._action, self._key, exc) from exc

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        try:
            return os.readv(self._fd, [buffer])
        except OSError as exc:
            raise _error(self._action, self._key, exc) from exc

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._fd < 0:
            # The descriptor number may already belong to another file: never write through it.
            raise ValueError(f"write to blob {self._key} after it was closed")
        view = memoryview(data)
        total = len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise _error(self._action, self._key, exc) from exc
        return total

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        try:
            return os.lseek(self._fd, offset, whence)
        except OSError as exc:
            raise _error(self._action, self._key, exc) from exc

    def tell(self) -> int:
        return self.seek(0, os.SEEK_CUR)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        if not self._owned_by_storage:
            self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as exc:
                raise _error(self._action, self._key, exc) from exc

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> _GuardedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalEncryptedStorage:
    """Blobs as files in one folder (mode 0700, files 0600), written atomically and durably.

    ``cleanup_partials`` removes every interrupted write, so call it when no writer runs (the
    worker does at start), or pass ``older_than`` seconds to spare writes still in progress.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _error("create the recordings folder", str(self.root), exc) from exc

    def __repr__(self) -> str:
        return f"LocalEncryptedStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[BlobFile]:
        final = self._path(key)
        # A leading dot can never start a key, so a partial file never shadows a blob.
        partial = self.root / f".{key}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise _error("start writing", key, exc) from exc
        blob = _GuardedFile(fd, key, "write", owned_by_storage=True)
        renamed = False
        try:
            yield blob
            try:
                os.fsync(fd)
                blob._release()
                os.replace(partial, final)
                renamed = True
                self._sync_folder()
            except OSError as exc:
                raise _error("write", key, exc) from exc
        except BaseException:
            with contextlib.suppress(StorageError):
                blob._release()
            with contextlib.suppress(OSError):
                # After a failed directory sync the rename may or may not survive a crash; the
                # caller records the write as failed, so the blob must not stay either way.
                (final if renamed else partial).unlink()
            raise

    def open_reader(self, key: str) -> BlobFile:
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise BlobMissing(f"stored recording file {key} is missing", key=key) from exc
        except OSError as exc:
            raise _error("open", key, exc) from exc
        return _GuardedFile(fd, key, "read")

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise BlobMissing(f"stored recording file {key} is missing", key=key) from exc
        except OSError as exc:
            raise _error("inspect", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self._path(key).stat()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _error("inspect", key, exc) from exc
        return True

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            try:
                path.unlink()
                existed = True
            except FileNotFoundError:
                existed = False
            # Synced even when already gone: a previous attempt may have crashed before it.
            self._sync_folder()
        except OSError as exc:
            raise _error("delete", key, exc) from exc
        return existed

    def keys(self) -> Iterator[str]:
        try:
            names = sorted(entry.name for entry in os.scandir(self.root) if entry.is_file())
        except OSError as exc:
            raise _error("list", None, exc) from exc
        for name in names:
            if _KEY.fullmatch(name) and not name.endswith(PARTIAL_SUFFIX):
                yield name

    def cleanup_partials(self, older_than: float = 0.0) -> int:
        removed = 0
        cutoff = time.time() - older_than
        try:
            for entry in os.scandir(self.root):
                if not (entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX)):
                    continue
                if older_than and entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
            if removed:
                self._sync_folder()
        except OSError as exc:
            raise _error("clean up partial files in", str(self.root), exc) from exc
        return removed

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"the recordings folder {self.root} is missing", key=str(self.root))
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(
                f"the recordings folder {self.root} is not writable by this user",
                key=str(self.root),
            )

    def _sync_folder(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = [
    "BlobFile",
    "BlobMissing",
    "LocalEncryptedStorage",
    "RecordingStorage",
    "StorageError",
    "check_key",
]
