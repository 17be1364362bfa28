"""One key per purpose (companion.sealing, README "Keys"): values sealed for one purpose open for
no other, the session secret can be rotated without touching anything stored, a data-sealing
key can be rotated with old values still read and then moved, values sealed the old way (under
SECRET_KEY) stay readable until resealed, and missing or wrong keys stop the start."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from companion import create_app, keysets, sealing
from companion.accounts import twofactor
from companion.accounts.models import User
from companion.accounts.twofactor_models import RecoveryCode
from companion.cli import main
from companion.config import ConfigError
from companion.courses.models import Course
from companion.db import Clock, make_engine, utcnow
from companion.families.models import Family
from companion.sealing import Purpose, Sealer

from . import factories
from .conftest import (
    SECRET,
    TEST_KEK,
    TEST_KEYS,
    TEST_SEALING_KEYS,
    TEST_SIGNING_KEYS,
    make_app,
    own_database_url,
)
from .keys_helpers import foreign_sealer, suite_sealer
from .staff_helpers import COOKIE, csrf_of, sign_in
from .twofactor_helpers import NO_TWO_FACTOR, code_now

OTHER_SECRET = "a-new-session-secret-after-a-leak-0123456789abcdef"
NEW_SEALING = keysets.generate_line(keysets.SEALING, "seal-new")
_seq = itertools.count(1)
SEALED = [p for p in Purpose if p is not Purpose.RECOVERY_CODE]


def sealer(*lines: str, legacy: str = "") -> Sealer:
    return Sealer(keysets.parse_lines(keysets.SEALING, lines, "a test"), legacy)


def legacy_token(secret: str, purpose: Purpose, value: str) -> str:
    """A value as versions before keys were separated sealed it: Fernet under HKDF(SECRET_KEY)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.legacy_label).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key)).encrypt(value.encode()).decode("ascii")


# --- the format ------------------------------------------------------------------------------


def test_a_sealed_value_names_its_key_and_shows_nothing_of_the_value() -> None:
    ring = sealer(NEW_SEALING)
    first = ring.seal(Purpose.JOIN_LINK, "https://zoom.example/w/1?tk=secret")
    second = ring.seal(Purpose.JOIN_LINK, "https://zoom.example/w/1?tk=secret")
    assert first.startswith("sv1:seal-new:") and sealing.key_id_of(first) == "seal-new"
    assert "zoom.example" not in first and "secret" not in first
    assert first != second  # a fresh nonce every time
    assert ring.unseal(Purpose.JOIN_LINK, first) == "https://zoom.example/w/1?tk=secret"


@pytest.mark.parametrize(
    ("sealed_as", "opened_as"),
    [
        (a, b)
        for a in Purpose
        for b in Purpose
        if a is not b and Purpose.RECOVERY_CODE not in (a, b)
    ],
)
def test_a_value_sealed_for_one_purpose_does_not_open_as_another(
    sealed_as: Purpose, opened_as: Purpose
) -> None:
    ring = sealer(NEW_SEALING)
    token = ring.seal(sealed_as, "483920")
    with pytest.raises(sealing.Unreadable):
        ring.unseal(opened_as, token)
    assert ring.unseal(sealed_as, token) == "483920"


def test_a_changed_value_or_a_swapped_key_id_does_not_open() -> None:
    other = keysets.generate_line(keysets.SEALING, "seal-other")
    ring = sealer(NEW_SEALING, other)
    token = ring.seal(Purpose.COURSE_PASSCODE, "483920")
    body = token.rsplit(":", 1)[1]
    flipped = token[: -len(body)] + body[:5] + ("A" if body[5] != "A" else "B") + body[6:]
    for bad in (
        flipped,
        token.replace("sv1:seal-new:", "sv1:seal-other:"),
        token.replace("sv1:seal-new:", "sv1:seal-gone:"),
        token[:-4],
        "sv1:seal-new:",
    ):
        with pytest.raises(sealing.Unreadable):
            ring.unseal(Purpose.COURSE_PASSCODE, bad)


