"""Encrypted recording format v1: segmented AES-256-GCM (STREAM) and file-key wrapping.

``FORMAT.md`` beside this module is the specification; section names below refer to it. Every
primitive comes from ``cryptography``'s ``AESGCM``; nothing here implements a cipher.

Writing::

    dek = new_file_key()
    with storage.open_writer(key) as blob:
        writer = EncryptingWriter(blob, dek, file_id, recording_id)
        for chunk in download:
            writer.write(chunk)
        stats = writer.close()
    wrapped = wrap_dek(kek, kek_id, file_id, dek)   # store (file_id, kek_id, wrapped) in the DB

Reading: :func:`decrypt_stream` for a whole file, :class:`DecryptingReader` (or :func:`read_range`)
for HTTP range requests. Every integrity failure raises :class:`CorruptedOrTampered`.

The module runs past 600 lines and is kept whole: it is the encrypted format (FORMAT.md), whose
writer and readers must be read side by side against the test vectors.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import threading
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CompanionError

MAGIC = b"KREC"
VERSION = 1
ALGORITHM_AES256GCM_STREAM = 1
HEADER_SIZE = 48
TAG_SIZE = 16
KEY_SIZE = 32
NONCE_PREFIX_SIZE = 7
DEFAULT_SEG_LOG2 = 20
MIN_SEG_LOG2 = 12
MAX_SEG_LOG2 = 24
MAX_SEGMENTS = 2**32
# From this segment size on (production uses 1 MiB), writes overlap hashing and encryption.
_BACKGROUND_IO_MIN_SEGMENT = 256 * 1024

WRAP_LABEL = b"companion-dek-wrap/v1"
WRAP_NONCE_SIZE = 12
WRAPPED_SIZE = WRAP_NONCE_SIZE + KEY_SIZE + TAG_SIZE

_KEK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CorruptedOrTampered(CompanionError):
    """A blob or wrapped key failed a check; the message never says which check (FORMAT.md)."""

    code = "corrupted_or_tampered"
    status = 500
    MESSAGE = "recording is corrupted or tampered with"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class RangeNotSatisfiable(CompanionError):
    """A requested byte range lies outside the plaintext; ``size`` is the plaintext size."""

    code = "range_not_satisfiable"
    status = 416

    def __init__(self, start: int, end: int, size: int):
        super().__init__(f"bytes {start}-{end} are outside a file of {size} bytes", size=size)
        self.size = size


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes | None: ...


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int | None: ...


# -- Primitives ------------------------------------------------------------------------------


def new_file_key() -> bytes:
    """Return a fresh random 256-bit file key (DEK); one per blob, never reused."""
    return AESGCM.generate_key(bit_length=256)


def segment_nonce(nonce_prefix: bytes, index: int, last: bool) -> bytes:
    """Return ``nonce_prefix || uint32_be(index) || last`` (FORMAT.md, "Segment nonce")."""
    return nonce_prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def open_segment(
    aead: AESGCM, header: bytes, index: int, last: bool, ciphertext: bytes | memoryview
) -> bytes:
    """Decrypt and verify one segment; only verified plaintext ever leaves this function."""
    # AESGCM.decrypt returns only after the tag checks out. decrypt_into is avoided on purpose:
    # it leaves unverified plaintext in the caller's buffer when the tag is wrong.
    try:
        return aead.decrypt(segment_nonce(header[40:47], index, last), ciphertext, header)
    except InvalidTag:
        raise CorruptedOrTampered() from None


def segment_count(plaintext_size: int, seg_log2: int) -> int:
    """Return how many segments a plaintext of ``plaintext_size`` bytes takes (at least one)."""
    segment = 1 << seg_log2
    return max(1, -(-plaintext_size // segment))


def ciphertext_size(plaintext_size: int, seg_log2: int = DEFAULT_SEG_LOG2) -> int:
    """Return the blob length for a plaintext of ``plaintext_size`` bytes."""
    if plaintext_size < 0:
        raise ValueError("plaintext size cannot be negative")
    return HEADER_SIZE + plaintext_size + TAG_SIZE * segment_count(plaintext_size, seg_log2)


def plaintext_size(ciphertext_size: int, seg_log2: int = DEFAULT_SEG_LOG2) -> int:
    """Return the plaintext size a blob of ``ciphertext_size`` bytes holds if it is intact.

    The length is not authenticated by itself: trust the result only after the final segment
    has been verified (:class:`DecryptingReader` does). Impossible lengths raise
    :class:`CorruptedOrTampered` (FORMAT.md, "Random access and range reads").
    """
    return _plaintext_layout(ciphertext_size, seg_log2)[0]


def _plaintext_layout(ciphertext_size: int, seg_log2: int) -> tuple[int, int]:
    """Return ``(plaintext size, segment count)`` for a blob length, or raise."""
    _check_seg_log2(seg_log2)
    body = ciphertext_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise CorruptedOrTampered()
    full, rest = divmod(body, (1 << seg_log2) + TAG_SIZE)
    if rest == 0:
        segments = full
    elif full >= 1 and rest <= TAG_SIZE:
        # A final segment after full ones would be empty or shorter than its own tag.
        raise CorruptedOrTampered()
    else:
        segments = full + 1
    if segments > MAX_SEGMENTS:
        raise CorruptedOrTampered()
    return body - TAG_SIZE * segments, segments


def _check_seg_log2(seg_log2: int) -> None:
    if not MIN_SEG_LOG2 <= seg_log2 <= MAX_SEG_LOG2:
        raise ValueError(f"seg_log2 must be between {MIN_SEG_LOG2} and {MAX_SEG_LOG2}")


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ValueError(f"{what} must be {KEY_SIZE} bytes")


def check_kek_id(kek_id: str) -> str:
    """Return ``kek_id`` if it is a valid key id (FORMAT.md, "Key wrapping"), else raise."""
    if not isinstance(kek_id, str) or not _KEK_ID.fullmatch(kek_id):
        raise ValueError(
            "a key id is 1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return kek_id


# -- Header ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The fixed 48-byte header; its packed bytes are the associated data of every segment."""

    file_id: uuid.UUID
    recording_id: uuid.UUID
    nonce_prefix: bytes
    seg_log2: int = DEFAULT_SEG_LOG2

    @property
    def segment_size(self) -> int:
        return 1 << self.seg_log2

    def pack(self) -> bytes:
        _check_seg_log2(self.seg_log2)
        if len(self.nonce_prefix) != NONCE_PREFIX_SIZE:
            raise ValueError(f"nonce prefix must be {NONCE_PREFIX_SIZE} bytes")
        return b"".join(
            (
                MAGIC,
                bytes((VERSION, ALGORITHM_AES256GCM_STREAM, self.seg_log2, 0)),
                self.file_id.bytes,
                self.recording_id.bytes,
                self.nonce_prefix,
                b"\x00",
            )
        )

    @classmethod
    def parse(cls, raw: bytes) -> Header:
        """Parse a header, raising :class:`CorruptedOrTampered` for anything but a valid one."""
        if (
            len(raw) != HEADER_SIZE
            or raw[0:4] != MAGIC
            or raw[4] != VERSION
            or raw[5] != ALGORITHM_AES256GCM_STREAM
            or not MIN_SEG_LOG2 <= raw[6] <= MAX_SEG_LOG2
            or raw[7] != 0
            or raw[47] != 0
        ):
            raise CorruptedOrTampered()
        return cls(
            file_id=uuid.UUID(bytes=bytes(raw[8:24])),
            recording_id=uuid.UUID(bytes=bytes(raw[24:40])),
            nonce_prefix=bytes(raw[40:47]),
            seg_log2=raw[6],
        )


