"""The evidence pack: one class record as a signed zip, and its verification.

A pack is a zip holding:

* ``record.html`` - the class record as the lead saw it (schedule, safety settings as verified,
  attendance with times in the course time zone, audio-only, adult confirmations, warnings,
  recordings with sizes and SHA-256, concerns and holds);
* ``manifest.json`` - the same facts as data, the SHA-256 of ``record.html``, and for every
  recording file its id, size and the SHA-256 of the plaintext taken at ingest;
* ``manifest.sig`` - an Ed25519 signature (base64) over the exact bytes of ``manifest.json``;
* ``README.txt`` - how to check it.

The signing key is the organisation's, under the current evidence-pack signing key id
(:mod:`companion.evidence.signing`), never derived from the cookie-signing ``SECRET_KEY``. The
manifest names the key id and carries the public key; verification uses the public key companion
recorded for that organisation and key id when it first signed, so packs signed before a new
signing key became current still verify, and a public key inside the pack is never trusted.

Verifying checks the signature against the organisation's key, the hash of ``record.html``,
and re-hashes each stored recording (decrypting it as a stream) against the manifest, so the
lead can show that neither the record nor the recording has changed. A recording deleted by
retention since is reported as deleted (with the hash it had), not as a failure.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, render_template
from sqlalchemy.orm import Session

from ..access import LEAD
from ..accounts.models import User
from ..audit.services import record as audit
from ..courses.timetable import local_time
from ..errors import Forbidden, ValidationError
from ..orgs.models import Organisation
from ..recordings import crypto, vault
from ..recordings.models import FILE_STATE_LABELS, FileState, RecordingFile, RecordingState
from ..recordings.views import human_size
from . import services, signing
from .models import EVENT_LABELS, EvidencePack

FORMAT = "companion-evidence-pack/1"
MAX_PACK_BYTES = 50 * 1024 * 1024


# --- the organisation's signing key ----------------------------------------------------------


def public_key_info(organisation_id: int) -> signing.PublicKeyInfo:
    """The key id and public key that sign the organisation's new packs (for its lead to
    publish)."""
    return signing.current_public(signing.keys_for(), organisation_id)


def earlier_keys(session: Session, organisation_id: int) -> list[signing.PublicKeyInfo]:
    """The keys that signed the organisation's earlier packs (they still verify)."""
    current = signing.keys_for().current_id
    return [
        signing.PublicKeyInfo(row.key_id, row.public_key)
        for row in signing.recorded(session, organisation_id)
        if row.key_id != current
    ]


# --- building a pack -------------------------------------------------------------------------


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def _manifest_facts(record: services.ClassRecord) -> dict[str, Any]:
    course, cls = record.course, record.cls
    return {
        "course": {
            "id": course.id,
            "title": course.title,
            "timezone": course.timezone,
            "zoom_meeting_id": course.zoom_meeting_id,
            "safety_state": course.safety_state,
            "safety_problems": course.problems,
            "safety_last_verified_at": _iso(course.last_verified_at),
        },
        "class": {
            "id": cls.id,
            "occurrence_id": cls.occurrence_id,
            "starts_at": _iso(cls.starts_at),
            "ends_at": _iso(cls.ends_at),
            "status": cls.status,
            "never_started": record.never_started,
        },
        "meetings": [
            {
                "zoom_uuid": mv.meeting.zoom_uuid,
                "zoom_meeting_id": mv.meeting.zoom_meeting_id,
                "started_at": _iso(mv.meeting.started_at),
                "ended_at": _iso(mv.meeting.ended_at),
                "events": [
                    {
                        "id": e.id,
                        "at": _iso(e.at),
                        "kind": e.kind,
                        "role": e.role,
                        "family_id": e.family_id,
                        "registrant_id": e.registrant_id,
                        "participant_uuid": e.participant_uuid,
                        "display_name": e.display_name,
                    }
                    for e in mv.timeline
                ],
            }
            for mv in record.meetings
        ],
        "audio_only_events": [
            {
                "family_id": e.family_id,
                "class_id": e.class_id,
                "action": e.action,
                "at": _iso(e.at),
            }
            for e in record.audio_only_events
        ],
        "adult_confirmations": [
            {"family_id": c.family_id, "contact_id": c.contact_id, "at": _iso(c.confirmed_at)}
            for c in record.confirmations
        ],
        "warnings": [
            {
                "id": w.id,
                "kind": w.kind,
                "status": w.status,
                "period_start": _iso(w.period_start),
                "period_end": _iso(w.period_end),
                "detail": w.details,
            }
            for w in record.warnings
        ],
        "concerns": [
            {"id": c.id, "raised_at": _iso(c.created_at), "minute_into_class": c.minute_into_class}
            for c in record.concerns
        ],
        "holds": [
            {
                "id": h.id,
                "placed_at": _iso(h.placed_at),
                "released_at": _iso(h.released_at),
                "recording_id": str(h.recording_id) if h.recording_id else None,
            }
            for h in record.holds
        ],
        "recordings": [
            {
                "id": str(r.id),
                "zoom_uuid": r.zoom_uuid,
                "state": r.state,
                "started_at": _iso(r.started_at),
                "ended_at": _iso(r.ended_at),
                "on_hold": r.on_hold,
                "deleted_at": _iso(r.deleted_at),
                "delete_reason": r.delete_reason,
                "files": [
                    {
                        "id": str(f.id),
                        "file_type": f.file_type,
                        "size": f.size,
                        "sha256": f.sha256,
                        "state": f.state,
                        "verified_at": _iso(f.verified_at),
                    }
                    for f in r.files
                ],
            }
            for r in record.recordings
        ],
    }


