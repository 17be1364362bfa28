"""The encrypted recording format: round trips, size arithmetic, every refusal FORMAT.md lists."""

from __future__ import annotations

import gc
import hashlib
import io
import threading
import tracemalloc
import uuid

import pytest

from companion.recordings import crypto
from companion.recordings.crypto import (
    CorruptedOrTampered,
    DecryptingReader,
    EncryptingWriter,
    RangeNotSatisfiable,
)

SEG_LOG2 = 12
S = 1 << SEG_LOG2
FULL = S + crypto.TAG_SIZE
DEK = bytes(range(32))
FILE_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
RECORDING_ID = uuid.UUID("99999999-8888-4777-8666-555555555555")
PREFIX = bytes.fromhex("01020304050607")
SIZES = [0, 1, S - 1, S, S + 1, 2 * S, 3 * S + 7]


def data(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"{seed}".encode()).digest(size) if size else b""


def seal(plaintext: bytes, **kw) -> bytes:
    kw.setdefault("nonce_prefix", PREFIX)
    return crypto.encrypt_bytes(plaintext, DEK, FILE_ID, RECORDING_ID, SEG_LOG2, **kw)


def unseal(blob: bytes, dek: bytes = DEK, file_id=FILE_ID, recording_id=RECORDING_ID) -> bytes:
    return crypto.decrypt_bytes(blob, dek, file_id, recording_id)


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[crypto.HEADER_SIZE :]
    return blob[: crypto.HEADER_SIZE], [body[i : i + FULL] for i in range(0, len(body), FULL)]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    plaintext = data(size)
    blob = seal(plaintext)
    assert len(blob) == crypto.ciphertext_size(size, SEG_LOG2)
    assert unseal(blob) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_segments_are_full_except_a_non_empty_final_one(size: int) -> None:
    _, segments = split(seal(data(size)))
    assert len(segments) == crypto.segment_count(size, SEG_LOG2)
    assert all(len(s) == FULL for s in segments[:-1])
    assert len(segments[-1]) > crypto.TAG_SIZE or size == 0


@pytest.mark.parametrize("chunk", [1, 7, S - 1, S, S + 1, 5 * S])
def test_blob_does_not_depend_on_how_the_writes_are_split(chunk: int) -> None:
    plaintext = data(3 * S + 7)
    out = io.BytesIO()
    writer = EncryptingWriter(out, DEK, FILE_ID, RECORDING_ID, SEG_LOG2, nonce_prefix=PREFIX)
    for i in range(0, len(plaintext), chunk):
        writer.write(plaintext[i : i + chunk])
    writer.close()
    assert out.getvalue() == seal(plaintext)


def test_close_reports_sizes_and_the_plaintext_digest() -> None:
    plaintext = data(2 * S + 3)
    out = io.BytesIO()
    writer = EncryptingWriter(out, DEK, FILE_ID, RECORDING_ID, SEG_LOG2)
    writer.write(plaintext)
    stats = writer.close()
    assert stats == crypto.WriteStats(
        plaintext_bytes=len(plaintext),
        ciphertext_bytes=len(out.getvalue()),
        sha256=hashlib.sha256(plaintext).hexdigest(),
    )
    assert writer.close() is stats
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_a_random_nonce_prefix_per_blob_and_production_segment_size() -> None:
    a = crypto.encrypt_bytes(b"x", DEK, FILE_ID, RECORDING_ID)
    b = crypto.encrypt_bytes(b"x", DEK, FILE_ID, RECORDING_ID)
    assert a[40:47] != b[40:47]
    assert a[6] == 20 == crypto.DEFAULT_SEG_LOG2


def test_header_layout_matches_the_spec() -> None:
    header = seal(b"")[: crypto.HEADER_SIZE]
    assert header == (
        b"KREC" + bytes([1, 1, SEG_LOG2, 0]) + FILE_ID.bytes + RECORDING_ID.bytes + PREFIX + b"\0"
    )
    parsed = crypto.Header.parse(header)
    assert parsed == crypto.Header(FILE_ID, RECORDING_ID, PREFIX, SEG_LOG2)
    assert parsed.pack() == header


