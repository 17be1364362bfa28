"""Measure the recordings' crypto and storage path on this machine, all in one run.

    .venv/bin/python bench/crypto_bench.py [--size-mb 1024] [--repeat 3] [--dir /tmp] [--json]

Figures (MB/s is 10^6 bytes per second; each is the median of ``--repeat`` runs):

- raw AES-256-GCM of ``cryptography``, 1 MiB chunks, encrypt and decrypt, in memory;
- the disk's write speed with fsync, ``dd conv=fsync`` style: ``os.write`` of 1 MiB blocks, then
  ``os.fsync``, in the same folder as the blobs;
- ``EncryptingWriter`` into ``LocalEncryptedStorage`` (encrypt + SHA-256 + write + fsync + rename +
  folder fsync), fed a synthetic stream made on the fly (the data is never held whole);
- ``decrypt_stream`` of that blob to a null sink, from the page cache and, after
  ``posix_fadvise(DONTNEED)``, from the disk; and decrypt + SHA-256 (the ingest's verify step);
- peak memory: ``tracemalloc`` peak while encrypting and while decrypting the whole stream, and the
  process's peak RSS growth (``ru_maxrss``) over the whole run.

The targets of issue 5 are printed beside the figures; they are advisory, as the disk of a
virtual machine varies by 3x from run to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from companion.recordings import crypto
from companion.recordings.storage import LocalEncryptedStorage

MIB = 1 << 20
FILE_ID = uuid.UUID("00000000-0000-4000-8000-00000000be01")
RECORDING_ID = uuid.UUID("00000000-0000-4000-8000-00000000be02")


def synthetic_stream(total: int, chunk: int) -> Iterator[memoryview]:
    """Yield ``total`` bytes in ``chunk``-sized pieces from one reused, stamped random block."""
    block = bytearray(os.urandom(chunk))
    sent = 0
    counter = 0
    while sent < total:
        # A counter in each chunk keeps every segment distinct without generating new data.
        block[:8] = counter.to_bytes(8, "big")
        size = min(chunk, total - sent)
        yield memoryview(block)[:size]
        sent += size
        counter += 1


def mb_per_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_aesgcm(total: int) -> tuple[float, float]:
    """Return (encrypt, decrypt) seconds for ``total`` bytes in 1 MiB AES-256-GCM calls."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    aad = bytes(crypto.HEADER_SIZE)
    block = os.urandom(MIB)
    count = max(1, total // MIB)
    prefix = os.urandom(7)

    def encrypt() -> None:
        for i in range(count):
            aead.encrypt(crypto.segment_nonce(prefix, i, False), block, aad)

    sealed = aead.encrypt(crypto.segment_nonce(prefix, 0, False), block, aad)
    nonce = crypto.segment_nonce(prefix, 0, False)

    def decrypt() -> None:
        for _ in range(count):
            aead.decrypt(nonce, sealed, aad)

    return timed(encrypt), timed(decrypt)


def disk_write_fsync(folder: Path, total: int) -> float:
    """Return seconds to write ``total`` bytes in 1 MiB ``os.write`` calls and fsync them."""
    path = folder / f"dd-{uuid.uuid4().hex}.bin"
    block = os.urandom(MIB)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < total:
            size = min(MIB, total - written)
            view = memoryview(block)[:size]
            while view:
                view = view[os.write(fd, view) :]
            written += size
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def encrypt_to_storage(
    store: LocalEncryptedStorage,
    key: str,
    dek: bytes,
    total: int,
    chunk: int,
    background_io: bool | None = None,
) -> tuple[float, crypto.WriteStats]:
    start = time.perf_counter()
    with store.open_writer(key) as blob:
        writer = crypto.EncryptingWriter(
            blob, dek, FILE_ID, RECORDING_ID, background_io=background_io
        )
        for piece in synthetic_stream(total, chunk):
            writer.write(piece)
        stats = writer.close()
    return time.perf_counter() - start, stats


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def decrypt_from_storage(
    store: LocalEncryptedStorage, key: str, dek: bytes, *, digest: bool = False
) -> tuple[float, int]:
    start = time.perf_counter()
    size = 0
    sha256 = hashlib.sha256()
    with store.open_reader(key) as blob:
        for chunk in crypto.decrypt_stream(blob, dek, FILE_ID, RECORDING_ID):
            size += len(chunk)
            if digest:
                sha256.update(chunk)
    return time.perf_counter() - start, size


class NullSink:
    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)


