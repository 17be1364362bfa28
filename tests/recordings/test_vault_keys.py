"""Keys at start and `companion keys`: a missing, malformed or wrong KEK stops the service;
`make run`'s init creates one; rotation re-wraps every file key (resumably) without touching a
recording; an old key is retired only once nothing uses it."""

from __future__ import annotations

import base64
import datetime as dt
import stat
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import create_app, migrate
from companion.audit.models import AuditEvent
from companion.cli import main
from companion.config import SETTINGS, ConfigError
from companion.db import make_engine
from companion.recordings import crypto, keys, vault
from companion.recordings.models import KekCheck, Recording, RecordingFile

from ..conftest import SECRET, TEST_SEALING_KEYS, TEST_SIGNING_KEYS

KEY_A = "kek-a:" + base64.b64encode(bytes(range(32))).decode()
KEY_A_WRONG = "kek-a:" + base64.b64encode(bytes(range(1, 33))).decode()


def app_for(folder: Path, db_url: str, **config: Any) -> Flask:
    values = {
        "SECRET_KEY": SECRET,
        "DATABASE_URL": db_url,
        "TESTING": True,
        "SEALING_KEYS": TEST_SEALING_KEYS,
        "SIGNING_KEYS": TEST_SIGNING_KEYS,
    }
    values.update(config)
    return create_app(values, instance_path=folder, environ={})