def test_writer_aborted_by_an_exception_leaves_an_unreadable_blob() -> None:
    out = io.BytesIO()
    with (
        pytest.raises(RuntimeError),
        EncryptingWriter(out, DEK, FILE_ID, RECORDING_ID, SEG_LOG2) as writer,
    ):
        writer.write(data(S + 5))
        raise RuntimeError("download cut")
    with pytest.raises(CorruptedOrTampered):
        unseal(out.getvalue())
    with pytest.raises(ValueError, match="aborted"):
        writer.close()


def test_writer_copes_with_short_writes_of_a_raw_file() -> None:
    class Dribble:
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, chunk) -> int:
            piece = bytes(chunk[:1000])
            self.buf += piece
            return len(piece)

    dest = Dribble()
    plaintext = data(2 * S + 1)
    writer = EncryptingWriter(dest, DEK, FILE_ID, RECORDING_ID, SEG_LOG2, nonce_prefix=PREFIX)
    writer.write(plaintext)
    writer.close()
    assert bytes(dest.buf) == seal(plaintext)


def test_writer_memory_stays_near_one_segment_whatever_the_stream_length() -> None:
    class Sink:
        def write(self, chunk) -> int:
            return len(chunk)

    chunk = bytearray(data(1 << 20))
    tracemalloc.start()
    try:
        writer = EncryptingWriter(Sink(), DEK, FILE_ID, RECORDING_ID)  # production 1 MiB segments
        for i in range(48):
            chunk[:4] = i.to_bytes(4, "big")
            writer.write(chunk)
        writer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The pending segment and two output buffers for the helper thread, nothing per MiB.
    assert peak < 4 * (1 << 20), peak


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        EncryptingWriter(io.BytesIO(), b"short", FILE_ID, RECORDING_ID)
    with pytest.raises(ValueError, match="seg_log2"):
        EncryptingWriter(io.BytesIO(), DEK, FILE_ID, RECORDING_ID, seg_log2=11)
    with pytest.raises(ValueError, match="seg_log2"):
        EncryptingWriter(io.BytesIO(), DEK, FILE_ID, RECORDING_ID, seg_log2=25)


# -- Size arithmetic -------------------------------------------------------------------------


def test_plaintext_size_inverts_ciphertext_size() -> None:
    for size in range(0, 4 * S + 40):
        assert crypto.plaintext_size(crypto.ciphertext_size(size, SEG_LOG2), SEG_LOG2) == size


def test_impossible_blob_lengths_are_refused() -> None:
    valid = {crypto.ciphertext_size(p, SEG_LOG2) for p in range(0, 4 * S + 40)}
    for length in range(0, max(valid)):
        if length not in valid:
            with pytest.raises(CorruptedOrTampered):
                crypto.plaintext_size(length, SEG_LOG2)


def test_production_sizes() -> None:
    mib = 1 << 20
    assert crypto.ciphertext_size(0) == 64
    assert crypto.ciphertext_size(mib) == 48 + mib + 16
    assert crypto.ciphertext_size(mib + 1) == 48 + mib + 1 + 32
    assert crypto.plaintext_size(48 + 3 * (mib + 16) + 23) == 3 * mib + 7


# -- Refusals --------------------------------------------------------------------------------

BLOB = seal(data(3 * S + 7))
HEADER, SEGMENTS = split(BLOB)


def refused(blob: bytes, **kw) -> bool:
    with pytest.raises(CorruptedOrTampered) as info:
        unseal(blob, **kw)
    assert str(info.value) == "recording is corrupted or tampered with"
    assert info.value.code == "corrupted_or_tampered"
    return True


def test_every_truncation_is_refused() -> None:
    for cut in range(len(BLOB)):
        assert refused(BLOB[:cut])


