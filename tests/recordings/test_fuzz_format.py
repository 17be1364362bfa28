"""Fuzzing the format reader: hostile input never crashes it and is never accepted as plaintext.

Every valid blob is canonical (each byte is authenticated, the layout follows from the length),
so the property is strict: a blob that differs from the original in any way must raise
:class:`CorruptedOrTampered`, and whatever was yielded before that must be a prefix of the true
plaintext, because only verified segments are yielded.
"""

from __future__ import annotations

import hashlib
import io
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
SIZES = [0, 1, S - 1, S, S + 1, 2 * S + 5]
PLAINTEXTS = {size: hashlib.shake_256(b"%d" % size).digest(size) for size in SIZES}
BLOBS = {
    size: crypto.encrypt_bytes(p, DEK, FILE_ID, RECORDING_ID, SEG_LOG2)
    for size, p in PLAINTEXTS.items()
}

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn) -> tuple[int, bytes]:
    """A valid blob with one to three random edits."""
    size = draw(st.sampled_from(SIZES))
    blob = bytearray(BLOBS[size])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "append", "delete", "insert", "splice"]))
        # Segment boundaries are where framing bugs hide, and a uniform pick rarely hits one.
        boundaries = [b for b in range(crypto.HEADER_SIZE, len(blob), FULL)] or [0]
        if draw(st.booleans()):
            at = draw(st.sampled_from(boundaries)) + draw(st.sampled_from([-1, 0, 1]))
        else:
            at = draw(st.integers(0, max(len(blob) - 1, 0)))
        at = min(max(at, 0), len(blob))
        length = draw(st.just(FULL) | st.integers(1, FULL))
        if kind == "flip" and at < len(blob):
            blob[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del blob[at:]
        elif kind == "append":
            blob += draw(st.binary(min_size=1, max_size=2 * S + 40))
        elif kind == "delete":
            del blob[at : at + length]
        elif kind == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # move a slice elsewhere: reordered or duplicated segments, misaligned or not
            piece = bytes(blob[at : at + length])
            if draw(st.booleans()):
                del blob[at : at + length]
            where = draw(st.integers(0, len(blob)))
            blob[where:where] = piece
    return size, bytes(blob)


def stream(blob: bytes) -> tuple[list[bytes], bool]:
    """Decrypt, returning what was yielded and whether the blob was refused."""
    received: list[bytes] = []
    try:
        for chunk in crypto.decrypt_stream(io.BytesIO(blob), DEK, FILE_ID, RECORDING_ID):
            received.append(chunk)
    except CorruptedOrTampered as exc:
        assert str(exc) == "recording is corrupted or tampered with"
        return received, True
    return received, False


@FUZZ
@given(mutated())
def test_a_changed_blob_is_always_refused(case: tuple[int, bytes]) -> None:
    size, blob = case
    received, refused = stream(blob)
    plaintext = PLAINTEXTS[size]
    if blob == BLOBS[size]:
        assert not refused and b"".join(received) == plaintext
    else:
        assert refused
        assert plaintext.startswith(b"".join(received))


@FUZZ
@given(st.binary(max_size=3 * S))
def test_random_bytes_are_refused(blob: bytes) -> None:
    received, refused = stream(blob)
    assert refused and received == []


@FUZZ
@given(st.sampled_from(SIZES), st.binary(max_size=2 * S + 64))
def test_a_valid_header_on_random_segments_is_refused(size: int, body: bytes) -> None:
    blob = BLOBS[size][: crypto.HEADER_SIZE] + body
    received, refused = stream(blob)
    assert refused and received == []


@FUZZ
@given(mutated(), st.integers(-5, 3 * S), st.integers(-5, 3 * S))
def test_range_reads_of_a_changed_blob(case: tuple[int, bytes], start: int, end: int) -> None:
    size, blob = case
    plaintext = PLAINTEXTS[size]
    try:
        reader = DecryptingReader(io.BytesIO(blob), DEK, FILE_ID, RECORDING_ID)
        assert reader.size == size  # the final segment verified, so the length is the true one
        out = b"".join(reader.iter_range(start, end))
    except CorruptedOrTampered:
        return
    except RangeNotSatisfiable:
        assert not 0 <= start <= end < size
        return
    # Segments outside the range are not read, so a change there may go unnoticed here, but
    # what is returned is always the true plaintext.
    assert out == plaintext[start : end + 1]


@FUZZ
@given(st.binary(max_size=crypto.HEADER_SIZE + 8))
def test_header_parser_accepts_only_canonical_headers(raw: bytes) -> None:
    try:
        header = crypto.Header.parse(raw)
    except CorruptedOrTampered:
        return
    assert header.pack() == raw


@FUZZ
@given(
    st.binary(min_size=4, max_size=4) | st.just(b"KREC"),
    st.integers(0, 255) | st.just(1),
    st.integers(0, 255) | st.just(1),
    st.integers(0, 255) | st.integers(12, 24),
    st.integers(0, 255) | st.just(0),
    st.binary(min_size=39, max_size=39),
    st.integers(0, 255) | st.just(0),
)
def test_header_parser_field_by_field(
    magic: bytes, version: int, alg: int, seg_log2: int, rsv: int, middle: bytes, last: int
) -> None:
    raw = magic + bytes([version, alg, seg_log2, rsv]) + middle + bytes([last])
    valid = (magic, version, alg, rsv, last) == (b"KREC", 1, 1, 0, 0) and 12 <= seg_log2 <= 24
    try:
        header = crypto.Header.parse(raw)
    except CorruptedOrTampered:
        assert not valid
        return
    assert valid and header.pack() == raw and header.segment_size == 1 << seg_log2


@FUZZ
@given(st.integers(0, 2**40), st.integers(crypto.MIN_SEG_LOG2, crypto.MAX_SEG_LOG2))
def test_size_arithmetic_is_consistent(length: int, seg_log2: int) -> None:
    try:
        size = crypto.plaintext_size(length, seg_log2)
    except CorruptedOrTampered:
        return
    assert crypto.ciphertext_size(size, seg_log2) == length


@FUZZ
@given(st.binary(max_size=3 * S), st.lists(st.integers(1, 2 * S), max_size=8))
def test_any_split_of_writes_gives_the_same_blob(plaintext: bytes, cuts: list[int]) -> None:
    prefix = b"\x07" * 7
    out = io.BytesIO()
    writer = EncryptingWriter(out, DEK, FILE_ID, RECORDING_ID, SEG_LOG2, nonce_prefix=prefix)
    rest = memoryview(plaintext)
    for cut in cuts:
        writer.write(rest[:cut])
        rest = rest[cut:]
    writer.write(rest)
    writer.close()
    expected = crypto.encrypt_bytes(
        plaintext, DEK, FILE_ID, RECORDING_ID, SEG_LOG2, nonce_prefix=prefix
    )
    assert out.getvalue() == expected
    assert crypto.decrypt_bytes(expected, DEK, FILE_ID, RECORDING_ID) == plaintext


WRAPPED = crypto.wrap_dek(bytes(32), "kek-1", FILE_ID, DEK)


@FUZZ
@given(st.binary(max_size=80) | st.just(WRAPPED), st.integers(0, 59), st.integers(0, 255))
def test_unwrap_accepts_nothing_but_the_real_wrapped_key(
    value: bytes, position: int, mask: int
) -> None:
    candidate = bytearray(value)
    if len(candidate) > position:
        candidate[position] ^= mask
    try:
        dek = crypto.unwrap_dek(bytes(32), "kek-1", FILE_ID, bytes(candidate))
    except CorruptedOrTampered:
        assert bytes(candidate) != WRAPPED
        return
    assert bytes(candidate) == WRAPPED and dek == DEK
