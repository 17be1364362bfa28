"""The recordings vault end to end on this machine, in one run.

    .venv/bin/python bench/vault_bench.py [--size-mb 1024] [--small-mb 64] [--recordings 100000]
                                          [--due 1000] [--dir /tmp] [--json]

Figures (MB/s is 10^6 bytes per second):

1. the disk's write speed with fsync (1 MiB ``os.write`` calls, then ``fsync``), in the blob folder;
2. raw AES-256-GCM of ``cryptography`` (1 MiB calls, one thread, in memory);
3. ingest of a ``--size-mb`` recording from the Zoom sandbox, which runs as its own process
   (``companion sandbox serve``) and streams a synthetic MP4 over loopback HTTP: companion's real
   path (``ingest.process_file``: download with the client, encrypt as it arrives, temporary
   file, fsync, rename; then decrypt it again and compare SHA-256; then delete it from "Zoom"),
   as MB/s for download+store, for verify, and overall; and the process's peak RSS during the
   ingest (``VmHWM`` after resetting it through ``/proc/self/clear_refs``), for a ``--small-mb``
   file and the big one, to show that memory does not grow with the file;
4. retrieval: ``decrypt_stream`` of the stored blob to a null sink, and ``DecryptingReader`` (what
   the HTTP range view uses) over the whole file, with the file key unwrapped from the database;
5. a retention sweep over ``--recordings`` recordings (rows made in bulk in a temporary SQLite
   database, ``--due`` of them due, some due but held): rows the due query returned, rows
   changed, statements run, time, and SQLite's query plan for the due query.

Targets (issue 5): ingest at least half the fsync write speed, retrieval at least 1 GB/s, peak
memory under 100 MB for any size, and a sweep that touches only what is due.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crypto_bench  # noqa: E402

from companion import create_app  # noqa: E402
from companion.db import job_session, make_engine, utcnow  # noqa: E402
from companion.keysets import fresh_settings  # noqa: E402
from companion.recordings import crypto, ingest, retention, vault  # noqa: E402
from companion.recordings.keys import generate_kek_line  # noqa: E402
from companion.recordings.models import Hold, Recording, RecordingFile  # noqa: E402
from companion.zoom import (
    EXTENSION_KEY,  # noqa: E402
    client_from_config,  # noqa: E402
)

MIB = 1 << 20
SECRET = secrets.token_urlsafe(48)  # a throwaway instance
KEYS = fresh_settings()


def mb_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6


# --- memory --------------------------------------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss() -> int:
    return _status("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False if not possible here."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    return _status("VmHWM")


# --- the sandbox in its own process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sandbox(folder: Path, url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COMPANION_INSTANCE_PATH": str(folder),
        "COMPANION_SECRET_KEY": SECRET,
        "COMPANION_SANDBOX_URL": url,
        "COMPANION_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "companion", "sandbox", "serve", "--no-webhooks"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- ingest and retrieval ------------------------------------------------------------------------


def ingest_one(app: Any, zoom: Any, sandbox_url: str, size: int) -> dict[str, Any]:
    """Simulate a class with a ``size``-byte MP4 and take it in with companion's real path."""
    start = utcnow().replace(microsecond=0) - dt.timedelta(hours=2)
    body = {
        "topic": "Bench class",
        "type": 2,
        "duration": 45,
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timezone": "UTC",
        "settings": {"auto_recording": "cloud"},
    }
    meeting_id = zoom.create_meeting("me", body)["id"]
    sim = requests.post(
        sandbox_url + "/_sandbox/simulate",
        json={
            "meeting_id": str(meeting_id),
            "start_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "record": True,
            "recording_bytes": size,
        },
        timeout=60,
    )
    sim.raise_for_status()
    obj = zoom.get_meeting_recordings(sim.json()["uuid"], include_download_token=True)
    with job_session(app) as session:
        registered = ingest.record_from_zoom(
            session,
            obj,
            download_token=obj.get("download_access_token"),
            source="webhook",
            now=utcnow(),
        )
        file_id = next(f.id for f in registered.recording.files if f.file_type == "MP4")
    storage = vault.storage_for(app)
    keyring = vault.keyring_for(app)

    baseline = rss()
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    # The copy step's three parts, as the work engine runs them: claim and commit, download and
    # store with no transaction open, record in a new transaction.
    step = ingest.CopyFile(zoom, storage, keyring)
    with job_session(app) as session:
        claim = step.prepare(session, file_id, utcnow())
    assert claim is not None
    blob = step.call(claim)
    with job_session(app) as session:
        assert step.record(session, file_id, claim, blob, utcnow()) == "stored"
    t1 = time.perf_counter()
    assert ingest.verify_stored(app, file_id, storage) == "verified"
    t2 = time.perf_counter()
    with job_session(app) as session:
        recording_id = session.get(RecordingFile, file_id).recording_id
    # The whole class leaves Zoom for good once its files are verified.
    deleted = ingest.purge_from_zoom(app, zoom, recording_id)
    t3 = time.perf_counter()
    peak = peak_rss()
    with job_session(app) as session:
        row = session.get(RecordingFile, file_id)
        state, sha256, zoom_file_id = row.state, row.sha256, row.zoom_file_id
    return {
        "file_id": file_id,
        "size": size,
        "download_store_s": t1 - t0,
        "verify_s": t2 - t1,
        "zoom_delete_s": t3 - t2,
        "download_store_mb_s": mb_s(size, t1 - t0),
        "verify_mb_s": mb_s(size, t2 - t1),
        "ingest_mb_s": mb_s(size, t2 - t0),
        "rss_before": baseline,
        "peak_rss": peak,
        "peak_rss_measured": reset_ok,
        "state": state,
        "zoom": deleted,
        "sha256": sha256,
        "zoom_file_id": zoom_file_id,
    }