@pytest.fixture
def scratch(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    migrate.upgrade(url)
    return url


def test_no_key_stops_the_start_with_a_clear_message(tmp_path: Path, scratch: str) -> None:
    with pytest.raises(ConfigError) as info:
        app_for(tmp_path, scratch)
    message = str(info.value)
    assert "no key-encryption key is configured" in message
    assert "companion keys generate" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("kek-a:not base64!", "not valid base64"), ("kek-a:" + "QUFB", "must be 32 bytes")],
)
def test_a_malformed_key_stops_the_start(
    tmp_path: Path, scratch: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        app_for(tmp_path, scratch, KEK=value)
    assert expected in str(info.value)
    assert "QUFB" not in str(info.value)  # never echoes key material


def test_a_wrong_key_stops_the_start(tmp_path: Path, scratch: str) -> None:
    engine = make_engine(scratch)
    ring = keys.load_keyring({"KEK": KEY_A})
    with Session(engine) as session, session.begin():
        vault.note_kek_use(session, ring)  # what the first wrapped file key records
    engine.dispose()

    assert app_for(tmp_path, scratch, KEK=KEY_A)  # the right key starts
    with pytest.raises(ConfigError) as info:
        app_for(tmp_path, scratch, KEK=KEY_A_WRONG)
    assert "'kek-a' is not the one that wrapped the stored file keys" in str(info.value)
    other = "kek-b:" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(ConfigError) as missing:
        app_for(tmp_path, scratch, KEK=other)
    assert "'kek-a', which is not configured" in str(missing.value)


def test_a_database_without_tables_yet_does_not_stop_the_start(tmp_path: Path) -> None:
    # `companion db upgrade` builds the app before the tables exist.
    app = app_for(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}", KEK=KEY_A)
    assert vault.keyring_for(app).primary_id == "kek-a"


def test_a_key_in_use_is_refused_for_new_wrapping_once_retired(
    db_session: Session, app: Flask
) -> None:
    ring = vault.keyring_for(app)
    vault.note_kek_use(db_session, ring)
    row = db_session.get(KekCheck, ring.primary_id)
    row.retired_at = dt.datetime.now(dt.UTC)
    with pytest.raises(vault.KeyNotUsable):
        vault.note_kek_use(db_session, ring)


# --- the command line ---------------------------------------------------------------------------


class Cli:
    def __init__(self, folder: Path, env: dict[str, Any]):
        self.folder = folder
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(main, list(args), env=self.env)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    def app(self) -> Flask:
        environ = {k: v for k, v in self.env.items() if v is not None}
        return create_app({"TESTING": True}, instance_path=self.folder, environ=environ)

    def key_file(self) -> Path:
        return Path(tomllib.loads((self.folder / "companion.toml").read_text())["kek_file"])


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    folder = tmp_path / "instance"
    env: dict[str, Any] = {s.env: None for s in SETTINGS}
    env["COMPANION_INSTANCE_PATH"] = str(folder)
    return Cli(folder, env)


def test_init_creates_a_private_key_file_once(cli: Cli) -> None:
    first = cli("init")
    assert "recording-keys" in first.output
    path = cli.key_file()
    assert path.parent == cli.folder.resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text not in first.output
    again = cli("init")
    assert "recording-keys" not in again.output
    assert path.read_text() == text
    assert cli.app()  # the service starts with it


def test_init_adds_a_key_to_an_existing_instance_without_one(cli: Cli) -> None:
    cli.folder.mkdir(parents=True)
    (cli.folder / "companion.toml").write_text(f'secret_key = "{SECRET}"\n')
    result = cli("init")
    assert "exists; leaving it as it is" in result.output
    assert "recording-keys" in result.output
    data = tomllib.loads((cli.folder / "companion.toml").read_text())
    assert data["secret_key"] == SECRET and data["kek_file"]


def test_init_leaves_a_configured_key_alone(cli: Cli) -> None:
    cli.env["COMPANION_KEK"] = KEY_A
    cli("init")
    assert "kek_file" not in (cli.folder / "companion.toml").read_text()


def test_generate_prints_a_usable_line(cli: Cli) -> None:
    line = cli("keys", "generate", "--id", "kek-2027").output.strip()
    assert keys.parse_kek_lines([line], "test").primary_id == "kek-2027"
    assert cli("keys", "generate", "--id", "bad id!", ok=False).exit_code == 2


def stored_files(app: Flask, n: int) -> dict[uuid.UUID, bytes]:
    """``n`` file rows with wrapped keys under the current primary; returns their file keys."""
    ring = vault.keyring_for(app)
    deks = {}
    engine = make_engine(app.config["DATABASE_URL"])
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session, session.begin():
        rec = Recording(
            zoom_meeting_id=1,
            zoom_uuid=f"rotation-{uuid.uuid4()}",
            started_at=now,
            ended_at=now,
            delete_after=now + dt.timedelta(days=30),
        )
        session.add(rec)
        session.flush()
        vault.note_kek_use(session, ring)
        for i in range(n):
            file_id = uuid.uuid4()
            dek = crypto.new_file_key()
            wrapped = ring.wrap(file_id, dek)
            session.add(
                RecordingFile(
                    id=file_id,
                    recording_id=rec.id,
                    zoom_file_id=f"z-{file_id}",
                    file_type="MP4",
                    download_url="https://zoom.us/x",
                    state="zoom_deleted",
                    kek_id=wrapped.kek_id,
                    wrapped_dek=wrapped.wrapped,
                    created_at=now + dt.timedelta(seconds=i),
                )
            )
            deks[file_id] = dek
    engine.dispose()
    return deks


def rows(app: Flask) -> dict[uuid.UUID, tuple[str, bytes]]:
    engine = make_engine(app.config["DATABASE_URL"])
    with Session(engine) as session:
        found = {
            f.id: (f.kek_id, bytes(f.wrapped_dek)) for f in session.scalars(select(RecordingFile))
        }
    engine.dispose()
    return found


def test_rotate_rewraps_every_file_key_and_retire_removes_the_old_key(cli: Cli) -> None:
    cli("init")
    cli("db", "upgrade")
    app = cli.app()
    old_id = vault.keyring_for(app).primary_id
    deks = stored_files(app, 7)
    before = rows(app)

    result = cli("keys", "rotate", "--id", "kek-next", "--batch", "3")
    assert "re-wrapped 7/7" in result.output
    lines = keys.read_kek_file(cli.key_file())
    assert [line.split(":")[0] for line in lines] == ["kek-next", old_id]

    app = cli.app()  # restarts with the new primary
    ring = vault.keyring_for(app)
    after = rows(app)
    for file_id, (kek_id, wrapped) in after.items():
        assert kek_id == "kek-next" and wrapped != before[file_id][1]
        assert ring.unwrap(kek_id, file_id, wrapped) == deks[file_id]  # same file key

    status = cli("keys", "status").output
    assert "kek-next" in status and "Every file key is wrapped under the primary key." in status

    refused = cli("keys", "retire", "kek-next", ok=False)
    assert "primary" in refused.output
    cli("keys", "retire", old_id)
    assert [line.split(":")[0] for line in keys.read_kek_file(cli.key_file())] == ["kek-next"]
    app = cli.app()  # starts without the retired key
    assert vault.keyring_for(app).ids == ("kek-next",)
    engine = make_engine(app.config["DATABASE_URL"])
    with Session(engine) as session:
        kinds = [e.kind for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert session.get(KekCheck, old_id).retired_at is not None
    engine.dispose()
    assert "keys.rotated" in kinds and "keys.retired" in kinds


def test_an_interrupted_rotation_resumes_and_retire_waits_for_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("init")
    cli("db", "upgrade")
    app = cli.app()
    old_id = vault.keyring_for(app).primary_id
    deks = stored_files(app, 5)

    real = keys.Keyring.rewrap
    calls = []

    def flaky(self: keys.Keyring, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second batch
        return real(self, *args)

    monkeypatch.setattr(keys.Keyring, "rewrap", flaky)
    interrupted = cli("keys", "rotate", "--id", "kek-next", "--batch", "2", ok=False)
    assert interrupted.exit_code != 0
    monkeypatch.setattr(keys.Keyring, "rewrap", real)
    app = cli.app()
    by_key = sorted(kek for kek, _ in rows(app).values())
    assert by_key.count("kek-next") == 2 and by_key.count(old_id) == 3  # batch 1 committed

    assert "still wrapped" in cli("keys", "retire", old_id, ok=False).output
    assert "3 file key(s) are not under the primary" in cli("keys", "status").output

    resumed = cli("keys", "rotate", "--resume")
    assert "re-wrapped 3/3" in resumed.output
    ring = vault.keyring_for(cli.app())
    assert {kek for kek, _ in rows(app).values()} == {"kek-next"}
    for file_id, (kek_id, wrapped) in rows(app).items():
        assert ring.unwrap(kek_id, file_id, wrapped) == deks[file_id]
    cli("keys", "retire", old_id)


def test_rotate_with_keys_in_the_environment_explains_the_steps(cli: Cli) -> None:
    cli.env["COMPANION_KEK"] = KEY_A
    cli("init")
    cli("db", "upgrade")
    result = cli("keys", "rotate", ok=False)
    assert "COMPANION_KEK is set" in result.output and "--resume" in result.output


def test_a_running_app_notices_a_rotated_key_file(cli: Cli) -> None:
    cli("init")
    cli("db", "upgrade")
    app = cli.app()
    deks = stored_files(app, 1)
    old = vault.keyring_for(app).primary_id
    cli("keys", "rotate", "--id", "kek-next")
    # No restart: the running process reads the changed file before its next use.
    assert vault.keyring_for(app).primary_id == "kek-next"
    ((file_id, (kek_id, wrapped)),) = rows(app).items()
    assert vault.unwrap(app, kek_id, file_id, wrapped) == deks[file_id]
    assert old in vault.keyring_for(app)