@dataclass(frozen=True)
class Pack:
    filename: str
    data: bytes
    manifest: dict[str, Any]


README = """companion evidence pack
=======================

record.html    the class record, readable in any browser
manifest.json  the same facts as data, the SHA-256 of record.html and of every recording file
manifest.sig   Ed25519 signature (base64) over the exact bytes of manifest.json

To check it: the safeguarding lead uploads this zip on companion's "Verify an evidence pack"
page, or runs `companion evidence verify THIS.zip`. That checks the signature with the
organisation's key, the hash of record.html, and decrypts and re-hashes each recording still
held to show it is the one recorded. Without companion, check manifest.sig against the public
key in manifest.json (which must be the one the organisation publishes) and compare the
SHA-256 of record.html with the manifest.
"""


def build_pack(
    session: Session,
    actor: User,
    course_id: int,
    class_id: int,
    *,
    now: dt.datetime,
) -> Pack:
    """The lead's signed export of one class record; recorded on the audit trail."""
    if actor.role != LEAD:
        raise Forbidden("Only the safeguarding lead exports evidence packs.")
    record = services.class_record(session, actor, course_id, class_id, now=now)
    org = session.get(Organisation, record.course.organisation_id)
    assert org is not None
    keys = signing.keys_for()
    key_id = keys.current_id
    key = keys.private_key(org.id)
    public = signing.raw_public(key)
    signing.note_use(session, org.id, key_id, public)
    html = render_template(
        "evidence/pack.html",
        record=record,
        organisation=org,
        generated_at=now,
        generated_by=actor,
        key_id=key_id,
        labels=EVENT_LABELS,
        state_labels=FILE_STATE_LABELS,
        human_size=human_size,
    ).encode("utf-8")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "organisation": {"id": org.id, "name": org.name},
        "generated_at": _iso(now),
        "generated_by": {"id": actor.id, "name": actor.name, "email": actor.email},
        "record_html": {
            "name": "record.html",
            "size": len(html),
            "sha256": hashlib.sha256(html).hexdigest(),
        },
        **_manifest_facts(record),
        "signature": {
            "algorithm": "Ed25519",
            "key_id": key_id,
            "public_key": base64.b64encode(public).decode("ascii"),
        },
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    signature = base64.b64encode(key.sign(manifest_bytes))
    local = local_time(record.course, record.cls.starts_at)
    filename = f"evidence-class-{record.cls.id}-{local:%Y%m%d-%H%M}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        stamp = now.astimezone(dt.UTC).timetuple()[:6]
        for name, data in (
            ("record.html", html),
            ("manifest.json", manifest_bytes),
            ("manifest.sig", signature + b"\n"),
            ("README.txt", README.encode("utf-8")),
        ):
            zf.writestr(zipfile.ZipInfo(name, date_time=stamp), data)
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    session.add(
        EvidencePack(
            organisation_id=org.id,
            class_session_id=record.cls.id,
            created_by_id=actor.id,
            created_at=now,
            key_id=key_id,
            manifest_sha256=manifest_sha,
            filename=filename,
        )
    )
    session.flush()
    audit(
        session,
        "evidence.pack_exported",
        actor=actor,
        subject=("class_session", record.cls.id),
        course_id=record.course.id,
        manifest_sha256=manifest_sha,
        key_id=key_id,
        recording_files=[f["id"] for r in manifest["recordings"] for f in r["files"]],
    )
    return Pack(filename, buffer.getvalue(), manifest)