def retrieval(app: Any, file_id: uuid.UUID) -> dict[str, float]:
    storage = vault.storage_for(app)
    with job_session(app) as session:
        row = session.get(RecordingFile, file_id)
        kek_id, wrapped, key, rec_id, size = (
            row.kek_id,
            bytes(row.wrapped_dek),
            row.blob_key,
            row.recording_id,
            row.size,
        )
    dek = vault.unwrap(app, kek_id, file_id, wrapped)
    # Read once so both figures start from the page cache (as a repeated viewing would).
    with storage.open_reader(key) as fh:
        while fh.read(16 * MIB):
            pass
    t0 = time.perf_counter()
    with storage.open_reader(key) as fh:
        total = sum(len(c) for c in crypto.decrypt_stream(fh, dek, file_id, rec_id))
    t1 = time.perf_counter()
    with storage.open_reader(key) as fh:
        reader = crypto.DecryptingReader(fh, dek, file_id, rec_id)
        ranged = sum(len(c) for c in reader.iter_range(0, reader.size - 1))
    t2 = time.perf_counter()
    assert total == ranged == size
    return {"decrypt_stream_mb_s": mb_s(size, t1 - t0), "range_reader_mb_s": mb_s(size, t2 - t1)}


# --- retention over many rows ---------------------------------------------------------------------


