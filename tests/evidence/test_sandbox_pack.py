"""The whole path through the Zoom sandbox: a simulated class's signed webhooks go through the
real intake and job into attendance, its recording into the vault; the lead exports the class
record as a signed evidence pack, which verifies, and fails when anything in it or the stored
recording is changed; after retention deletes the recording, the pack says so."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion.audit.models import AuditEvent
from companion.evidence import attendance, cli, pack
from companion.evidence.models import AttendanceEvent, ZoomMeeting
from companion.recordings.models import Recording

from .. import factories
from ..factories import meeting_body, zoom_course
from ..recordings.vault_helpers import Vault


def verified(session: Any, app: Any, data: bytes) -> pack.Verification:
    """What the lead's check does: read what the database says, then re-hash the stored copies
    (with no transaction open in the product; here inside the test's own)."""
    result = pack.verify_pack(session, app, data)
    pack.rehash_stored(app, result)
    return result


@pytest.fixture
def vault(app: Flask, db_session: Session, tmp_path: Path) -> Iterator[Vault]:
    v = Vault(app, db_session, tmp_path)
    yield v
    v.close()


def _course_with_registrants(
    vault: Vault, db_session: Session, teacher: Any
) -> tuple[Any, list[Any]]:
    start = factories.class_start(1)
    body = meeting_body(start + dt.timedelta(days=8))
    body["settings"]["approval_type"] = 0
    meeting_id = int(vault.zoom.create_meeting("me", body)["id"])
    course = zoom_course(db_session, teacher, meeting_id=meeting_id, starts=[start])
    fams = []
    for first, email in (("Amira", "rana@example.net"), ("Ben", "lee@example.net")):
        reg = vault.zoom.add_registrant(
            meeting_id, {"email": email, "first_name": first, "last_name": "K"}
        )
        fams.append(
            factories.family(db_session, course, first=first, registrant_id=reg["registrant_id"])
        )
    return course, fams


def _zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_a_sandbox_class_becomes_attendance_and_a_pack_that_verifies(
    vault: Vault,
    app: Flask,
    db_session: Session,
    teacher: Any,
    lead: Any,
    browser: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    course, (amira, ben) = _course_with_registrants(vault, db_session, teacher)
    cls = factories.class_of(course)
    vault.run_class(
        course.zoom_meeting_id,
        cls.starts_at,
        participants=[amira.zoom_registrant_id, ben.zoom_registrant_id, "Grandad's iPad"],
        teacher="Ms Teacher",
    )
    assert set(vault.webhook_statuses) == {200}
    vault.work()
    statuses = {e.event: e.status for e in vault.events()}
    assert statuses["meeting.participant_joined"] == "done"
    assert statuses["recording.completed"] == "done"

    db_session.expire_all()
    meeting = db_session.scalars(select(ZoomMeeting)).one()
    assert meeting.class_session_id == cls.id and not meeting.unmatched
    people = {p.name: p for p in attendance.people(meeting.events)}
    assert people["Ms Teacher"].role == "host"
    assert people["Amira K"].family_id == amira.id and people["Ben K"].family_id == ben.id
    assert people["Grandad's iPad"].role == "guest"
    assert [e.kind for e in people["Amira K"].events] == ["waiting", "admitted", "joined", "left"]

    # Zoom sends it all again (a lost 2xx): nothing is stored twice.
    before = len(db_session.scalars(select(AttendanceEvent)).all())
    admin_api = vault.sandbox_app.test_client()
    deliveries = admin_api.get("/_sandbox/deliveries").get_json()
    for delivery in deliveries:
        admin_api.post(f"/_sandbox/deliveries/{delivery['id']}/redeliver")
    assert len(vault.webhook_statuses) >= 2 * len(deliveries)
    vault.process_webhooks()
    db_session.expire_all()
    assert len(db_session.scalars(select(AttendanceEvent)).all()) == before

    (rec,) = db_session.scalars(select(Recording)).all()
    assert all(f.state == "zoom_deleted" and f.sha256 for f in rec.files)

    browser.login(lead.email)
    page = browser.client.get(f"/courses/{course.id}/classes/{cls.id}/record").get_data(
        as_text=True
    )
    assert all(f.sha256 in page for f in rec.files)
    response = browser.post(
        f"/courses/{course.id}/classes/{cls.id}/evidence-pack",
        form_page=f"/courses/{course.id}/classes/{cls.id}/record",
    )
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_data()
    files = _zip(data)
    assert set(files) == {"record.html", "manifest.json", "manifest.sig", "README.txt"}
    manifest = json.loads(files["manifest.json"])
    in_pack = {f["id"]: f for r in manifest["recordings"] for f in r["files"]}
    assert {str(f.id): f.sha256 for f in rec.files} == {k: v["sha256"] for k, v in in_pack.items()}
    assert (
        "Amira K." in files["record.html"].decode() and "Grandad" in files["record.html"].decode()
    )
    assert db_session.scalars(
        select(AuditEvent).where(AuditEvent.kind == "evidence.pack_exported")
    ).one()

    # Verify: signature, record and each recording re-hashed from the vault.
    result = verified(db_session, app, data)
    assert result.valid and result.signature_ok and result.record_ok
    assert {f.outcome for f in result.files} == {"unchanged"}

    # The lead's page says the same.
    upload = browser.client.post(
        "/evidence/verify",
        data={
            "pack": (io.BytesIO(data), "pack.zip"),
            "csrf_token": browser.csrf("/evidence/verify"),
        },
        content_type="multipart/form-data",
    )
    assert upload.status_code == 200 and "Valid: signed" in upload.get_data(as_text=True)

    # The command line too.
    path = tmp_path / "pack.zip"
    path.write_bytes(data)
    monkeypatch.setattr("companion.cli._app", lambda: app)
    outcome = CliRunner().invoke(cli.evidence_group, ["verify", str(path)])
    assert outcome.exit_code == 0, outcome.output
    assert "Valid" in outcome.output and "unchanged" in outcome.output

    # --- tampering -----------------------------------------------------------------------
    changed_html = dict(files, **{"record.html": files["record.html"].replace(b"Amira", b"Amina")})
    result = verified(db_session, app, _rezip(changed_html))
    assert result.signature_ok and not result.record_ok and not result.valid

    forged = json.loads(files["manifest.json"])
    forged["class"]["starts_at"] = "2020-01-01T00:00:00Z"
    changed_manifest = dict(
        files, **{"manifest.json": json.dumps(forged, indent=2, sort_keys=True).encode()}
    )
    result = verified(db_session, app, _rezip(changed_manifest))
    assert not result.signature_ok and not result.valid

    # Signed again with a key that is not the organisation's, under its key id or another.
    stranger = Ed25519PrivateKey.generate()
    for key_id in (manifest["signature"]["key_id"], "sign-stranger"):
        forged = json.loads(files["manifest.json"])
        forged["signature"]["key_id"] = key_id
        forged_bytes = json.dumps(forged, indent=2, sort_keys=True).encode()
        resigned = dict(
            files,
            **{
                "manifest.json": forged_bytes,
                "manifest.sig": base64.b64encode(stranger.sign(forged_bytes)) + b"\n",
            },
        )
        other_key = verified(db_session, app, _rezip(resigned))
        assert not other_key.signature_ok and not other_key.valid

    mp4 = next(f for f in rec.files if f.file_type == "MP4")
    blob = vault.storage.root / mp4.blob_key
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))
    result = verified(db_session, app, data)
    assert result.signature_ok and not result.valid
    outcomes = {f.file_type: f.outcome for f in result.files}
    assert outcomes == {"MP4": "changed", "M4A": "unchanged"}
    outcome = CliRunner().invoke(cli.evidence_group, ["verify", str(path)])
    assert outcome.exit_code == 1

    # --- deleted by retention ------------------------------------------------------------
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))
    rec.delete_after = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    db_session.commit()
    from companion.recordings import jobs as recording_jobs

    recording_jobs.retention_sweep(app)
    db_session.expire_all()
    assert db_session.get(Recording, rec.id).state == "deleted"
    result = verified(db_session, app, data)
    assert result.valid and {f.outcome for f in result.files} == {"deleted"}
    assert "since deleted by retention" in result.summary
    # A pack made after the deletion says so instead of failing.
    again = browser.post(
        f"/courses/{course.id}/classes/{cls.id}/evidence-pack",
        form_page=f"/courses/{course.id}/classes/{cls.id}/record",
    )
    assert again.status_code == 200
    html = _zip(again.get_data())["record.html"].decode()
    assert "deleted by retention" in html


def test_only_the_lead_exports_a_pack(
    db_session: Session, browser: Any, teacher: Any, admin: Any
) -> None:
    course = factories.course_with_classes(db_session, teacher)
    cls = factories.class_of(course)
    browser.login(admin.email)
    response = browser.post(
        f"/courses/{course.id}/classes/{cls.id}/evidence-pack", form_page="/evidence/settings"
    )
    assert response.status_code == 403


def test_a_pack_of_another_organisation_or_not_a_pack_is_refused(
    db_session: Session, app: Flask, browser: Any, lead: Any
) -> None:
    browser.login(lead.email)
    token = browser.csrf("/evidence/verify")
    bad = browser.client.post(
        "/evidence/verify",
        data={"pack": (io.BytesIO(b"not a zip"), "x.zip"), "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400 and "not a zip" in bad.get_data(as_text=True)
    manifest = json.dumps({"organisation": {"id": lead.organisation_id + 1000}}).encode()
    foreign = _rezip({"manifest.json": manifest, "manifest.sig": b"AAAA", "record.html": b""})
    refused = browser.client.post(
        "/evidence/verify",
        data={"pack": (io.BytesIO(foreign), "x.zip"), "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400 and "not of your organisation" in refused.get_data(
        as_text=True
    )