# --- verifying a pack ------------------------------------------------------------------------


@dataclass
class FileCheck:
    file_id: str
    file_type: str
    size: int | None
    sha256: str | None
    # unchanged | changed | deleted | missing | not_stored | unreadable; "" until re-hashed
    outcome: str
    message: str


@dataclass(frozen=True)
class StoredCopy:
    """What re-hashing a stored file needs, read from its row: no session is held while the
    blob is read (the store may be across the network)."""

    file_id: uuid.UUID
    recording_id: uuid.UUID
    kek_id: str
    wrapped_dek: bytes
    blob_key: str


@dataclass
class Verification:
    signature_ok: bool = False
    record_ok: bool = False
    key_id: str = ""
    problems: list[str] = field(default_factory=list)
    files: list[FileCheck] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    # Files still to re-hash (by rehash_stored, with no transaction open), with their copies.
    to_rehash: list[tuple[FileCheck, StoredCopy]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """The pack is as signed and no recording it names has changed (once re-hashed)."""
        return (
            self.signature_ok
            and self.record_ok
            and not self.to_rehash
            and not any(f.outcome in ("changed", "unreadable", "missing") for f in self.files)
        )

    @property
    def summary(self) -> str:
        if not self.signature_ok:
            return "NOT VALID: the signature does not match; the pack was altered or not ours."
        if not self.record_ok:
            return "NOT VALID: record.html is not the one signed."
        if not self.valid:
            return "NOT VALID: a recording no longer matches the pack."
        deleted = sum(1 for f in self.files if f.outcome == "deleted")
        note = f" ({deleted} recording file(s) since deleted by retention)" if deleted else ""
        return f"Valid: signed by the organisation's key, record and recordings unchanged{note}."


def _read_pack(data: bytes) -> tuple[bytes, bytes, bytes]:
    if len(data) > MAX_PACK_BYTES:
        raise ValidationError("That file is far too large to be an evidence pack.", field="pack")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            needed = {"manifest.json", "manifest.sig", "record.html"}
            if not needed <= names:
                raise ValidationError(
                    "That zip is not an evidence pack (it lacks "
                    + ", ".join(sorted(needed - names))
                    + ").",
                    field="pack",
                )
            for name in needed:
                if zf.getinfo(name).file_size > MAX_PACK_BYTES:
                    raise ValidationError("That evidence pack is far too large.", field="pack")
            return zf.read("manifest.json"), zf.read("manifest.sig"), zf.read("record.html")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, EOFError, OSError):
        raise ValidationError(
            "That file is not a zip (not an evidence pack).", field="pack"
        ) from None


def _rehash(app: Flask, copy: StoredCopy) -> tuple[int, str]:
    dek = vault.unwrap(app, copy.kek_id, copy.file_id, copy.wrapped_dek)
    reader = vault.storage_for(app).open_reader(copy.blob_key)
    try:
        digest = crypto.digest_stream(reader, dek, copy.file_id, copy.recording_id)
    finally:
        reader.close()
    return digest.size, digest.sha256


def _check_file(session: Session, item: dict[str, Any]) -> tuple[FileCheck, StoredCopy | None]:
    """What the database says of a file the pack names; with the copy to re-hash, if any."""
    file_id = str(item.get("id", ""))
    check = FileCheck(
        file_id=file_id,
        file_type=str(item.get("file_type", "")),
        size=item.get("size") if isinstance(item.get("size"), int) else None,
        sha256=item.get("sha256") if isinstance(item.get("sha256"), str) else None,
        outcome="",
        message="",
    )
    try:
        row = session.get(RecordingFile, uuid.UUID(file_id))
    except ValueError:
        row = None
    if row is None:
        check.outcome, check.message = "missing", "No such recording file is known to companion."
        return check, None
    recording = row.recording
    if (
        row.state == FileState.DELETED
        or row.wrapped_dek is None
        or recording.state != RecordingState.ACTIVE
    ):
        when = row.deleted_at or recording.deleted_at
        check.outcome = "deleted"
        check.message = (
            "Deleted by retention"
            + (f" on {when:%Y-%m-%d}" if when else "")
            + (f" ({recording.delete_reason})" if recording.delete_reason else "")
            + "; it can no longer be re-hashed. Its SHA-256 when the pack was made is above."
        )
        if row.sha256 and check.sha256 and row.sha256 != check.sha256:
            check.outcome = "changed"
            check.message = "Deleted, and the hash companion kept differs from the pack's."
        return check, None
    if not row.readable:
        check.outcome = "not_stored"
        check.message = f"Not stored yet ({FILE_STATE_LABELS.get(row.state, row.state)})."
        return check, None
    assert row.kek_id is not None and row.wrapped_dek is not None and row.blob_key is not None
    copy = StoredCopy(row.id, row.recording_id, row.kek_id, bytes(row.wrapped_dek), row.blob_key)
    return check, copy