def test_older_keys_open_what_they_sealed_and_only_the_first_seals() -> None:
    old = suite_sealer()
    token = old.seal(Purpose.TOTP_SEED, "JBSWY3DPEHPK3PXP")
    rotated = sealer(NEW_SEALING, TEST_SEALING_KEYS)
    assert rotated.unseal(Purpose.TOTP_SEED, token) == "JBSWY3DPEHPK3PXP"
    fresh = rotated.seal(Purpose.TOTP_SEED, "JBSWY3DPEHPK3PXP")
    assert sealing.key_id_of(fresh) == "seal-new"
    moved = rotated.reseal(Purpose.TOTP_SEED, token)
    assert (
        sealing.key_id_of(moved) == "seal-new" and rotated.reseal(Purpose.TOTP_SEED, moved) == moved
    )
    with pytest.raises(sealing.Unreadable, match="'seal-new' is not configured"):
        old.unseal(Purpose.TOTP_SEED, fresh)


def test_values_sealed_the_old_way_open_only_with_the_legacy_secret() -> None:
    token = legacy_token(SECRET, Purpose.JOIN_LINK, "https://zoom.example/w/9")
    assert sealing.key_id_of(token) is None
    with pytest.raises(sealing.Unreadable, match="LEGACY_SECRET_KEY is not set"):
        sealer(NEW_SEALING).unseal(Purpose.JOIN_LINK, token)
    with pytest.raises(sealing.Unreadable, match="not the secret that sealed it"):
        sealer(NEW_SEALING, legacy=OTHER_SECRET).unseal(Purpose.JOIN_LINK, token)
    ring = sealer(NEW_SEALING, legacy=SECRET)
    assert ring.unseal(Purpose.JOIN_LINK, token) == "https://zoom.example/w/9"
    with pytest.raises(sealing.Unreadable):  # the old labels kept purposes apart too
        ring.unseal(Purpose.COURSE_PASSCODE, token)
    moved = ring.reseal(Purpose.JOIN_LINK, token)
    assert sealing.key_id_of(moved) == "seal-new"
    assert sealer(NEW_SEALING).unseal(Purpose.JOIN_LINK, moved) == "https://zoom.example/w/9"


def test_recovery_code_hashes_name_their_key_and_are_found_after_a_rotation() -> None:
    old = suite_sealer()
    key_id, digest = old.keyed_hash(Purpose.RECOVERY_CODE, "abcdefghjkmnpqrs")
    assert key_id == "seal-test" and "abcdefghjkmnpqrs" not in digest
    rotated = sealer(NEW_SEALING, TEST_SEALING_KEYS, legacy=SECRET)
    candidates = rotated.keyed_hashes(Purpose.RECOVERY_CODE, "abcdefghjkmnpqrs")
    assert ("seal-test", digest) in candidates
    assert [k for k, _ in candidates] == ["seal-new", "seal-test", None]
    assert foreign_sealer().keyed_hash(Purpose.RECOVERY_CODE, "abcdefghjkmnpqrs")[1] != digest


# --- configuration ---------------------------------------------------------------------------


def production_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "COMPANION_SECRET_KEY": SECRET,
        "COMPANION_KEK": TEST_KEK,
        "COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "COMPANION_BASE_URL": "https://classes.example.org",
        **extra,
    }


def problems(info: pytest.ExceptionInfo[ConfigError]) -> str:
    return "\n".join(info.value.problems)


def test_missing_keys_stop_the_start_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path, environ=production_environ(tmp_path))
    text = problems(info)
    assert len(info.value.problems) == 2
    assert (
        "no data-sealing key is configured: set COMPANION_SEALING_KEYS or "
        "COMPANION_SEALING_KEYS_FILE" in text
    )
    assert (
        "no evidence-pack signing key is configured: set COMPANION_SIGNING_KEYS or "
        "COMPANION_SIGNING_KEYS_FILE" in text
    )
    assert "`companion init`" in text and "companion keys generate --kind sealing" in text


