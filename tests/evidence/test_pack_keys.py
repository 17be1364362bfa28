"""Evidence packs across signing-key rotations (companion.evidence.signing, README "Keys"): a
pack names the key id that signed it, verifies on the page and the command line after a new key
became current and the old private key is gone, and a tampered or foreign pack does not."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from sqlalchemy import delete
from sqlalchemy.orm import Session

from companion import keysets
from companion.cli import main
from companion.db import utcnow
from companion.evidence import pack
from companion.evidence.models import EvidencePack, EvidenceSigningKey

from .. import factories
from ..conftest import SECRET, TEST_SIGNING_KEYS, Browser

NEW_SIGNING = keysets.generate_line(keysets.SIGNING, "sign-new")


def export(db: Session, lead: Any, teacher: Any) -> bytes:
    course = factories.course_with_classes(db, teacher)
    built = pack.build_pack(db, lead, course.id, factories.class_of(course).id, now=utcnow())
    db.commit()
    return built.data


def files_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def signed_by(data: bytes) -> str:
    return str(json.loads(files_of(data)["manifest.json"])["signature"]["key_id"])


def verify_on_page(app: Flask, lead: Any, data: bytes) -> str:
    browser = Browser(app.test_client())
    browser.login(lead.email)
    page = browser.client.post(
        "/evidence/verify",
        data={
            "pack": (io.BytesIO(data), "pack.zip"),
            "csrf_token": browser.csrf("/evidence/verify"),
        },
        content_type="multipart/form-data",
    )
    return page.get_data(as_text=True)


def verify_by_cli(
    app: Flask, data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    path = tmp_path / f"pack-{hashlib.sha256(data).hexdigest()[:8]}.zip"
    path.write_bytes(data)
    monkeypatch.setattr("companion.cli._app", lambda: app)
    result = CliRunner().invoke(main, ["evidence", "verify", str(path)])
    return result.exit_code, result.output


def test_a_pack_verifies_after_a_new_signing_key_replaced_the_one_that_signed_it(
    app: Flask,
    app_with: Any,
    db_session: Session,
    lead: Any,
    teacher: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = export(db_session, lead, teacher)
    assert signed_by(before) == "sign-test"

    # A new signing key, and the old private key no longer configured at all.
    rotated = app_with(SIGNING_KEYS=NEW_SIGNING)
    result = pack.verify_pack(db_session, rotated, before)
    assert result.valid and result.signature_ok and result.key_id == "sign-test"
    assert "Valid: signed" in verify_on_page(rotated, lead, before)
    code, output = verify_by_cli(rotated, before, tmp_path, monkeypatch)
    assert code == 0 and "signature: ok (sign-test)" in output

    # New packs name the new key, and verify too.
    after = export(db_session, lead, teacher)
    assert signed_by(after) == "sign-new"
    assert pack.verify_pack(db_session, rotated, after).valid
    # The lead's overview shows the current key and the earlier one.
    overview = Browser(rotated.test_client())
    overview.login(lead.email)
    page = overview.client.get("/evidence/").get_data(as_text=True)
    assert "<code>sign-new</code>" in page and "<code>sign-test</code>" in page

    # Tampered: the record, or the manifest (the signature no longer matches).
    files = files_of(before)
    changed_record = dict(files, **{"record.html": files["record.html"] + b"<!-- -->"})
    result = pack.verify_pack(db_session, rotated, rezip(changed_record))
    assert result.signature_ok and not result.record_ok and not result.valid
    manifest = json.loads(files["manifest.json"])
    manifest["generated_at"] = "2020-01-01T00:00:00Z"
    changed = dict(
        files, **{"manifest.json": json.dumps(manifest, indent=2, sort_keys=True).encode()}
    )
    result = pack.verify_pack(db_session, rotated, rezip(changed))
    assert not result.signature_ok and not result.valid
    code, output = verify_by_cli(rotated, rezip(changed), tmp_path, monkeypatch)
    assert code == 1 and "DOES NOT MATCH" in output
    # The public key inside a pack is never trusted: re-signed with another key under any id.
    stranger = Ed25519PrivateKey.generate()
    for key_id in ("sign-test", "sign-new", "sign-made-up"):
        manifest = json.loads(files["manifest.json"])
        manifest["signature"]["key_id"] = key_id
        manifest["signature"]["public_key"] = base64.b64encode(
            stranger.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        ).decode()
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        forged = dict(
            files,
            **{"manifest.json": body, "manifest.sig": base64.b64encode(stranger.sign(body))},
        )
        assert not pack.verify_pack(db_session, rotated, rezip(forged)).valid, key_id


def test_rotate_writes_the_new_key_alone_and_old_packs_still_verify(
    app_with: Any,
    db_session: Session,
    lead: Any,
    teacher: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "signing-keys"
    keysets.write_key_file(keysets.SIGNING, path, [TEST_SIGNING_KEYS])
    running = app_with(SIGNING_KEYS="", SIGNING_KEYS_FILE=str(path))
    before = export(db_session, lead, teacher)

    monkeypatch.setattr("companion.cli._app", lambda: running)
    result = CliRunner().invoke(main, ["keys", "rotate", "--kind", "signing", "--id", "sign-b"])
    assert result.exit_code == 0, result.output
    assert "the old private key is removed" in result.output
    assert [line.split(":")[0] for line in keysets.read_key_file(keysets.SIGNING, path)] == [
        "sign-b"
    ]
    # The running app noticed the new file: new packs are signed with the new key.
    after = export(db_session, lead, teacher)
    assert signed_by(after) == "sign-b"
    assert pack.verify_pack(db_session, running, before).valid
    assert pack.verify_pack(db_session, running, after).valid
    status = CliRunner().invoke(main, ["keys", "status"])
    assert status.exit_code == 0, status.output
    assert "Evidence-pack signing keys" in status.output and "sign-b" in status.output


def legacy_key(secret: str, organisation_id: int) -> Ed25519PrivateKey:
    """The key versions before keys were separated signed with: derived from SECRET_KEY."""
    seed = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"companion-evidence",
        info=b"companion evidence pack signing key v1|organisation:"
        + str(organisation_id).encode(),
    ).derive(secret.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def test_packs_signed_under_the_old_secret_verify_with_it_and_after_reseal_without_it(
    app: Flask,
    app_with: Any,
    db_session: Session,
    lead: Any,
    teacher: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = files_of(export(db_session, lead, teacher))
    # Made into a pack as an earlier version made it (and recorded it).
    key = legacy_key(SECRET, lead.organisation_id)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    old_id = "ed25519:" + hashlib.sha256(public).hexdigest()[:16]
    manifest = json.loads(files["manifest.json"])
    manifest["signature"] = {
        "algorithm": "Ed25519",
        "key_id": old_id,
        "public_key": base64.b64encode(public).decode(),
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    old = rezip(
        dict(files, **{"manifest.json": body, "manifest.sig": base64.b64encode(key.sign(body))})
    )
    row = db_session.query(EvidencePack).one()
    db_session.add(
        EvidencePack(
            organisation_id=row.organisation_id,
            class_session_id=row.class_session_id,
            created_by_id=row.created_by_id,
            created_at=row.created_at,
            key_id=old_id,
            manifest_sha256=hashlib.sha256(body).hexdigest(),
            filename=row.filename,
        )
    )
    db_session.commit()

    unknown = pack.verify_pack(db_session, app, old)
    assert not unknown.valid and f"names signing key {old_id!r}" in unknown.problems[0]
    with_legacy = app_with(LEGACY_SECRET_KEY=SECRET)
    assert pack.verify_pack(db_session, with_legacy, old).valid

    monkeypatch.setattr("companion.cli._app", lambda: with_legacy)
    result = CliRunner().invoke(main, ["keys", "reseal"])
    assert result.exit_code == 0, result.output
    assert "Recorded 1 public key(s) of earlier evidence packs." in result.output
    # Without the old secret now: the recorded public key still verifies it.
    assert pack.verify_pack(db_session, app_with(), old).valid
    db_session.execute(delete(EvidenceSigningKey).where(EvidenceSigningKey.key_id == old_id))
    assert not pack.verify_pack(db_session, app_with(), old).valid
