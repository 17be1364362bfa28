"""Build the committed test vectors of FORMAT.md from fixed inputs.

Run ``python -m tests.recordings.vectors.make_vectors`` to write them (only when a new vector is
added: published vectors never change). ``test_vectors.py`` rebuilds them in memory and requires
byte-identical files, so any drift of the format or the writer fails the tests.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from companion.recordings import crypto, keys

HERE = Path(__file__).resolve().parent
SEG_LOG2 = 12
S = 1 << SEG_LOG2
FULL = S + crypto.TAG_SIZE
FILE_KEY = bytes(range(32))
FILE_ID = uuid.UUID("6a1c2f5e-3b7d-4e2a-9c4f-0123456789ab")
RECORDING_ID = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
NONCE_PREFIX = bytes.fromhex("a0a1a2a3a4a5a6")
OTHER_FILE_ID = uuid.UUID("ffffffff-0000-4000-8000-000000000001")
OTHER_RECORDING_ID = uuid.UUID("ffffffff-0000-4000-8000-000000000002")
OTHER_KEY = bytes(range(32, 64))

KEK = bytes(range(64, 96))
KEK_ID = "kek-test-1"
WRAP_NONCE = bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babb")


def pattern(size: int) -> bytes:
    """Byte k is k mod 251: not a multiple of the segment size, so segments differ."""
    return bytes(k % 251 for k in range(size))


def seal(size: int) -> bytes:
    return crypto.encrypt_bytes(
        pattern(size), FILE_KEY, FILE_ID, RECORDING_ID, SEG_LOG2, nonce_prefix=NONCE_PREFIX
    )


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[crypto.HEADER_SIZE :]
    return blob[: crypto.HEADER_SIZE], [body[i : i + FULL] for i in range(0, len(body), FULL)]


def flip(blob: bytes, position: int, mask: int) -> bytes:
    mutated = bytearray(blob)
    mutated[position] ^= mask
    return bytes(mutated)


def put(blob: bytes, position: int, value: bytes) -> bytes:
    return blob[:position] + value + blob[position + len(value) :]


def segment(header: bytes, index: int, last: bool, plaintext: bytes) -> bytes:
    nonce = crypto.segment_nonce(header[40:47], index, last)
    return AESGCM(FILE_KEY).encrypt(nonce, plaintext, header)


VALID = {
    "empty": 0,
    "one_byte": 1,
    "one_segment": S,
    "segment_plus_one": S + 1,
    "three_segments_plus_7": 3 * S + 7,
}


def build() -> tuple[dict[str, bytes], dict[str, Any]]:
    """Return ``({file name: bytes}, index)``."""
    files: dict[str, bytes] = {}
    entries: list[dict[str, Any]] = []

    def add(name: str, blob: bytes, expect: str, note: str, **reader: Any) -> None:
        files[f"{name}.krec"] = blob
        entry: dict[str, Any] = {
            "name": name,
            "file": f"{name}.krec",
            "expect": expect,
            "file_id": str(reader.get("file_id", FILE_ID)),
            "recording_id": str(reader.get("recording_id", RECORDING_ID)),
            "file_key": reader.get("file_key", FILE_KEY).hex(),
            "ciphertext_size": len(blob),
            "ciphertext_sha256": hashlib.sha256(blob).hexdigest(),
            "note": note,
        }
        if expect == "ok":
            plaintext = pattern(reader["size"])
            entry["plaintext_size"] = len(plaintext)
            entry["plaintext_sha256"] = hashlib.sha256(plaintext).hexdigest()
        entries.append(entry)

    valid = {name: seal(size) for name, size in VALID.items()}
    for name, size in VALID.items():
        segments = crypto.segment_count(size, SEG_LOG2)
        add(name, valid[name], "ok", f"{size} plaintext bytes, {segments} segment(s)", size=size)

    header, three = split(valid["three_segments_plus_7"])
    body_start = crypto.HEADER_SIZE
    one_byte = valid["one_byte"]
    plus_one = valid["segment_plus_one"]
    bad = "corrupted"
    add(
        "truncated_at_boundary",
        header + b"".join(three[:3]),
        bad,
        "three_segments_plus_7 with its final segment 3 removed",
    )
    add(
        "truncated_mid_segment",
        header + three[0] + three[1][:100],
        bad,
        "three_segments_plus_7 cut 100 bytes into segment 1",
    )
    add("truncated_header_only", one_byte[:48], bad, "one_byte: only the header")
    add("truncated_in_header", one_byte[:20], bad, "one_byte: only the first 20 bytes")
    add(
        "swapped_segments",
        header + three[1] + three[0] + three[2] + three[3],
        bad,
        "three_segments_plus_7 with segments 0 and 1 exchanged",
    )
    add(
        "dropped_segment",
        header + three[0] + three[2] + three[3],
        bad,
        "three_segments_plus_7 without segment 1",
    )
    add(
        "duplicated_segment",
        header + three[0] + b"".join(three),
        bad,
        "three_segments_plus_7 with segment 0 written twice",
    )
    add(
        "flipped_bit_header",
        flip(plus_one, 40, 0x01),
        bad,
        "segment_plus_one with bit 0 of nonce_prefix flipped",
    )
    add(
        "flipped_bit_body",
        flip(plus_one, body_start + 9, 0x08),
        bad,
        "segment_plus_one with bit 3 of the 10th byte of segment 0 flipped",
    )
    add(
        "flipped_bit_tag",
        flip(plus_one, len(plus_one) - 1, 0x01),
        bad,
        "segment_plus_one with the last bit of the final tag flipped",
    )
    add("appended_bytes", plus_one + bytes(range(20)), bad, "segment_plus_one + 20 bytes")
    add(
        "extra_final_segment",
        plus_one + segment(plus_one[:48], 2, True, b"extra"),
        bad,
        "segment_plus_one + a third segment, encrypted as final",
    )
    one_segment_header = valid["one_segment"][:48]
    add(
        "empty_final_segment",
        one_segment_header
        + segment(one_segment_header, 0, False, pattern(S))
        + segment(one_segment_header, 1, True, b""),
        bad,
        "4096 bytes as a non-final segment 0, then an empty final segment 1",
    )
    add(
        "wrong_file_id",
        one_byte,
        bad,
        "one_byte, unchanged; the reader expects another file_id",
        file_id=OTHER_FILE_ID,
    )
    add(
        "header_file_id_rewritten",
        put(one_byte, 8, OTHER_FILE_ID.bytes),
        bad,
        "one_byte with the header's file_id rewritten to the one the reader expects",
        file_id=OTHER_FILE_ID,
    )
    add(
        "wrong_recording_id",
        one_byte,
        bad,
        "one_byte, unchanged; the reader expects another recording_id",
        recording_id=OTHER_RECORDING_ID,
    )
    add(
        "wrong_key",
        one_byte,
        bad,
        "one_byte, unchanged; the reader uses another file key",
        file_key=OTHER_KEY,
    )
    add("bad_version", put(one_byte, 4, b"\x02"), bad, "one_byte with version 2")
    add("bad_seg_log2", put(one_byte, 6, b"\x0b"), bad, "one_byte with seg_log2 11")

    wrapped = crypto.wrap_dek(KEK, KEK_ID, FILE_ID, FILE_KEY, nonce=WRAP_NONCE)

    def wrap_case(name: str, value: bytes, expect: str, **over: Any) -> dict[str, Any]:
        return {
            "name": name,
            "kek": over.get("kek", KEK).hex(),
            "kek_id": over.get("kek_id", KEK_ID),
            "file_id": str(over.get("file_id", FILE_ID)),
            "wrapped": value.hex(),
            "expect": expect,
            **(
                {"file_key": FILE_KEY.hex(), "wrap_nonce": WRAP_NONCE.hex()}
                if expect == "ok"
                else {}
            ),
        }

    index = {
        "format": "companion encrypted recording v1 (companion/recordings/FORMAT.md)",
        "seg_log2": SEG_LOG2,
        "plaintext": "byte k is k mod 251",
        "file_key": FILE_KEY.hex(),
        "file_id": str(FILE_ID),
        "recording_id": str(RECORDING_ID),
        "nonce_prefix": NONCE_PREFIX.hex(),
        "blobs": entries,
        "wrapped_keys": [
            wrap_case("valid", wrapped, "ok"),
            wrap_case("other_file_id", wrapped, bad, file_id=OTHER_FILE_ID),
            wrap_case("other_kek_id", wrapped, bad, kek_id="kek-test-2"),
            wrap_case("other_kek", wrapped, bad, kek=OTHER_KEY),
            wrap_case("flipped_bit", flip(wrapped, 20, 0x10), bad),
            wrap_case("short", wrapped[:-1], bad),
        ],
        "kek_check_values": [
            {"kek": KEK.hex(), "check": keys.kek_check_value(KEK)},
            {"kek": bytes(32).hex(), "check": keys.kek_check_value(bytes(32))},
        ],
    }
    return files, index


def render_index(index: dict[str, Any]) -> str:
    return json.dumps(index, indent=2) + "\n"


def main() -> int:
    files, index = build()
    for name, blob in files.items():
        (HERE / name).write_bytes(blob)
    (HERE / "index.json").write_text(render_index(index), encoding="utf-8")
    print(f"wrote {len(files)} vectors and index.json to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