def test_malformed_keys_are_named_without_showing_them(tmp_path: Path) -> None:
    short = base64.b64encode(b"sixteen-bytes-ok").decode()
    environ = production_environ(
        tmp_path,
        COMPANION_SEALING_KEYS="seal-a:not*base64!,no-colon-here",
        COMPANION_SIGNING_KEYS=f"sign-a:{short}",
        COMPANION_LEGACY_SECRET_KEY="too-short",
    )
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path, environ=environ)
    text = problems(info)
    assert "COMPANION_LEGACY_SECRET_KEY must be at least 32 characters" in text
    with pytest.raises(ConfigError) as info:
        create_app(
            instance_path=tmp_path,
            environ={k: v for k, v in environ.items() if "LEGACY" not in k},
        )
    text = problems(info)
    assert "COMPANION_SEALING_KEYS entry 1 ('seal-a'): the key is not valid base64" in text
    assert "COMPANION_SEALING_KEYS entry 2 is not of the form key_id:base64key" in text
    assert "COMPANION_SIGNING_KEYS entry 1 ('sign-a'): the key must be 32 bytes, it is 16" in text
    assert short not in text and "not*base64" not in text


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sealing-keys"
    keysets.write_key_file(keysets.SEALING, path, [NEW_SEALING])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    os.chmod(path, 0o644)
    environ = production_environ(
        tmp_path,
        COMPANION_SEALING_KEYS_FILE=str(path),
        COMPANION_SIGNING_KEYS=TEST_SIGNING_KEYS,
    )
    with pytest.raises(ConfigError, match=f"chmod 600 {path}"):
        create_app(instance_path=tmp_path, environ=environ)
    os.chmod(path, 0o600)
    app = create_app(instance_path=tmp_path, environ=environ)
    assert sealing.sealer_for(app).current_id == "seal-new"


