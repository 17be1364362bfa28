"""`companion backup ...` and `companion keys ... --kind backup` as an operator runs them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import own_database_url
from ..live_db import companion_command, companion_env
from .helpers import BACKUP_LINE


def _key_file(folder: Path) -> Path:
    path = folder / "backup-keys"
    path.write_text(BACKUP_LINE + "\n")
    path.chmod(0o600)
    return path


# Eleven `companion` processes, each a few seconds on a busy machine (the suite's limit is 300 s).
@pytest.mark.timeout(900)
def test_create_verify_rotate_and_restore_from_the_command_line(tmp_path: Path) -> None:
    source = own_database_url(tmp_path, "source", migrated=True)
    keys = _key_file(tmp_path)
    env = companion_env(source, tmp_path, COMPANION_BACKUP_KEYS_FILE=str(keys))
    assert companion_command(["demo"], env).returncode == 0
    path = tmp_path / "out" / "first.backup"

    made = companion_command(["backup", "create", "--output", str(path)], env)
    assert made.returncode == 0, made.stderr
    assert "recording blob(s) referenced, not copied" in made.stdout
    assert "Backup verified: first.backup" in made.stdout
    again = companion_command(["backup", "create", "--output", str(path)], env)
    assert again.returncode == 1 and "exists already; choose another name" in again.stderr

    # A new backup key: the old one is kept to read what it made, and cannot be retired yet.
    rotated = companion_command(["keys", "rotate", "--kind", "backup"], env)
    assert rotated.returncode == 0, rotated.stderr
    assert keys.read_text().count("\n") > 2 and BACKUP_LINE in keys.read_text()
    assert os.stat(keys).st_mode & 0o077 == 0
    status = companion_command(["keys", "status"], env).stdout
    assert "backup-test" in status and "1 archive(s) made" in status
    refused = companion_command(["keys", "retire", "backup-test", "--kind", "backup"], env)
    assert refused.returncode == 1 and "1 archive(s) were made with backup-test" in refused.stderr
    checked = companion_command(["backup", "verify", str(path)], env)
    assert checked.returncode == 0 and "Backup verified" in checked.stdout

    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(path.read_bytes()[:-1])
    bad = companion_command(["backup", "verify", str(damaged)], env)
    assert bad.returncode == 1
    assert "Backup NOT verified" in bad.stderr and "is truncated or was changed" in bad.stderr

    target = own_database_url(tmp_path, "target")
    target_env = {**env, "COMPANION_DATABASE_URL": target}
    restored = companion_command(["backup", "restore", str(path)], target_env)
    assert restored.returncode == 0, restored.stderr
    assert "Restored" in restored.stdout and "Traceback" not in restored.stderr
    trail = companion_command(["audit", "verify"], target_env)
    assert trail.returncode == 0 and "Audit trail intact" in trail.stdout
    twice = companion_command(["backup", "restore", str(path)], target_env)
    assert twice.returncode == 1
    assert "the database is not empty" in twice.stderr
    assert "(the database was not changed)" in twice.stderr


def test_without_a_backup_key_the_commands_say_how_to_make_one(tmp_path: Path) -> None:
    env = companion_env(own_database_url(tmp_path, "source", migrated=True), tmp_path)
    result = companion_command(["backup", "create", "--output", str(tmp_path / "x")], env)
    assert result.returncode == 1
    assert "no usable backup key" in result.stderr
    assert "companion keys generate --kind backup" in result.stderr
    assert not (tmp_path / "x").exists()


def test_init_gives_an_instance_a_backup_key_of_its_own_once(tmp_path: Path) -> None:
    import tomllib

    folder = tmp_path / "instance"
    env = companion_env(f"sqlite:///{tmp_path / 'x.db'}", folder)
    for name in ("COMPANION_KEK", "COMPANION_SEALING_KEYS", "COMPANION_SIGNING_KEYS"):
        env.pop(name, None)
    first = companion_command(["init"], env)
    assert "Wrote backup-keys with a new backup key" in first.stdout, first.stderr
    keys = folder / "backup-keys"
    assert os.stat(keys).st_mode & 0o077 == 0
    settings = tomllib.loads((folder / "companion.toml").read_text())
    assert settings["backup_keys_file"] == str(keys.resolve())
    line = keys.read_text()
    second = companion_command(["init"], env)
    assert "backup-keys" not in second.stdout and keys.read_text() == line