def _read_exactly(src: Readable, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of the stream."""
    data = src.read(size) or b""
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing:
        more = src.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _read_header(
    src: Readable, file_id: uuid.UUID, recording_id: uuid.UUID
) -> tuple[Header, bytes]:
    raw = _read_exactly(src, HEADER_SIZE)
    header = Header.parse(raw)
    if header.file_id != file_id or header.recording_id != recording_id:
        raise CorruptedOrTampered()
    return header, raw


# -- Writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteStats:
    """What :meth:`EncryptingWriter.close` reports; ``sha256`` is the plaintext's hex digest."""

    plaintext_bytes: int
    ciphertext_bytes: int
    sha256: str


class EncryptingWriter:
    """Encrypt a stream into ``dest`` as it is written; memory stays at about one segment.

    The header is written at once. The caller must call :meth:`close` when all data has been
    written, or the blob has no final segment and every reader refuses it. Used as a context
    manager, a normal exit closes it and an exception leaves it unfinished (and so unreadable).
    ``dest`` is neither flushed to disk nor closed here: that is the storage's job.

    With production-sized segments the writes to ``dest`` happen on a helper thread, so the disk
    works while the next segment is hashed and encrypted (``background_io=False`` turns this
    off); ``dest`` must then not be used by anyone else until :meth:`close` or :meth:`abort`
    returns, so call one of them before the storage syncs and closes ``dest``. An error from
    ``dest`` is raised by a later ``write`` or by ``close``.

    ``nonce_prefix`` exists only to make the committed test vectors reproducible; production
    code leaves it out and gets a random one.
    """

    def __init__(
        self,
        dest: Writable,
        dek: bytes,
        file_id: uuid.UUID,
        recording_id: uuid.UUID,
        seg_log2: int = DEFAULT_SEG_LOG2,
        *,
        nonce_prefix: bytes | None = None,
        background_io: bool | None = None,
    ):
        _check_key(dek, "file key")
        header = Header(
            file_id=file_id,
            recording_id=recording_id,
            nonce_prefix=os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix,
            seg_log2=seg_log2,
        )
        self._dest = dest
        self._header = header.pack()
        self._aead = AESGCM(dek)
        self._segment = header.segment_size
        # One preallocated buffer, filled through a memoryview: a bytearray that grows and
        # shrinks per segment, or slice assignment to a bytearray, allocates 1 MiB each time.
        self._pending = memoryview(bytearray(self._segment))
        self._filled = 0
        if background_io is None:
            background_io = self._segment >= _BACKGROUND_IO_MIN_SEGMENT
        self._sink: _DirectSink | _BackgroundSink = (
            _BackgroundSink(dest, self._segment + TAG_SIZE)
            if background_io
            else _DirectSink(dest, self._segment + TAG_SIZE)
        )
        self._index = 0
        self._sha256 = hashlib.sha256()
        self._plaintext_bytes = 0
        self._ciphertext_bytes = 0
        self._finished = False
        self.stats: WriteStats | None = None
        _write_all(dest, self._header)
        self._ciphertext_bytes += HEADER_SIZE

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt ``data``; whole segments go to ``dest`` as soon as they are known not last."""
        if self._finished:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        size = len(view)
        self._sha256.update(view)
        self._plaintext_bytes += size
        segment = self._segment
        while view:
            # A full segment is held back until more data arrives: only then is it known not to
            # be the final one, and the final segment must not be empty (FORMAT.md, "Segments").
            if self._filled == segment:
                self._seal(self._pending, last=False)
                self._filled = 0
            if not self._filled and len(view) > segment:
                self._seal(view[:segment], last=False)
                view = view[segment:]
                continue
            take = min(segment - self._filled, len(view))
            self._pending[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
        return size

    def close(self) -> WriteStats:
        """Write the final segment and return the stats; calling it again returns them again."""
        if self.stats is not None:
            return self.stats
        if self._finished:
            raise ValueError("the EncryptingWriter was aborted; the blob is incomplete")
        self._finished = True
        try:
            self._seal(self._pending[: self._filled], last=True)
        except BaseException:
            self._sink.cancel()
            raise
        self._filled = 0
        self._sink.finish()
        flush = getattr(self._dest, "flush", None)
        if flush is not None:
            flush()
        self.stats = WriteStats(
            plaintext_bytes=self._plaintext_bytes,
            ciphertext_bytes=self._ciphertext_bytes,
            sha256=self._sha256.hexdigest(),
        )
        return self.stats

    def abort(self) -> None:
        """Stop without a final segment, so no reader will ever accept what was written."""
        self._finished = True
        self._filled = 0
        self._sink.cancel()

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("the recording is too large for format v1 (2^32 segments)")
        size = len(plaintext) + TAG_SIZE
        out = self._sink.buffer()
        nonce = segment_nonce(self._header[40:47], self._index, last)
        self._aead.encrypt_into(nonce, plaintext, self._header, memoryview(out)[:size])
        self._sink.submit(size)
        self._index += 1
        self._ciphertext_bytes += size


class _DirectSink:
    """Writes each sealed segment before the next one is sealed, from one reused buffer."""

    def __init__(self, dest: Writable, size: int):
        self._dest = dest
        self._buffer = bytearray(size)

    def buffer(self) -> bytearray:
        return self._buffer

    def submit(self, size: int) -> None:
        _write_all(self._dest, memoryview(self._buffer)[:size])

    def finish(self) -> None:
        pass

    def cancel(self) -> None:
        pass


class _BackgroundSink:
    """Writes sealed segments on a helper thread, alternating between two buffers.

    The thread spends its time in ``write`` system calls, which release the GIL, while the
    caller's thread hashes (which releases it too) and encrypts the next segment: on this
    machine (2 vCPUs, tmpfs) that takes an encrypted write from about 0.9 to 1.4 GB/s.
    """

    def __init__(self, dest: Writable, size: int):
        self._shared = _SinkState(dest, size)
        self._queue: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._next = 0
        self._thread: threading.Thread | None = None

    def buffer(self) -> bytearray:
        shared = self._shared
        # Waits until the thread has written what this buffer held two segments ago.
        shared.free[self._next].acquire()
        if shared.error is not None:
            shared.free[self._next].release()
            raise shared.error
        return shared.buffers[self._next]

    def submit(self, size: int) -> None:
        if self._thread is None:
            # The thread holds only the shared state, not this object, so a writer dropped
            # without close() or abort() is collected and its finalizer ends the thread.
            self._thread = threading.Thread(
                target=_background_writes,
                args=(self._shared, self._queue),
                name="recording-writer",
                daemon=True,
            )
            self._thread.start()
            weakref.finalize(self, self._queue.put, None)
        self._queue.put((self._next, size))
        self._next ^= 1

    def finish(self) -> None:
        self._stop()
        if self._shared.error is not None:
            raise self._shared.error

    def cancel(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


class _SinkState:
    def __init__(self, dest: Writable, size: int):
        self.dest = dest
        self.buffers = (bytearray(size), bytearray(size))
        self.free = (threading.Semaphore(1), threading.Semaphore(1))
        self.error: BaseException | None = None


def _background_writes(shared: _SinkState, jobs: queue.SimpleQueue[tuple[int, int] | None]) -> None:
    while (job := jobs.get()) is not None:
        index, size = job
        try:
            if shared.error is None:
                _write_all(shared.dest, memoryview(shared.buffers[index])[:size])
        except BaseException as exc:
            shared.error = exc
        finally:
            shared.free[index].release()


def _write_all(dest: Writable, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = dest.write(view)
        # Buffered files write everything and return the count; raw files may write less.
        if written is None or written >= len(view):
            return
        view = view[written:]


# -- Reading ---------------------------------------------------------------------------------


def decrypt_stream(
    src: Readable, dek: bytes, file_id: uuid.UUID, recording_id: uuid.UUID
) -> Iterator[bytes]:
    """Yield the verified plaintext of a blob read from ``src``, segment by segment.

    Each yielded segment has passed its tag check, but the file is complete only when the
    generator finishes: a :class:`CorruptedOrTampered` raised later (truncation, trailing data)
    means the whole file must be treated as bad (FORMAT.md, "Decryption").
    """
    _check_key(dek, "file key")
    header, raw_header = _read_header(src, file_id, recording_id)
    aead = AESGCM(dek)
    full = header.segment_size + TAG_SIZE
    current = _read_exactly(src, full)
    index = 0
    while True:
        if len(current) < TAG_SIZE:
            raise CorruptedOrTampered()
        # Read one segment ahead: only the end of the stream makes a segment the final one.
        following = _read_exactly(src, full) if len(current) == full else b""
        if not following:
            if len(current) == TAG_SIZE and index > 0:
                raise CorruptedOrTampered()
            yield open_segment(aead, raw_header, index, True, current)
            return
        if index == MAX_SEGMENTS - 1:
            raise CorruptedOrTampered()
        yield open_segment(aead, raw_header, index, False, current)
        current = following
        index += 1


class Seekable(Readable, Protocol):
    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class DecryptingReader:
    """Random access to a blob in a seekable file, for HTTP range requests.

    Opening it checks the header and verifies the final segment, so :attr:`size` can be trusted
    before anything is sent (FORMAT.md, "Random access and range reads"). Raises
    :class:`CorruptedOrTampered` if the blob is not intact.
    """

    def __init__(self, src: Seekable, dek: bytes, file_id: uuid.UUID, recording_id: uuid.UUID):
        _check_key(dek, "file key")
        self._src = src
        src.seek(0)
        self.header, self._raw_header = _read_header(src, file_id, recording_id)
        self._aead = AESGCM(dek)
        self._segment = self.header.segment_size
        total = src.seek(0, os.SEEK_END)
        self.size, self._segments = _plaintext_layout(total, self.header.seg_log2)
        self._final = self._decrypt(self._segments - 1)

    def iter_range(self, start: int, end_inclusive: int) -> Iterator[bytes]:
        """Return an iterator over plaintext bytes ``start`` to ``end_inclusive``.

        Only the segments covering the range are decrypted. An empty or out-of-range request
        raises :class:`RangeNotSatisfiable` here, before iteration starts.
        """
        if not 0 <= start <= end_inclusive < self.size:
            raise RangeNotSatisfiable(start, end_inclusive, self.size)
        return self._iter_range(start, end_inclusive)

    def __iter__(self) -> Iterator[bytes]:
        """Iterate over the whole plaintext (nothing for an empty file)."""
        if self.size == 0:
            return iter(())
        return self._iter_range(0, self.size - 1)

    def authenticate(self, start: int = 0, end_inclusive: int | None = None) -> None:
        """Check the tags of every segment covering ``start`` to ``end_inclusive`` (default:
        the whole file), keeping nothing; :class:`CorruptedOrTampered` if one fails.

        Run it before a response's status line goes out, so that a damaged file is refused
        rather than served in part (AES-GCM decryption runs at several GB/s).
        """
        if self.size == 0:
            return
        end = self.size - 1 if end_inclusive is None else end_inclusive
        if not 0 <= start <= end < self.size:
            raise RangeNotSatisfiable(start, end, self.size)
        for index in range(start // self._segment, end // self._segment + 1):
            if index != self._segments - 1:  # the final segment was checked on opening
                self._decrypt(index)

    def _iter_range(self, start: int, end_inclusive: int) -> Iterator[bytes]:
        segment = self._segment
        first, last = start // segment, end_inclusive // segment
        for index in range(first, last + 1):
            plaintext = self._final if index == self._segments - 1 else self._decrypt(index)
            low = start - index * segment if index == first else 0
            high = end_inclusive - index * segment + 1 if index == last else len(plaintext)
            yield plaintext if (low, high) == (0, len(plaintext)) else plaintext[low:high]

    def _decrypt(self, index: int) -> bytes:
        last = index == self._segments - 1
        self._src.seek(HEADER_SIZE + index * (self._segment + TAG_SIZE))
        expected = (
            self.size - index * self._segment + TAG_SIZE if last else self._segment + TAG_SIZE
        )
        ciphertext = _read_exactly(self._src, expected)
        if len(ciphertext) != expected:
            # The file changed under us since its length was taken.
            raise CorruptedOrTampered()
        return open_segment(self._aead, self._raw_header, index, last, ciphertext)


def read_range(
    src: Seekable,
    dek: bytes,
    file_id: uuid.UUID,
    recording_id: uuid.UUID,
    start: int,
    end_inclusive: int,
) -> Iterator[bytes]:
    """Return an iterator over plaintext bytes ``start`` to ``end_inclusive`` of a blob.

    Checks happen now, not on first iteration: :class:`CorruptedOrTampered` if the blob is not
    intact (the final segment is always verified), :class:`RangeNotSatisfiable` if the range is
    outside the file. Use :class:`DecryptingReader` directly to learn the size first.
    """
    return DecryptingReader(src, dek, file_id, recording_id).iter_range(start, end_inclusive)


# -- Convenience for small data and tests ----------------------------------------------------


def encrypt_bytes(
    plaintext: bytes,
    dek: bytes,
    file_id: uuid.UUID,
    recording_id: uuid.UUID,
    seg_log2: int = DEFAULT_SEG_LOG2,
    *,
    nonce_prefix: bytes | None = None,
) -> bytes:
    """Return the blob of ``plaintext`` (held in memory: for small data and tests)."""
    out = io.BytesIO()
    writer = EncryptingWriter(out, dek, file_id, recording_id, seg_log2, nonce_prefix=nonce_prefix)
    writer.write(plaintext)
    writer.close()
    return out.getvalue()


def decrypt_bytes(blob: bytes, dek: bytes, file_id: uuid.UUID, recording_id: uuid.UUID) -> bytes:
    """Return the plaintext of an in-memory blob, or raise :class:`CorruptedOrTampered`."""
    return b"".join(decrypt_stream(io.BytesIO(blob), dek, file_id, recording_id))


@dataclass(frozen=True)
class PlaintextDigest:
    size: int
    sha256: str


def digest_stream(
    src: Readable, dek: bytes, file_id: uuid.UUID, recording_id: uuid.UUID
) -> PlaintextDigest:
    """Decrypt a whole blob and return its plaintext size and SHA-256, e.g. to verify an ingest."""
    sha256 = hashlib.sha256()
    size = 0
    for chunk in decrypt_stream(src, dek, file_id, recording_id):
        sha256.update(chunk)
        size += len(chunk)
    return PlaintextDigest(size=size, sha256=sha256.hexdigest())


def authenticate_stream(
    src: Readable, dek: bytes, file_id: uuid.UUID, recording_id: uuid.UUID
) -> int:
    """Check every segment of a blob (and that it is complete); return its plaintext size.

    The ingest hashed the plaintext once, on the way in; checking the stored copy needs no
    second hash: each segment's AES-GCM tag (under a key only this service has, bound to the
    file, the segment's index and the final flag) proves it is what was written.
    """
    size = 0
    for chunk in decrypt_stream(src, dek, file_id, recording_id):
        size += len(chunk)
    return size


# -- Key wrapping ----------------------------------------------------------------------------


def _wrap_aad(kek_id: str, file_id: uuid.UUID) -> bytes:
    return WRAP_LABEL + check_kek_id(kek_id).encode("ascii") + file_id.bytes


def wrap_dek(
    kek: bytes, kek_id: str, file_id: uuid.UUID, dek: bytes, *, nonce: bytes | None = None
) -> bytes:
    """Return the 60-byte wrapped form of ``dek`` under ``kek`` (FORMAT.md, "Key wrapping").

    ``nonce`` exists only for the committed test vectors; production code leaves it out.
    """
    _check_key(kek, "key-encryption key")
    _check_key(dek, "file key")
    nonce = os.urandom(WRAP_NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != WRAP_NONCE_SIZE:
        raise ValueError(f"wrap nonce must be {WRAP_NONCE_SIZE} bytes")
    return nonce + AESGCM(kek).encrypt(nonce, bytes(dek), _wrap_aad(kek_id, file_id))


def unwrap_dek(kek: bytes, kek_id: str, file_id: uuid.UUID, wrapped: bytes) -> bytes:
    """Return the file key in ``wrapped``; a wrong key, id or value raises CorruptedOrTampered."""
    _check_key(kek, "key-encryption key")
    aad = _wrap_aad(kek_id, file_id)
    if len(wrapped) != WRAPPED_SIZE:
        raise CorruptedOrTampered()
    nonce, sealed = bytes(wrapped[:WRAP_NONCE_SIZE]), bytes(wrapped[WRAP_NONCE_SIZE:])
    try:
        return AESGCM(kek).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise CorruptedOrTampered() from None


__all__ = [
    "DEFAULT_SEG_LOG2",
    "HEADER_SIZE",
    "TAG_SIZE",
    "WRAPPED_SIZE",
    "CorruptedOrTampered",
    "DecryptingReader",
    "EncryptingWriter",
    "Header",
    "PlaintextDigest",
    "RangeNotSatisfiable",
    "WriteStats",
    "authenticate_stream",
    "check_kek_id",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "digest_stream",
    "encrypt_bytes",
    "new_file_key",
    "plaintext_size",
    "read_range",
    "segment_count",
    "unwrap_dek",
    "wrap_dek",
]
