"""What the sandbox's cloud recordings contain.

Two short, playable files ship with the package (made once with ffmpeg; see media/README.md):
``class.mp4`` (4 s, H.264 + AAC, the words "ZOOM SANDBOX" over a test pattern) and
``class.m4a`` (4 s AAC tone). For benchmarks a recording can instead be a synthetic file of any
size, produced on the fly from a seed so that nothing large is ever stored and the same seed
always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

MEDIA_DIR = Path(__file__).resolve().parent / "media"
VIDEO = "class.mp4"
AUDIO = "class.m4a"
CONTENT_TYPES = {
    "MP4": "video/mp4",
    "M4A": "audio/mp4",
    "TRANSCRIPT": "text/vtt",
    "CC": "text/vtt",
    "CHAT": "text/plain",
    "TIMELINE": "application/json",
    "CSV": "text/csv",
    "SUMMARY": "application/json",
}

BLOCK = 1 << 20  # synthetic files are made of 1 MiB blocks
_HEADER = 32  # each block starts with its own digest, so no two blocks are equal


def media_path(name: str) -> Path:
    path = (MEDIA_DIR / name).resolve()
    if path.parent != MEDIA_DIR or not path.is_file():
        raise FileNotFoundError(name)
    return path


@cache
def media_bytes(name: str) -> bytes:
    return media_path(name).read_bytes()


def source_bytes(source: dict[str, Any]) -> bytes:
    """The whole content of a small file: a shipped media file or a text the simulation wrote."""
    if source["kind"] == "text":
        return str(source["text"]).encode("utf-8")
    return media_bytes(source["name"])


def source_size(source: dict[str, Any]) -> int:
    if source["kind"] == "synthetic":
        return int(source["size"])
    return len(source_bytes(source))


@cache
def _base_block(seed: str) -> bytes:
    # Random, so the stream does not compress away in a benchmark; seeded, so it repeats.
    return random.Random(seed).randbytes(BLOCK)


def _block(seed: str, index: int) -> bytes:
    head = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return head + _base_block(seed)[_HEADER:]


def synthetic_stream(size: int, seed: str, start: int = 0, chunk: int = BLOCK) -> Iterator[bytes]:
    """Bytes ``start``..``size`` of the synthetic file named by ``seed``, in pieces <= chunk."""
    if size < 0 or start < 0:
        raise ValueError("size and start must not be negative")
    position = start
    while position < size:
        index, offset = divmod(position, BLOCK)
        block = _block(seed, index)
        take = min(BLOCK - offset, size - position, chunk)
        yield block[offset : offset + take] if (offset or take < BLOCK) else block
        position += take


def synthetic_sha256(size: int, seed: str) -> str:
    """The SHA-256 of a whole synthetic file (tests and benchmarks compare against it)."""
    digest = hashlib.sha256()
    for piece in synthetic_stream(size, seed):
        digest.update(piece)
    return digest.hexdigest()