def rehash_stored(app: Flask, result: Verification) -> None:
    """Decrypt and re-hash each stored file the pack names. Call it with no transaction open:
    it reads every blob from the store."""
    for check, copy in result.to_rehash:
        try:
            size, sha256 = _rehash(app, copy)
        except crypto.CorruptedOrTampered:
            check.outcome = "changed"
            check.message = "The stored file is corrupted or tampered with (it does not decrypt)."
            continue
        except Exception as exc:  # a missing blob, a key not configured: say so, do not crash
            check.outcome = "unreadable"
            check.message = f"The stored file could not be read: {exc}"
            continue
        if sha256 == check.sha256 and size == check.size:
            check.outcome = "unchanged"
            check.message = "Decrypted and re-hashed now: the same SHA-256 and size as in the pack."
        else:
            check.outcome = "changed"
            check.message = (
                f"Decrypted and re-hashed now: SHA-256 {sha256}, {size} bytes; NOT what the pack "
                "says."
            )
    result.to_rehash = []


def verify_pack(
    session: Session,
    app: Flask,
    data: bytes,
    *,
    organisation_id: int | None = None,
) -> Verification:
    """Check a pack's signature and record, and what the database says of the recordings it
    names; the stored copies are re-hashed by :func:`rehash_stored`, after the transaction.

    ``organisation_id`` (the lead's) refuses a pack of another organisation.
    """
    manifest_bytes, sig_text, html = _read_pack(data)
    result = Verification()
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        org_id = int(manifest["organisation"]["id"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValidationError("The pack's manifest is not readable.", field="pack") from None
    if not isinstance(manifest, dict):
        raise ValidationError("The pack's manifest is not readable.", field="pack")
    if organisation_id is not None and org_id != organisation_id:
        raise ValidationError("That evidence pack is not of your organisation.", field="pack")
    result.manifest = manifest
    signed_by = str((manifest.get("signature") or {}).get("key_id", ""))
    public = signing.public_key_for(session, signing.keys_for(app), org_id, signed_by)
    result.key_id = signed_by
    if public is None:
        result.problems.append(
            f"The pack names signing key {signed_by!r}, which companion does not know for this "
            "organisation: it was not signed by companion, or not by this organisation's key."
        )
    else:
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(
                base64.b64decode(sig_text.strip(), validate=True), manifest_bytes
            )
            result.signature_ok = True
        except (InvalidSignature, ValueError):
            result.problems.append(
                f"The signature does not match the manifest with the organisation's key "
                f"{signed_by} (the pack was changed after it was signed)."
            )
    declared = (manifest.get("record_html") or {}).get("sha256")
    result.record_ok = hashlib.sha256(html).hexdigest() == declared
    if not result.record_ok:
        result.problems.append("record.html is not the one the manifest names (it was changed).")
    for recording in manifest.get("recordings") or []:
        for item in (recording or {}).get("files") or []:
            if isinstance(item, dict):
                check, copy = _check_file(session, item)
                result.files.append(check)
                if copy is not None:
                    result.to_rehash.append((check, copy))
    return result


def record_verification(session: Session, actor: User | None, result: Verification) -> None:
    audit(
        session,
        "evidence.pack_verified",
        actor=actor,
        actor_label=None if actor else "command line",
        organisation_id=(result.manifest.get("organisation") or {}).get("id"),
        subject=("class_session", (result.manifest.get("class") or {}).get("id")),
        valid=result.valid,
        signature_ok=result.signature_ok,
        record_ok=result.record_ok,
        files={f.file_id: f.outcome for f in result.files},
    )