def test_truncation_at_each_segment_boundary_is_refused() -> None:
    for kept in range(len(SEGMENTS)):
        assert refused(HEADER + b"".join(SEGMENTS[:kept]))
    assert refused(BLOB[:-1])


@pytest.mark.parametrize(
    "order", [(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2), (0, 2, 3), (0, 0, 1, 2, 3), (1, 2, 3)]
)
def test_reordered_dropped_or_duplicated_segments_are_refused(order: tuple[int, ...]) -> None:
    assert refused(HEADER + b"".join(SEGMENTS[i] for i in order))


def test_a_flipped_bit_anywhere_is_refused() -> None:
    small = seal(data(S + 1))
    for position in range(len(small)):
        mutated = bytearray(small)
        mutated[position] ^= 1 << (position % 8)  # every byte, every bit position in turn
        assert refused(bytes(mutated))


@pytest.mark.parametrize("extra", [b"\0", bytes(20), bytes(crypto.TAG_SIZE), bytes(FULL)])
def test_appended_bytes_are_refused(extra: bytes) -> None:
    assert refused(BLOB + extra)


def test_an_appended_final_segment_is_refused() -> None:
    aead = crypto.AESGCM(DEK)
    nonce = crypto.segment_nonce(PREFIX, len(SEGMENTS), True)
    assert refused(BLOB + aead.encrypt(nonce, b"more", HEADER))


def test_an_empty_final_segment_after_full_ones_is_refused() -> None:
    aead = crypto.AESGCM(DEK)
    body = data(S)
    blob = (
        HEADER
        + aead.encrypt(crypto.segment_nonce(PREFIX, 0, False), body, HEADER)
        + aead.encrypt(crypto.segment_nonce(PREFIX, 1, True), b"", HEADER)
    )
    assert refused(blob)


def test_a_blob_of_another_file_or_recording_is_refused() -> None:
    other_file, other_recording = uuid.uuid4(), uuid.uuid4()
    other = crypto.encrypt_bytes(data(100), DEK, other_file, RECORDING_ID, SEG_LOG2)
    assert refused(other)  # presented as FILE_ID
    assert refused(BLOB, file_id=other_file)
    assert refused(BLOB, recording_id=other_recording)
    # Rewriting the header to claim the expected id does not help: the header is the AAD.
    rewritten = other[:8] + FILE_ID.bytes + other[24:]
    assert refused(rewritten)


def test_a_wrong_key_is_refused() -> None:
    assert refused(BLOB, dek=bytes(32))


def test_header_rules() -> None:
    for position, value in [(0, ord("X")), (4, 2), (5, 2), (6, 11), (6, 25), (7, 1), (47, 1)]:
        mutated = bytearray(BLOB)
        mutated[position] = value
        assert refused(bytes(mutated))
    assert refused(b"")
    assert refused(HEADER)


def test_streaming_yields_only_verified_segments_then_stops() -> None:
    plaintext = data(3 * S + 7)
    mutated = bytearray(BLOB)
    mutated[crypto.HEADER_SIZE + 2 * FULL + 5] ^= 1  # inside segment 2
    received = []
    with pytest.raises(CorruptedOrTampered):
        for chunk in crypto.decrypt_stream(io.BytesIO(bytes(mutated)), DEK, FILE_ID, RECORDING_ID):
            received.append(chunk)
    assert received == [plaintext[:S], plaintext[S : 2 * S]]


def test_decrypt_stream_reads_from_a_dribbling_source() -> None:
    class Dribble(io.RawIOBase):
        def __init__(self, blob: bytes) -> None:
            self.src = io.BytesIO(blob)

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:
            piece = self.src.read(min(len(buf), 333))
            buf[: len(piece)] = piece
            return len(piece)

    plaintext = data(3 * S + 7)
    out = b"".join(crypto.decrypt_stream(Dribble(BLOB), DEK, FILE_ID, RECORDING_ID))
    assert out == plaintext


