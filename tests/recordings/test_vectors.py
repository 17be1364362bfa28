"""The committed test vectors of FORMAT.md, checked on every run so the format cannot drift."""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from companion.recordings import crypto, keys
from companion.recordings.crypto import CorruptedOrTampered, DecryptingReader

from .vectors import make_vectors

HERE = Path(__file__).resolve().parent / "vectors"
INDEX = json.loads((HERE / "index.json").read_text(encoding="utf-8"))
FORMAT_MD = (Path(crypto.__file__).parent / "FORMAT.md").read_text(encoding="utf-8")


def blob_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries]


def reader_args(entry: dict[str, Any]) -> tuple[bytes, uuid.UUID, uuid.UUID]:
    return (
        bytes.fromhex(entry["file_key"]),
        uuid.UUID(entry["file_id"]),
        uuid.UUID(entry["recording_id"]),
    )


@pytest.mark.parametrize("entry", INDEX["blobs"], ids=blob_ids(INDEX["blobs"]))
def test_blob_vector(entry: dict[str, Any]) -> None:
    blob = (HERE / entry["file"]).read_bytes()
    assert len(blob) == entry["ciphertext_size"]
    assert hashlib.sha256(blob).hexdigest() == entry["ciphertext_sha256"]
    args = reader_args(entry)
    if entry["expect"] == "ok":
        plaintext = b"".join(crypto.decrypt_stream(io.BytesIO(blob), *args))
        assert len(plaintext) == entry["plaintext_size"]
        assert hashlib.sha256(plaintext).hexdigest() == entry["plaintext_sha256"]
        assert plaintext == make_vectors.pattern(entry["plaintext_size"])
        reader = DecryptingReader(io.BytesIO(blob), *args)
        assert reader.size == entry["plaintext_size"]
        assert b"".join(reader) == plaintext
        assert crypto.plaintext_size(len(blob), INDEX["seg_log2"]) == len(plaintext)
    else:
        assert entry["expect"] == "corrupted"
        with pytest.raises(CorruptedOrTampered):
            b"".join(crypto.decrypt_stream(io.BytesIO(blob), *args))
        with pytest.raises(CorruptedOrTampered):
            b"".join(DecryptingReader(io.BytesIO(blob), *args))


def test_valid_vectors_use_the_documented_inputs() -> None:
    header = (HERE / "one_byte.krec").read_bytes()[:48]
    assert header.hex() == (
        "4b524543" + "01" + "01" + "0c" + "00"
        "6a1c2f5e3b7d4e2a9c4f0123456789ab"
        "0f0e0d0c0b0a49088706050403020100"
        "a0a1a2a3a4a5a6" + "00"
    )
    for field in ("file_key", "file_id", "recording_id", "nonce_prefix"):
        assert f"`{INDEX[field]}`" in FORMAT_MD


@pytest.mark.parametrize("entry", INDEX["wrapped_keys"], ids=blob_ids(INDEX["wrapped_keys"]))
def test_wrapped_key_vector(entry: dict[str, Any]) -> None:
    kek, kek_id = bytes.fromhex(entry["kek"]), entry["kek_id"]
    file_id, wrapped = uuid.UUID(entry["file_id"]), bytes.fromhex(entry["wrapped"])
    if entry["expect"] == "ok":
        file_key = bytes.fromhex(entry["file_key"])
        assert crypto.unwrap_dek(kek, kek_id, file_id, wrapped) == file_key
        nonce = bytes.fromhex(entry["wrap_nonce"])
        assert crypto.wrap_dek(kek, kek_id, file_id, file_key, nonce=nonce) == wrapped
    else:
        with pytest.raises(CorruptedOrTampered):
            crypto.unwrap_dek(kek, kek_id, file_id, wrapped)


def test_check_value_vectors() -> None:
    for entry in INDEX["kek_check_values"]:
        assert keys.kek_check_value(bytes.fromhex(entry["kek"])) == entry["check"]


def test_rebuilding_the_vectors_gives_the_committed_bytes() -> None:
    files, index = make_vectors.build()
    committed = {p.name for p in HERE.glob("*.krec")}
    assert set(files) == committed
    for name, blob in files.items():
        assert (HERE / name).read_bytes() == blob, name
    assert (HERE / "index.json").read_text(encoding="utf-8") == make_vectors.render_index(index)


def test_format_md_lists_exactly_the_committed_vectors() -> None:
    section = FORMAT_MD.split("## Test vectors", 1)[1]
    documented = set(re.findall(r"`([a-z0-9_]+\.krec)`", section))
    assert documented == {e["file"] for e in INDEX["blobs"]}