@pytest.fixture
def own_db(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = own_database_url(tmp_path, "keys", migrated=True)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


def test_stored_values_that_would_not_open_stop_the_start(
    tmp_path: Path, own_db: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, engine = own_db
    with Session(engine) as session, session.begin():
        org = factories.organisation(session)
        admin = factories.user(session, org, role="admin")  # its seed is under seal-test
        person = factories.user(session, org, role="admin", **NO_TWO_FACTOR)
        person.totp_secret_encrypted = legacy_token(SECRET, Purpose.TOTP_SEED, "JBSWY3DP")
        admin_id = admin.id

    def start(**keys: str) -> Flask:
        return make_app(url, tmp_path, **{**TEST_KEYS, **keys})

    with pytest.raises(ConfigError) as info:
        start(SEALING_KEYS=NEW_SEALING)
    text = problems(info)
    assert (
        "1 totp-seed value(s) in users are sealed under data-sealing key 'seal-test', which is "
        "not configured" in text
    )
    assert "were sealed with the session secret by an earlier version: set " in text
    assert "COMPANION_LEGACY_SECRET_KEY" in text and "`companion keys reseal`" in text

    impostor = "seal-test:" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(ConfigError) as info:
        start(SEALING_KEYS=impostor, LEGACY_SECRET_KEY=OTHER_SECRET)
    text = problems(info)
    assert "the configured data-sealing key 'seal-test' does not open" in text
    assert "COMPANION_LEGACY_SECRET_KEY does not open the 1 totp-seed value(s)" in text

    # The right keys: it starts, and `companion keys reseal` moves the old value.
    app = start(LEGACY_SECRET_KEY=SECRET)
    monkeypatch.setattr("companion.cli._app", lambda: app)
    result = CliRunner().invoke(main, ["keys", "reseal"])
    assert result.exit_code == 0, result.output
    assert "Resealed 1 value(s) under the current sealing key (totp-seed: 1)." in result.output
    with Session(engine) as session:
        tokens = session.scalars(select(User.totp_secret_encrypted).where(User.id != admin_id))
        assert [sealing.key_id_of(t or "") for t in tokens] == ["seal-test"]
    # Nothing needs the legacy secret any more.
    assert start()


# --- rotating ---------------------------------------------------------------------------------


def sealed_rows(db: Session, teacher: User, ring: Sealer) -> tuple[Course, Family]:
    """A course with a passcode and a family with a join link, sealed by ``ring``."""
    n = next(_seq)
    course = Course(
        organisation_id=teacher.organisation_id,
        teacher_id=teacher.id,
        title=f"Keys club {n}",
        timezone="Europe/London",
        first_date=dt.date(2031, 1, 6),
        weekdays="0",
        start_time=dt.time(17),
        duration_minutes=45,
        class_count=4,
        zoom_user_id="me",
        companion_ref=secrets.token_hex(8),
        passcode_encrypted=ring.seal(Purpose.COURSE_PASSCODE, "483920"),
        passcode_set_at=utcnow(),
    )
    db.add(course)
    db.flush()
    family = Family(
        organisation_id=course.organisation_id,
        course_id=course.id,
        child_first_name="Amira",
        child_last_name="K",
        zoom_ref=secrets.token_hex(8),
        zoom_state="registered",
        zoom_registrant_id=f"reg-keys-{n}",
        join_url_encrypted=ring.seal(Purpose.JOIN_LINK, f"https://zoom.example/w/{n}?tk=t"),
    )
    db.add(family)
    db.flush()
    return course, family


def enrol_lead(db: Session, org: Any) -> tuple[User, list[str]]:
    """A lead who set up two-factor in this app: a sealed seed and hashed recovery codes."""
    lead = factories.user(db, org, role="safeguarding_lead", **NO_TWO_FACTOR)
    seed = twofactor.begin_enrolment(db, lead)
    codes = twofactor.confirm_enrolment(db, lead, code_now(seed), now=utcnow())
    db.commit()
    return lead, codes


def next_step(clock: Clock) -> None:
    """Codes are single-use: the next sign-in takes the next 30-second step's code."""
    clock.advance(seconds=30)


def signed_in(client: FlaskClient) -> bool:
    return client.get("/account/two-factor").status_code == 200


def recovery_sign_in(client: FlaskClient, email: str, code: str) -> Any:
    response = client.post(
        "/login",
        data={
            "email": email,
            "password": factories.PASSWORD,
            "csrf_token": csrf_of(client, "/login"),
        },
    )
    page = response.headers["Location"]
    assert page.startswith("/login/code")
    return client.post(page, data={"code": code, "csrf_token": csrf_of(client, page)})


def test_rotating_the_session_secret_keeps_two_factor_passcodes_and_join_links(
    app: Flask, app_with: Any, db_session: Session, org: Any, teacher: User, clock: Clock
) -> None:
    lead, codes = enrol_lead(db_session, org)
    course, family = sealed_rows(db_session, teacher, sealing.sealer_for(app))
    db_session.commit()
    next_step(clock)
    before = app.test_client()
    assert sign_in(before, lead.email).status_code == 302 and signed_in(before)
    cookie = before.get_cookie(COOKIE)
    assert cookie is not None

    rotated = app_with(SECRET_KEY=OTHER_SECRET)
    assert rotated.config["SECRET_KEY"] == OTHER_SECRET
    # Cookies signed with the old secret no longer count: everyone signs in again...
    stale = rotated.test_client()
    stale.set_cookie(COOKIE, cookie.value)
    assert not signed_in(stale)
    # ... and can: the password, then a code from the same authenticator app.
    next_step(clock)
    fresh = rotated.test_client()
    response = sign_in(fresh, lead.email)
    assert response.status_code == 302
    assert not response.headers["Location"].startswith("/login")
    assert signed_in(fresh)
    # A recovery code made before the rotation works too.
    other = rotated.test_client()
    assert recovery_sign_in(other, lead.email, codes[0]).status_code == 302
    assert signed_in(other)
    # Passcodes and join links read as before, and nothing had to be resealed.
    db_session.expire_all()
    assert sealing.unseal(Purpose.COURSE_PASSCODE, course.passcode_encrypted) == "483920"
    assert sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted).startswith(
        "https://zoom.example/w/"
    )


def test_rotating_the_sealing_key_reads_old_values_seals_new_ones_and_reseal_moves_them(
    app: Flask,
    app_with: Any,
    db_session: Session,
    org: Any,
    teacher: User,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    lead, codes = enrol_lead(db_session, org)
    course, family = sealed_rows(db_session, teacher, sealing.sealer_for(app))
    db_session.commit()

    # The new key goes first; the old one stays, for reading only.
    rotated = app_with(SEALING_KEYS=f"{NEW_SEALING},{TEST_SEALING_KEYS}")
    next_step(clock)
    assert sign_in(rotated.test_client(), lead.email).status_code == 302
    assert sealing.unseal(Purpose.COURSE_PASSCODE, course.passcode_encrypted) == "483920"
    newcomer = factories.user(db_session, org, role="admin", **NO_TWO_FACTOR)
    twofactor.begin_enrolment(db_session, newcomer)
    assert sealing.key_id_of(newcomer.totp_secret_encrypted or "") == "seal-new"
    assert sealing.key_id_of(lead.totp_secret_encrypted or "") == "seal-test"

    monkeypatch.setattr("companion.cli._app", lambda: rotated)
    status = CliRunner().invoke(main, ["keys", "status"])
    assert status.exit_code == 0, status.output
    assert "not under the current key: run `companion keys reseal`" in status.output
    result = CliRunner().invoke(main, ["keys", "reseal"])
    assert result.exit_code == 0, result.output
    assert "Resealed" in result.output
    db_session.expire_all()
    for token in (
        course.passcode_encrypted,
        family.join_url_encrypted,
        lead.totp_secret_encrypted or "",
    ):
        assert sealing.key_id_of(token) == "seal-new"
    status = CliRunner().invoke(main, ["keys", "status"])
    assert "Every sealed value is under the current key." in status.output

    # Recovery codes cannot be rehashed (only hashes are kept): retiring their key needs --force.
    refused = CliRunner().invoke(main, ["keys", "retire", "seal-test", "--kind", "sealing"])
    assert refused.exit_code == 1 and "recovery code(s) were made under seal-test" in refused.output
    kept = db_session.scalars(select(RecoveryCode.key_id).where(RecoveryCode.user_id == lead.id))
    assert set(kept) == {"seal-test"}

    # With the old key gone, everything sealed still opens and two-factor still works.
    only_new = app_with(SEALING_KEYS=NEW_SEALING)
    assert sealing.sealer_for(only_new).keys.ids == ("seal-new",)
    assert sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted).startswith("https://")
    next_step(clock)
    assert sign_in(only_new.test_client(), lead.email).status_code == 302


def test_rotate_writes_a_new_key_first_and_running_processes_pick_it_up(
    app_with: Any,
    db_session: Session,
    org: Any,
    teacher: User,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "sealing-keys"
    keysets.write_key_file(keysets.SEALING, path, [TEST_SEALING_KEYS])
    running = app_with(SEALING_KEYS="", SEALING_KEYS_FILE=str(path))
    course, family = sealed_rows(db_session, teacher, sealing.sealer_for(running))
    db_session.commit()

    monkeypatch.setattr("companion.cli._app", lambda: running)
    result = CliRunner().invoke(main, ["keys", "rotate", "--kind", "sealing", "--id", "seal-b"])
    assert result.exit_code == 0, result.output
    assert "New current sealing key seal-b" in result.output
    lines = keysets.read_key_file(keysets.SEALING, path)
    assert [line.split(":")[0] for line in lines] == ["seal-b", "seal-test"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # The running app noticed the file change: it seals with the new key and reads both.
    assert sealing.key_id_of(sealing.seal(Purpose.TOTP_SEED, "X")) == "seal-b"
    db_session.expire_all()
    assert sealing.key_id_of(course.passcode_encrypted) == "seal-b"
    assert sealing.unseal(Purpose.JOIN_LINK, family.join_url_encrypted).startswith("https://")

    # The old key, no longer used by any sealed value, can go (no recovery codes here).
    retired = CliRunner().invoke(main, ["keys", "retire", "seal-test", "--kind", "sealing"])
    assert retired.exit_code == 0, retired.output
    assert [line.split(":")[0] for line in keysets.read_key_file(keysets.SEALING, path)] == [
        "seal-b"
    ]


def test_init_gives_a_new_instance_its_own_keys_and_keeps_an_old_one_readable(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh"
    env = {"COMPANION_INSTANCE_PATH": str(fresh)}
    from companion.config import SETTINGS

    hermetic: dict[str, Any] = {s.env: None for s in SETTINGS}
    result = CliRunner().invoke(main, ["init"], env={**hermetic, **env})
    assert result.exit_code == 0, result.output
    assert "sealing-keys" in result.output and "signing-keys" in result.output
    text = (fresh / "companion.toml").read_text()
    assert "sealing_keys_file" in text and "signing_keys_file" in text
    assert "legacy_secret_key" not in text
    for name in ("sealing-keys", "signing-keys"):
        assert oct((fresh / name).stat().st_mode & 0o777) == "0o600"
    again = CliRunner().invoke(main, ["init"], env={**hermetic, **env})
    assert "sealing-keys" not in again.output  # never replaced

    # An instance from before keys were separated: its secret stays readable as the legacy one.
    old = tmp_path / "old"
    old.mkdir(mode=0o700)
    (old / "companion.toml").write_text(f'secret_key = "{SECRET}"\n')
    result = CliRunner().invoke(
        main, ["init"], env={**hermetic, "COMPANION_INSTANCE_PATH": str(old)}
    )
    assert result.exit_code == 0, result.output
    assert f'legacy_secret_key = "{SECRET}"' in (old / "companion.toml").read_text()
    assert "companion keys reseal" in result.output