def test_digest_stream() -> None:
    plaintext = data(2 * S + 9)
    digest = crypto.digest_stream(io.BytesIO(seal(plaintext)), DEK, FILE_ID, RECORDING_ID)
    assert digest == crypto.PlaintextDigest(len(plaintext), hashlib.sha256(plaintext).hexdigest())


# -- Random access ---------------------------------------------------------------------------


class CountingFile(io.BytesIO):
    def __init__(self, blob: bytes) -> None:
        super().__init__(blob)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


RANGES = [
    (0, 0),
    (0, S - 1),
    (S - 1, S),
    (5, 3 * S + 6),
    (S, 2 * S - 1),
    (2 * S + 100, 3 * S + 2),
    (3 * S, 3 * S + 6),
    (3 * S + 6, 3 * S + 6),
]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_read_range_returns_exactly_the_requested_bytes(start: int, end: int) -> None:
    plaintext = data(3 * S + 7)
    chunks = crypto.read_range(io.BytesIO(BLOB), DEK, FILE_ID, RECORDING_ID, start, end)
    assert b"".join(chunks) == plaintext[start : end + 1]


def test_read_range_decrypts_only_the_covering_segments_and_the_final_one() -> None:
    src = CountingFile(BLOB)
    reader = DecryptingReader(src, DEK, FILE_ID, RECORDING_ID)
    assert reader.size == 3 * S + 7
    opened = src.bytes_read
    assert opened == crypto.HEADER_SIZE + 7 + crypto.TAG_SIZE  # header and the final segment
    assert b"".join(reader.iter_range(S + 1, S + 2)) == data(3 * S + 7)[S + 1 : S + 3]
    assert src.bytes_read - opened == FULL


def test_whole_file_through_the_reader() -> None:
    for size in SIZES:
        plaintext = data(size)
        reader = DecryptingReader(io.BytesIO(seal(plaintext)), DEK, FILE_ID, RECORDING_ID)
        assert reader.size == size
        assert b"".join(reader) == plaintext


