"""The backup archive on disk: a short clear preamble, then one blob in the recordings vault's
encrypted format (recordings/FORMAT.md), so no cipher is new here.

    archive  = preamble || blob
    preamble = "KBAK" || 0x01 || len(key_id) || key_id || check(16) || archive_id(16) || wrapped(60)

``archive_id`` is a random UUID, the blob's ``file_id``; the blob's ``recording_id`` is the fixed
:data:`STREAM_ID`, so a recording blob is never taken for an archive or the reverse. The blob's
file key is new for every archive and is wrapped (FORMAT.md, "Key wrapping") under the backup
key ``key_id``: the wrapping binds ``key_id`` and ``archive_id``, and every segment of the blob
binds ``archive_id``, so changing any byte of the preamble or the blob, or cutting the file
anywhere, makes reading fail. ``check`` (backup/keys.py) only lets a wrong key be named as such
rather than as damage.

An archive is written to ``PATH.partial`` and renamed to ``PATH`` only once complete and synced,
so a crash or an error leaves no file that looks like a backup.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import CompanionError
from ..keysets import KeySet, UnknownKey
from ..recordings import crypto
from . import keys

MAGIC = b"KBAK"
VERSION = 1
CHECK_SIZE = 16
# The blob's `recording_id`: marks the stream as a backup archive (uuid5 of a fixed name).
STREAM_ID = uuid.uuid5(uuid.NAMESPACE_URL, "urn:companion:backup-archive:v1")
PARTIAL_SUFFIX = ".partial"


class ArchiveError(CompanionError):
    """The archive cannot be used; the message says why and what to do."""

    code = "backup_archive"
    status = 400


class ArchiveDamaged(ArchiveError):
    code = "backup_damaged"

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(
            f"{path} is truncated or was changed after it was written (it fails "
            "authentication): it cannot be trusted, so nothing was read from it; use another "
            "backup"
        )


class WrongBackupKey(ArchiveError):
    code = "backup_wrong_key"


def _preamble(key_id: str, key: bytes, archive_id: uuid.UUID, wrapped: bytes) -> bytes:
    raw_id = key_id.encode("ascii")
    return b"".join(
        (
            MAGIC,
            bytes((VERSION, len(raw_id))),
            raw_id,
            keys.check_value(key),
            archive_id.bytes,
            wrapped,
        )
    )


class ArchiveWriter:
    """Write one archive: ``with ArchiveWriter(path, keyset) as out: out.write(data)``.

    An exception inside the block leaves no archive (and no partial file) behind.
    """

    def __init__(self, path: str | os.PathLike[str], keyset: KeySet, *, seg_log2: int = 20):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.archive_id = uuid.uuid4()
        self.key_id = keyset.current_id
        self._key = keyset.get(self.key_id)
        self._seg_log2 = seg_log2
        self._file: BinaryIO | None = None
        self._writer: crypto.EncryptingWriter | None = None
        self.size = 0

    def __enter__(self) -> ArchiveWriter:
        if self.path.exists():
            raise ArchiveError(f"{self.path} exists already; choose another name")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()  # what an interrupted earlier run left
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        dek = crypto.new_file_key()
        wrapped = crypto.wrap_dek(self._key, self.key_id, self.archive_id, dek)
        self._file.write(_preamble(self.key_id, self._key, self.archive_id, wrapped))
        self._writer = crypto.EncryptingWriter(
            self._file, dek, self.archive_id, STREAM_ID, self._seg_log2
        )
        return self

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._file is not None and self._writer is not None
        if exc_type is not None:
            self._writer.abort()
            self._file.close()
            with contextlib.suppress(OSError):
                self.partial.unlink()
            return
        try:
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.size = self.partial.stat().st_size
            os.replace(self.partial, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except BaseException:
            self._file.close()
            with contextlib.suppress(OSError):
                self.partial.unlink()
            raise


def _read_exactly(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    return data if data else b""


def read_plaintext(path: str | os.PathLike[str], keyset: KeySet) -> Iterator[bytes]:
    """Yield the archive's authenticated plaintext, segment by segment.

    Raises :class:`ArchiveError` before anything is yielded for a file that is not an archive
    or a key that is not configured or not the right one; :class:`ArchiveDamaged` at whatever
    point the file turns out truncated or changed (the caller must then drop all it read).
    """
    try:
        src = open(path, "rb")  # noqa: SIM115 - closed in the finally below, after the generator
    except OSError as exc:
        raise ArchiveError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        head = _read_exactly(src, 6)
        if len(head) < 6 or head[:4] != MAGIC:
            raise ArchiveError(f"{path} is not a companion backup archive")
        if head[4] != VERSION:
            raise ArchiveError(
                f"{path} is a backup archive of format {head[4]}, which this version of "
                "companion does not read"
            )
        raw_id = _read_exactly(src, head[5])
        rest = _read_exactly(src, CHECK_SIZE + 16 + crypto.WRAPPED_SIZE)
        if len(raw_id) != head[5] or len(rest) != CHECK_SIZE + 16 + crypto.WRAPPED_SIZE:
            raise ArchiveDamaged(path)
        try:
            key_id = crypto.check_kek_id(raw_id.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ArchiveDamaged(path) from None
        check, archive_id = rest[:CHECK_SIZE], uuid.UUID(bytes=rest[CHECK_SIZE : CHECK_SIZE + 16])
        wrapped = rest[CHECK_SIZE + 16 :]
        try:
            key = keyset.get(key_id)
        except UnknownKey:
            raise WrongBackupKey(
                f"{path} names backup key {key_id!r}, which is not configured "
                "(COMPANION_BACKUP_KEYS / COMPANION_BACKUP_KEYS_FILE): add that key line after "
                "the current one to read it (if no such key ever existed, the archive was "
                "changed)"
            ) from None
        try:
            dek = crypto.unwrap_dek(key, key_id, archive_id, wrapped)
        except crypto.CorruptedOrTampered:
            if not keys.matches(key, check):
                raise WrongBackupKey(
                    f"the configured backup key {key_id!r} is not the key that made {path}: "
                    "restore the right key line"
                ) from None
            raise ArchiveDamaged(path) from None
        try:
            yield from crypto.decrypt_stream(src, dek, archive_id, STREAM_ID)
        except crypto.CorruptedOrTampered:
            raise ArchiveDamaged(path) from None
    finally:
        src.close()


def archive_id_of(path: str | os.PathLike[str]) -> uuid.UUID | None:
    """The archive id in the preamble (not authenticated: for messages only)."""
    try:
        with open(path, "rb") as src:
            head = src.read(6)
            if len(head) < 6 or head[:4] != MAGIC:
                return None
            src.read(head[5] + CHECK_SIZE)
            raw = src.read(16)
            return uuid.UUID(bytes=raw) if len(raw) == 16 else None
    except OSError:
        return None


def lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Split a stream of chunks into lines (without the newline); a last line without a newline
    is yielded too, and the reader of the records refuses it (it is not the end record)."""
    pending = b""
    for chunk in chunks:
        if pending:
            chunk = pending + chunk
        parts = chunk.split(b"\n")
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending
