"""Backups: an archive of every table, under a backup key of its own, that restores into an
empty database, after which the lead opens a recording and the audit chain still verifies; and
every damaged archive, wrong key or non-empty database is refused with a clear message, changing
nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.audit import services as audit_services
from companion.audit.models import AuditEvent
from companion.backup import archive, services, tables
from companion.backup.archive import ArchiveError
from companion.db import make_engine
from companion.recordings.models import Recording
from companion.recordings.storage import LocalEncryptedStorage
from companion.zoom.sandbox import media

from ..conftest import Browser, database_kind, own_database_url
from ..recordings.vault_helpers import Vault, file_of
from .helpers import (
    BACKUP_LINE,
    OTHER_LINE,
    archive_of,
    keyset,
    row_counts,
    served,
    table_names,
)

VIDEO = media.media_bytes(media.VIDEO)
REASON = "Concern #3: what was said after the break."


@pytest.fixture
def recording(vault: Vault, course_in_zoom: Any) -> Recording:
    vault.run_class(course_in_zoom.zoom_meeting_id, course_in_zoom.classes[0].starts_at)
    vault.work()
    (rec,) = vault.recordings()
    return rec


def lead_opens(app: Flask, lead_email: str, rec_id: Any, file_id: Any) -> bytes:
    """The lead signs in, gives a reason, and streams the file: its plaintext."""
    browser = Browser(app.test_client())
    signed_in = browser.login(lead_email)
    assert signed_in.status_code == 302, signed_in.get_data(as_text=True)[:2000]
    assert "/login" not in signed_in.headers["Location"], signed_in.headers["Location"]
    granted = browser.post(
        f"/recordings/{rec_id}/files/{file_id}/access",
        {"reason": REASON},
        form_page=f"/recordings/{rec_id}",
    )
    assert granted.status_code == 302, granted.get_data(as_text=True)[:500]
    response = browser.client.get(granted.headers["Location"] + "/file")
    assert response.status_code == 200
    return bytes(response.data)


def restore_and_open(
    path: Path, url: str, instance_dir: Path, vault: Vault, lead: Any, rec: Recording
) -> dict[str, int]:
    """Restore into the empty database ``url``, then the lead opens the MP4 there and the
    audit chain verifies; returns the restored database's row counts."""
    engine = make_engine(url)
    try:
        restored = services.restore_archive(
            path, keyset(), engine=engine, url=url, storage=vault.storage
        )
        counts = row_counts(engine)
    finally:
        engine.dispose()
    assert restored.manifest.rows == sum(restored.manifest.tables.values())
    mp4 = file_of(list(rec.files), "MP4")
    with served(url, instance_dir, vault.storage) as app:
        assert lead_opens(app, lead.email, rec.id, mp4.id) == VIDEO
        session = Session(app.extensions["companion.engine"])
        try:
            assert list(audit_services.verify(session)) == []
            kinds = [e.kind for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        finally:
            session.close()
    # The opening of the restored recording went on the restored trail, after the old rows.
    assert kinds[-2:] == ["recording.access_granted", "recording.retrieved"]
    return counts


def test_a_backup_restores_into_an_empty_database_where_the_lead_opens_a_recording(
    vault: Vault,
    recording: Recording,
    lead: Any,
    admin: Any,
    db_session: Session,
    tmp_path: Path,
    instance_dir: Path,
) -> None:
    path = tmp_path / "backups" / "one.backup"
    created = archive_of(db_session, path)
    before = row_counts(db_session)
    assert created.manifest.tables == {k: v for k, v in before.items()}
    assert created.manifest.referenced_blobs == len(recording.files)
    assert created.manifest.blobs == 0  # referenced, not copied
    assert path.stat().st_mode & 0o077 == 0
    assert not path.with_name(path.name + ".partial").exists()
    # Nothing of the database is readable in the archive.
    raw = path.read_bytes()
    assert lead.email.encode() not in raw and b"audit_events" not in raw

    manifest = services.verify_archive(path, keyset())
    assert manifest.tables == created.manifest.tables
    assert manifest.revision == created.manifest.revision

    url = own_database_url(tmp_path, "restored")
    after = restore_and_open(path, url, instance_dir, vault, lead, recording)
    assert after == before


def test_an_archive_with_the_recordings_restores_them_into_an_empty_store(
    vault: Vault,
    recording: Recording,
    lead: Any,
    db_session: Session,
    tmp_path: Path,
    instance_dir: Path,
) -> None:
    path = tmp_path / "with.backup"
    created = archive_of(db_session, path, vault.storage, with_recordings=True)
    assert created.manifest.blobs == len(recording.files) > 0
    assert services.verify_archive(path, keyset()).blob_bytes == created.manifest.blob_bytes

    empty_store = LocalEncryptedStorage(tmp_path / "new-store")
    url = own_database_url(tmp_path, "restored")
    engine = make_engine(url)
    try:
        restored = services.restore_archive(
            path, keyset(), engine=engine, url=url, storage=empty_store
        )
        assert restored.blobs_written == created.manifest.blobs
        assert services.missing_blobs(engine, empty_store) == (created.manifest.blobs, 0)
    finally:
        engine.dispose()
    mp4 = file_of(list(recording.files), "MP4")
    with served(url, instance_dir, empty_store) as app:
        assert lead_opens(app, lead.email, recording.id, mp4.id) == VIDEO


@pytest.mark.skipif(database_kind() != "postgresql", reason="needs the PostgreSQL run")
def test_an_archive_crosses_from_postgresql_to_sqlite_and_back(
    vault: Vault,
    recording: Recording,
    lead: Any,
    db_session: Session,
    tmp_path: Path,
    instance_dir: Path,
) -> None:
    from_pg = tmp_path / "from-pg.backup"
    archive_of(db_session, from_pg)
    sqlite_url = f"sqlite:///{tmp_path / 'restored.db'}"
    assert restore_and_open(from_pg, sqlite_url, instance_dir, vault, lead, recording) == (
        row_counts(db_session)
    )

    # ... and an archive of that SQLite database (with the lead's visit) restores into PostgreSQL.
    from_sqlite = tmp_path / "from-sqlite.backup"
    engine = make_engine(sqlite_url)
    try:
        counts = row_counts(engine)
        services.create_archive(from_sqlite, keyset(), snapshot=lambda: services.snapshot(engine))
    finally:
        engine.dispose()
    pg_url = own_database_url(tmp_path, "restored")
    assert restore_and_open(from_sqlite, pg_url, instance_dir, vault, lead, recording) == counts


# --- faults: each refused with its reason, nothing changed ----------------------------------


def _damaged(path: Path, how: str) -> Path:
    data = bytearray(path.read_bytes())
    out = path.with_name(f"{how}.backup")
    if how == "truncated":
        data = data[: len(data) - 40]
    elif how == "cut_in_half":
        data = data[: len(data) // 2]
    elif how == "tampered":
        data[len(data) // 2] ^= 0x01
    elif how == "tampered_header":
        data[-1] ^= 0x80
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("how", ["truncated", "cut_in_half", "tampered", "tampered_header"])
def test_a_damaged_archive_is_refused_and_nothing_is_restored(
    how: str, db_session: Session, admin: Any, tmp_path: Path
) -> None:
    good = tmp_path / "good.backup"
    archive_of(db_session, good)
    bad = _damaged(good, how)
    with pytest.raises(ArchiveError) as verify_error:
        services.verify_archive(bad, keyset())
    assert "is truncated or was changed after it was written" in verify_error.value.message

    url = own_database_url(tmp_path, "target")
    engine = make_engine(url)
    try:
        with pytest.raises(ArchiveError) as restore_error:
            services.restore_archive(bad, keyset(), engine=engine, url=url)
    finally:
        engine.dispose()
    assert restore_error.value.message == verify_error.value.message
    assert table_names(url) == set()


def test_a_wrong_or_missing_backup_key_is_named_as_such(
    db_session: Session, admin: Any, tmp_path: Path
) -> None:
    path = tmp_path / "one.backup"
    archive_of(db_session, path)
    same_id_other_key = "backup-test:" + OTHER_LINE.split(":", 1)[1]
    with pytest.raises(ArchiveError, match="is not the key that made"):
        services.verify_archive(path, keyset(same_id_other_key))
    with pytest.raises(ArchiveError, match="names backup key 'backup-test', which is not"):
        services.verify_archive(path, keyset(OTHER_LINE))
    # After a rotation the old key, kept second, still reads it.
    assert services.verify_archive(path, keyset(OTHER_LINE, BACKUP_LINE)).rows > 0
    not_an_archive = tmp_path / "notes.txt"
    not_an_archive.write_text("hello")
    with pytest.raises(ArchiveError, match="is not a companion backup archive"):
        services.verify_archive(not_an_archive, keyset())


def test_restoring_into_a_database_that_is_not_empty_is_refused_and_changes_nothing(
    db_session: Session, admin: Any, tmp_path: Path
) -> None:
    path = tmp_path / "one.backup"
    archive_of(db_session, path)
    url = own_database_url(tmp_path, "target")
    engine = make_engine(url)
    try:
        services.restore_archive(path, keyset(), engine=engine, url=url)
        before = row_counts(engine)
        with pytest.raises(ArchiveError, match="the database is not empty") as refused:
            services.restore_archive(path, keyset(), engine=engine, url=url)
        assert "users: 1" in refused.value.message
        assert row_counts(engine) == before
    finally:
        engine.dispose()


def test_a_failure_half_way_through_the_rows_leaves_the_database_as_it_was(
    db_session: Session, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "one.backup"
    archive_of(db_session, path)
    url = own_database_url(tmp_path, "target", migrated=True)
    real = tables.decode
    seen = {"n": 0}

    def failing(kind: str, value: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == 12:  # into the second table, after the migrations and some rows
            raise ArchiveError("the disk went away")
        return real(kind, value)

    monkeypatch.setattr(tables, "decode", failing)
    engine = make_engine(url)
    try:
        with pytest.raises(ArchiveError, match="the disk went away"):
            services.restore_archive(path, keyset(), engine=engine, url=url)
        counts = row_counts(engine)
        assert counts.pop("audit_head") == 1  # the migrations' genesis row, as before
        assert set(counts.values()) == {0}
        monkeypatch.setattr(tables, "decode", real)
        # ... so it can simply be run again.
        services.restore_archive(path, keyset(), engine=engine, url=url)
        assert row_counts(engine)["users"] == 1
    finally:
        engine.dispose()


def test_an_archive_is_written_whole_or_not_at_all(
    db_session: Session, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "one.backup"

    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(services, "_dump_table", failing)
    with pytest.raises(OSError):
        archive_of(db_session, path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    archive_of(db_session, path)
    with pytest.raises(ArchiveError, match="exists already"):
        archive_of(db_session, path)


def test_the_archive_id_is_bound_to_its_content(
    db_session: Session, admin: Any, tmp_path: Path
) -> None:
    """Two archives' preambles swapped: neither opens (the id is in every segment's data)."""
    first, second = tmp_path / "a.backup", tmp_path / "b.backup"
    archive_of(db_session, first)
    archive_of(db_session, second)
    a, b = first.read_bytes(), second.read_bytes()
    head = 6 + len("backup-test") + archive.CHECK_SIZE + 16 + 60
    mixed = tmp_path / "mixed.backup"
    mixed.write_bytes(a[:head] + b[head:])
    with pytest.raises(ArchiveError, match="truncated or was changed"):
        services.verify_archive(mixed, keyset())


def test_the_security_review_shows_the_last_verified_backup(
    browser: Browser, admin: Any, db_session: Session, tmp_path: Path, clock: Any
) -> None:
    browser.login(admin.email)
    page = browser.client.get("/admin/security").get_data(as_text=True)
    assert "Never verified" in page

    path = tmp_path / "one.backup"
    archive_of(db_session, path, now=dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC))
    manifest = services.verify_archive(path, keyset())
    services.record_verification(db_session, path, manifest, archive_size=path.stat().st_size)
    page = browser.client.get("/admin/security").get_data(as_text=True)
    assert "Never verified" not in page
    assert "Last verified backup: made on 02 Mar 2026 09:30" in page  # London, winter: UTC
    assert "Europe/London time (one.backup" in page

    bad = _damaged(path, "tampered")
    try:
        services.verify_archive(bad, keyset())
    except ArchiveError as exc:
        clock.advance(minutes=1)
        services.record_verification(db_session, bad, None, problem=exc.message)
    page = browser.client.get("/admin/security").get_data(as_text=True)
    assert "1 backup check(s) failed since then" in page