@pytest.mark.parametrize(
    ("start", "end"), [(-1, 3), (5, 4), (0, 3 * S + 7), (3 * S + 7, 3 * S + 9)]
)
def test_ranges_outside_the_file_are_refused_before_iteration(start: int, end: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        crypto.read_range(io.BytesIO(BLOB), DEK, FILE_ID, RECORDING_ID, start, end)
    assert info.value.size == 3 * S + 7
    assert info.value.status == 416


def test_no_range_of_an_empty_file() -> None:
    reader = DecryptingReader(io.BytesIO(seal(b"")), DEK, FILE_ID, RECORDING_ID)
    assert reader.size == 0
    assert list(reader) == []
    with pytest.raises(RangeNotSatisfiable):
        reader.iter_range(0, 0)


def test_reader_verifies_the_final_segment_before_giving_a_size() -> None:
    truncated = HEADER + b"".join(SEGMENTS[:2])  # cut at a boundary: a plausible length
    with pytest.raises(CorruptedOrTampered):
        DecryptingReader(io.BytesIO(truncated), DEK, FILE_ID, RECORDING_ID)
    with pytest.raises(CorruptedOrTampered):
        crypto.read_range(io.BytesIO(truncated), DEK, FILE_ID, RECORDING_ID, 0, 10)
    with pytest.raises(CorruptedOrTampered):
        DecryptingReader(io.BytesIO(BLOB + b"x" * 40), DEK, FILE_ID, RECORDING_ID)


def test_a_damaged_segment_fails_the_ranges_that_cover_it() -> None:
    mutated = bytearray(BLOB)
    mutated[crypto.HEADER_SIZE + FULL + 5] ^= 1  # inside segment 1
    reader = DecryptingReader(io.BytesIO(bytes(mutated)), DEK, FILE_ID, RECORDING_ID)
    with pytest.raises(CorruptedOrTampered):
        list(reader.iter_range(S - 1, S))
    # Other segments are individually authentic and still served.
    assert b"".join(reader.iter_range(0, 9)) == data(3 * S + 7)[:10]


# -- Key wrapping ----------------------------------------------------------------------------

KEK = bytes(range(100, 132))


def test_wrap_round_trip() -> None:
    wrapped = crypto.wrap_dek(KEK, "kek-1", FILE_ID, DEK)
    assert len(wrapped) == crypto.WRAPPED_SIZE == 60
    assert crypto.unwrap_dek(KEK, "kek-1", FILE_ID, wrapped) == DEK
    assert crypto.wrap_dek(KEK, "kek-1", FILE_ID, DEK) != wrapped  # a fresh nonce each time


def test_unwrap_refusals_look_like_a_corrupted_recording() -> None:
    wrapped = crypto.wrap_dek(KEK, "kek-1", FILE_ID, DEK)
    flipped = bytearray(wrapped)
    flipped[30] ^= 4
    cases = [
        (bytes(32), "kek-1", FILE_ID, wrapped),
        (KEK, "kek-2", FILE_ID, wrapped),
        (KEK, "kek-1", uuid.uuid4(), wrapped),
        (KEK, "kek-1", FILE_ID, bytes(flipped)),
        (KEK, "kek-1", FILE_ID, wrapped[:-1]),
        (KEK, "kek-1", FILE_ID, wrapped + b"\0"),
    ]
    for kek, kek_id, file_id, value in cases:
        with pytest.raises(CorruptedOrTampered, match="^recording is corrupted or tampered with$"):
            crypto.unwrap_dek(kek, kek_id, file_id, value)


@pytest.mark.parametrize("kek_id", ["", "-a", "a b", "é", "a" * 65, "a:b", "a,b"])
def test_invalid_key_ids(kek_id: str) -> None:
    with pytest.raises(ValueError, match="key id"):
        crypto.wrap_dek(KEK, kek_id, FILE_ID, DEK)


# -- Writes on a helper thread (production segment size) -------------------------------------

MIB = 1 << 20


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "recording-writer"]


@pytest.mark.parametrize("size", [0, 1, MIB, 3 * MIB + 7])
def test_background_writes_give_the_same_blob(size: int) -> None:
    plaintext = data(size)
    blobs = []
    for background in (False, True):
        out = io.BytesIO()
        writer = EncryptingWriter(
            out, DEK, FILE_ID, RECORDING_ID, nonce_prefix=PREFIX, background_io=background
        )
        for i in range(0, size, 300_000):
            writer.write(plaintext[i : i + 300_000])
        stats = writer.close()
        assert stats.ciphertext_bytes == len(out.getvalue())
        blobs.append(out.getvalue())
    assert blobs[0] == blobs[1]
    assert crypto.decrypt_bytes(blobs[1], DEK, FILE_ID, RECORDING_ID) == plaintext
    assert writer_threads() == []


class FailingDest(io.BytesIO):
    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def write(self, chunk) -> int:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise OSError(28, "No space left on device")
        return super().write(chunk)


@pytest.mark.parametrize("fail_at", [2, 3, 5])
def test_a_background_write_error_reaches_the_caller(fail_at: int) -> None:
    writer = EncryptingWriter(FailingDest(fail_at), DEK, FILE_ID, RECORDING_ID)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(6):
            writer.write(data(MIB))
        writer.close()
    writer.abort()
    assert writer_threads() == []


def test_abort_and_a_dropped_writer_end_the_helper_thread() -> None:
    writer = EncryptingWriter(io.BytesIO(), DEK, FILE_ID, RECORDING_ID)
    writer.write(data(3 * MIB))
    assert len(writer_threads()) == 1
    writer.abort()
    assert writer_threads() == []

    dropped = EncryptingWriter(io.BytesIO(), DEK, FILE_ID, RECORDING_ID)
    dropped.write(data(3 * MIB))
    (thread,) = writer_threads()
    del dropped
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