def traced_peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(args: argparse.Namespace) -> dict[str, object]:
    total = args.size_mb * MIB
    chunk = args.chunk_kb * 1024
    rss_start = peak_rss_bytes()
    load_start = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="companion-bench-", dir=args.dir))
    store = LocalEncryptedStorage(folder / "blobs")
    dek = crypto.new_file_key()
    runs: dict[str, list[float]] = {
        "aes_encrypt": [],
        "aes_decrypt": [],
        "disk_fsync_write": [],
        "encrypting_writer": [],
        "decrypt_warm": [],
        "decrypt_cold": [],
        "decrypt_sha256": [],
    }
    try:
        for rep in range(args.repeat):
            enc, dec = raw_aesgcm(total)
            runs["aes_encrypt"].append(mb_per_s(total, enc))
            runs["aes_decrypt"].append(mb_per_s(total, dec))
            runs["disk_fsync_write"].append(mb_per_s(total, disk_write_fsync(folder, total)))
            key = f"bench-{rep}"
            seconds, stats = encrypt_to_storage(
                store, key, dek, total, chunk, background_io=args.background_io
            )
            assert stats.plaintext_bytes == total
            runs["encrypting_writer"].append(mb_per_s(total, seconds))
            seconds, size = decrypt_from_storage(store, key, dek)
            assert size == total
            runs["decrypt_warm"].append(mb_per_s(total, seconds))
            evict(store.root / key)
            seconds, _ = decrypt_from_storage(store, key, dek)
            runs["decrypt_cold"].append(mb_per_s(total, seconds))
            seconds, _ = decrypt_from_storage(store, key, dek, digest=True)
            runs["decrypt_sha256"].append(mb_per_s(total, seconds))
            store.delete(key)
            print(f"  run {rep + 1}/{args.repeat} done", file=sys.stderr)

        def encrypt_null() -> None:
            writer = crypto.EncryptingWriter(NullSink(), dek, FILE_ID, RECORDING_ID)
            for piece in synthetic_stream(total, chunk):
                writer.write(piece)
            writer.close()

        encrypt_peak = traced_peak(encrypt_null)
        encrypt_to_storage(store, "bench-memory", dek, total, chunk)
        decrypt_peak = traced_peak(lambda: decrypt_from_storage(store, "bench-memory", dek))
        store.delete("bench-memory")
    finally:
        for leftover in folder.rglob("*"):
            if leftover.is_file():
                leftover.unlink()
        for sub in sorted(folder.rglob("*"), reverse=True):
            sub.rmdir()
        folder.rmdir()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "size_bytes": total,
        "write_chunk_bytes": chunk,
        "repeat": args.repeat,
        "folder": str(folder.parent),
        "mb_per_s": medians,
        "runs_mb_per_s": runs,
        "tracemalloc_peak_encrypt_bytes": encrypt_peak,
        "tracemalloc_peak_decrypt_bytes": decrypt_peak,
        "ru_maxrss_growth_bytes": peak_rss_bytes() - rss_start,
        "writer_vs_disk": medians["encrypting_writer"] / medians["disk_fsync_write"],
        "background_io": args.background_io is not False,
        "cpus": os.cpu_count(),
        "load_average_1min": [load_start, os.getloadavg()[0]],
    }


def report(result: dict[str, object]) -> str:
    m: dict[str, float] = result["mb_per_s"]  # type: ignore[assignment]
    runs: dict[str, list[float]] = result["runs_mb_per_s"]  # type: ignore[assignment]

    def line(label: str, name: str, note: str = "") -> str:
        each = " / ".join(f"{v:,.0f}" for v in runs[name])
        return f"  {label:<44} {m[name]:>9,.0f} MB/s   ({each}){note}"

    mib = 1 << 20
    ratio = float(result["writer_vs_disk"])  # type: ignore[arg-type]
    enc_peak = int(result["tracemalloc_peak_encrypt_bytes"])  # type: ignore[call-overload]
    dec_peak = int(result["tracemalloc_peak_decrypt_bytes"])  # type: ignore[call-overload]
    rss = int(result["ru_maxrss_growth_bytes"])  # type: ignore[call-overload]
    size_mib = int(result["size_bytes"]) // mib  # type: ignore[call-overload]
    load = result["load_average_1min"]
    lines = [
        f"companion crypto bench: {size_mib} MiB per measurement, median of {result['repeat']}, "
        f"in {result['folder']}",
        f"  {result['cpus']} CPUs, 1-min load average {load[0]:.2f} at start, {load[1]:.2f} at "  # type: ignore[index]
        "end (other work on the machine slows every figure)",
        line("raw AES-256-GCM encrypt (1 MiB chunks)", "aes_encrypt"),
        line("raw AES-256-GCM decrypt (1 MiB chunks)", "aes_decrypt"),
        line("disk write + fsync (os.write 1 MiB, dd-style)", "disk_fsync_write"),
        line(
            "EncryptingWriter -> storage (fsync+rename)",
            "encrypting_writer",
            "" if result["background_io"] else "  [background_io off]",
        ),
        line("decrypt_stream, page cache -> null sink", "decrypt_warm"),
        line("decrypt_stream, after fadvise DONTNEED", "decrypt_cold"),
        line("decrypt_stream + SHA-256 (ingest verify)", "decrypt_sha256"),
        f"  peak memory: encrypt {enc_peak / mib:.1f} MiB, decrypt {dec_peak / mib:.1f} MiB "
        f"(tracemalloc); process peak RSS growth {rss / mib:.1f} MiB (ru_maxrss)",
        "targets (issue 5, advisory):",
        f"  writer >= 50% of disk fsync speed: {ratio:.0%} "
        + ("ok" if ratio >= 0.5 else "BELOW (disk variance? rerun)"),
        f"  decrypt >= 1000 MB/s: {m['decrypt_warm']:,.0f} MB/s "
        + ("ok" if m["decrypt_warm"] >= 1000 else "BELOW"),
        f"  peak memory < 100 MB: {max(enc_peak, dec_peak, rss) / 1e6:.1f} MB "
        + ("ok" if max(enc_peak, dec_peak, rss) < 100e6 else "ABOVE"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="MiB per measurement (1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; medians (3)")
    parser.add_argument("--chunk-kb", type=int, default=1024, help="size of each write (1024)")
    parser.add_argument("--dir", default=None, help="folder for the files (system temp)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--no-background-io",
        dest="background_io",
        action="store_const",
        const=False,
        default=None,
        help="write segments on the caller's thread (for comparison)",
    )
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.repeat < 1 or args.chunk_kb < 1:
        parser.error("--size-mb, --repeat and --chunk-kb must be positive")
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