def retention_sweep(folder: Path, count: int, due: int) -> dict[str, Any]:
    from companion import migrate

    db_url = f"sqlite:///{folder / 'retention.db'}"
    migrate.upgrade(db_url)
    app = create_app(
        {
            "SECRET_KEY": SECRET,
            "DATABASE_URL": db_url,
            "KEK": generate_kek_line("kek-bench"),
            **KEYS,
            "STORAGE_DIR": str(folder / "retention-blobs"),
            "LOG_LEVEL": "warning",
        },
        instance_path=folder,
        environ={},
    )
    engine = make_engine(db_url)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    held = max(1, due // 100)
    rows = []
    files = []
    for i in range(count):
        is_due = i < due + held
        ended = now - dt.timedelta(days=31 if is_due else (i % 29), minutes=i % 1440)
        rid = uuid.uuid4()
        rows.append(
            {
                "id": rid,
                "zoom_meeting_id": 10_000_000 + i,
                "zoom_uuid": f"bulk-{i}",
                "topic": "",
                "started_at": ended - dt.timedelta(minutes=45),
                "ended_at": ended,
                "duration_minutes": 45,
                "unmatched": False,
                "source": "webhook",
                "state": "active",
                "delete_after": ended + dt.timedelta(days=30),
                "on_hold": due <= i < due + held,
                "delete_reason": "",
                "created_at": ended,
                "updated_at": ended,
            }
        )
        files.append(
            {
                "id": uuid.uuid4(),
                "recording_id": rid,
                "zoom_file_id": f"bulk-file-{i}",
                "file_type": "MP4",
                "file_extension": "MP4",
                "recording_type": "",
                "download_url": "https://zoom.us/rec/x",
                "state": "zoom_deleted",
                "attempts": 1,
                "error": "",
                "zoom_delete_attempts": 0,
                "zoom_deleted_at": ended,
                "kek_id": "kek-bench",
                "wrapped_dek": os.urandom(60),
                "blob_key": f"{uuid.uuid4()}.krec",
                "created_at": ended,
            }
        )
    t0 = time.perf_counter()
    with Session(engine) as session, session.begin():
        for start in range(0, count, 20_000):
            session.execute(insert(Recording), rows[start : start + 20_000])
            session.execute(insert(RecordingFile), files[start : start + 20_000])
        for row in rows[due : due + held]:
            session.add(Hold(recording_id=row["id"], reason="bench hold", placed_at=now))
    created_s = time.perf_counter() - t0

    with engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM recordings WHERE state = 'active' "
            "AND delete_after <= ? AND on_hold = 0 ORDER BY delete_after LIMIT 500",
            (now.replace(tzinfo=None),),
        ).all()
        conn.rollback()

    statements = {"count": 0}
    app_engine = app.extensions["companion.engine"]

    def counted(*_: Any) -> None:
        statements["count"] += 1

    event.listen(app_engine, "before_cursor_execute", counted)
    with job_session(app) as session:
        t_query = time.perf_counter()
        first_batch = retention.due(session, now)
        query_s = time.perf_counter() - t_query
    t1 = time.perf_counter()
    outcome = retention.sweep(app, vault.storage_for(app), now=now)
    sweep_s = time.perf_counter() - t1
    event.remove(app_engine, "before_cursor_execute", counted)
    again = retention.sweep(app, vault.storage_for(app), now=now)

    with Session(engine) as session:
        deleted = session.scalar(
            select(func.count(Recording.id)).where(Recording.state == "deleted")
        )
        keys_left = session.scalar(
            select(func.count(RecordingFile.id)).where(RecordingFile.wrapped_dek.is_not(None))
        )
        held_kept = session.scalar(
            select(func.count(Recording.id)).where(
                Recording.on_hold.is_(True), Recording.state == "active"
            )
        )
    engine.dispose()
    app_engine.dispose()
    return {
        "recordings": count,
        "due": due,
        "held_and_due": held,
        "bulk_create_s": created_s,
        "due_query_rows": len(first_batch),
        "due_query_ms": query_s * 1000,
        "sweep_s": sweep_s,
        "sweep_outcome": outcome,
        "second_sweep": again,
        "statements": statements["count"],
        "recordings_deleted": deleted,
        "recordings_untouched": count - deleted,
        "file_keys_left": keys_left,
        "held_kept": held_kept,
        "plan": " | ".join(str(r[-1]) for r in plan),
    }


# --- the run -------------------------------------------------------------------------------------


def child_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """One ingest (and, with --retrieve, the retrieval) in this fresh process, for its RSS."""
    logging.basicConfig(level=logging.WARNING)
    folder = Path(args.dir)
    app = create_app(
        {
            "SECRET_KEY": SECRET,
            "DATABASE_URL": f"sqlite:///{folder / 'companion.db'}",
            "SANDBOX_URL": args.sandbox_url,
            "KEK": os.environ["VAULT_BENCH_KEK"],
            # The same keys in every ingest process: each opens what the one before sealed.
            "SEALING_KEYS": os.environ["VAULT_BENCH_SEALING_KEYS"],
            "SIGNING_KEYS": os.environ["VAULT_BENCH_SIGNING_KEYS"],
            "STORAGE_DIR": str(folder / "recordings"),
            "LOG_LEVEL": "warning",
        },
        instance_path=folder,
        environ={},
    )
    zoom = client_from_config(app.config)
    app.extensions[EXTENSION_KEY] = zoom
    with app.app_context():
        result = ingest_one(app, zoom, args.sandbox_url, args.child_ingest)
        result["process_peak_rss"] = peak_rss()
        if args.retrieve:
            result["retrieval"] = retrieval(app, result["file_id"])
    zoom.close()
    result["file_id"] = str(result["file_id"])
    return result


def run_child(folder: Path, sandbox_url: str, size: int, kek: str, retrieve: bool) -> Any:
    argv = [
        sys.executable,
        __file__,
        "--child-ingest",
        str(size),
        "--dir",
        str(folder),
        "--sandbox-url",
        sandbox_url,
        "--json",
    ]
    if retrieve:
        argv.append("--retrieve")
    done = subprocess.run(
        argv,
        env={
            **os.environ,
            "VAULT_BENCH_KEK": kek,
            **{f"VAULT_BENCH_{name}": value for name, value in KEYS.items()},
        },
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the ingest process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    base = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(prefix="vault-bench-", dir=base) as tmp:
        folder = Path(tmp)
        size = args.size_mb * MIB
        result: dict[str, Any] = {"size_mb": args.size_mb}

        disk_s = crypto_bench.disk_write_fsync(folder, size)
        result["disk_fsync_write_mb_s"] = mb_s(size, disk_s)
        enc_s, dec_s = crypto_bench.raw_aesgcm(size)
        result["aesgcm_encrypt_mb_s"] = mb_s(size, enc_s)
        result["aesgcm_decrypt_mb_s"] = mb_s(size, dec_s)

        port = free_port()
        sandbox_url = f"http://127.0.0.1:{port}"
        sandbox_dir = folder / "sandbox"
        sandbox_dir.mkdir()
        # Imported here, not at the top: the ingest processes (this file again) stay lean.
        from companion import migrate

        migrate.upgrade(f"sqlite:///{folder / 'companion.db'}")
        kek = generate_kek_line("kek-bench")
        proc = start_sandbox(sandbox_dir, sandbox_url)
        try:
            # Each ingest in a fresh process of its own, so its RSS is that of the ingest.
            small = run_child(folder, sandbox_url, args.small_mb * MIB, kek, retrieve=False)
            big = run_child(folder, sandbox_url, size, kek, retrieve=True)
        finally:
            stop(proc)
        # What was stored is what the sandbox sent (the small file; hashing 1 GiB once more
        # would only slow the run down). Imported here: the ingest processes never load it.
        from companion.zoom.sandbox import media

        assert small["sha256"] == media.synthetic_sha256(small["size"], small["zoom_file_id"])
        result["retrieval"] = big.pop("retrieval")
        result["ingest_small"] = small
        result["ingest"] = big
        result["retention"] = retention_sweep(folder, args.recordings, args.due)
        return result


def report(r: dict[str, Any]) -> str:
    ing, small, ret, sweep = r["ingest"], r["ingest_small"], r["retrieval"], r["retention"]
    disk = r["disk_fsync_write_mb_s"]
    mb = 1e6
    lines = [
        f"recordings vault bench ({r['size_mb']} MiB recording; MB/s = 10^6 bytes/s)",
        f"  disk write + fsync              {disk:8.0f} MB/s",
        f"  AES-256-GCM (cryptography)      {r['aesgcm_encrypt_mb_s']:8.0f} MB/s encrypt, "
        f"{r['aesgcm_decrypt_mb_s']:.0f} MB/s decrypt",
        f"  ingest from the sandbox         {ing['ingest_mb_s']:8.0f} MB/s overall "
        f"(download+encrypt+write+fsync {ing['download_store_mb_s']:.0f} MB/s, "
        f"verify {ing['verify_mb_s']:.0f} MB/s); target >= {disk / 2:.0f} "
        f"({'met' if ing['ingest_mb_s'] >= disk / 2 else 'NOT met'})",
        f"    state after ingest            {ing['state']} (Zoom copy: {ing['zoom']})",
        f"  peak RSS of the ingest process  {ing['process_peak_rss'] / mb:8.1f} MB for "
        f"{r['size_mb']} MiB, {small['process_peak_rss'] / mb:.1f} MB for "
        f"{small['size'] // MIB} MiB; target < 100 MB "
        f"({'met' if max(ing['process_peak_rss'], small['process_peak_rss']) < 1e8 else 'NOT'})",
        f"    during the ingest itself      {ing['rss_before'] / mb:.1f} MB before -> "
        f"{ing['peak_rss'] / mb:.1f} MB peak ({r['size_mb']} MiB); {small['rss_before'] / mb:.1f}"
        f" -> {small['peak_rss'] / mb:.1f} MB ({small['size'] // MIB} MiB)",
        f"  retrieval, decrypt_stream       {ret['decrypt_stream_mb_s']:8.0f} MB/s; "
        f"range reader {ret['range_reader_mb_s']:.0f} MB/s; target >= 1000 "
        f"({'met' if ret['decrypt_stream_mb_s'] >= 1000 else 'NOT met'})",
        f"  retention sweep over {sweep['recordings']} recordings ({sweep['due']} due, "
        f"{sweep['held_and_due']} due but held):",
        f"    due query                     {sweep['due_query_rows']} rows in "
        f"{sweep['due_query_ms']:.1f} ms; plan: {sweep['plan']}",
        f"    sweep                         {sweep['sweep_s']:.2f} s, {sweep['statements']} "
        f"statements, outcome {sweep['sweep_outcome']}",
        f"    after                         {sweep['recordings_deleted']} deleted, "
        f"{sweep['recordings_untouched']} untouched, {sweep['held_kept']} held kept, "
        f"{sweep['file_keys_left']} file keys left; second sweep {sweep['second_sweep']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--small-mb", type=int, default=64)
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--dir", default=None, help="Where the temporary folder goes.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child-ingest", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--retrieve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    result = child_ingest(args) if args.child_ingest else run(args)
    print(json.dumps(result, indent=2, default=str) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
