"""Issue 14, item 2: `/readyz` checks the database, the recordings storage and the keys, each
on its own, and says which failed without telling a secret, a path or a URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from companion.recordings import vault
from companion.recordings.storage import LocalEncryptedStorage

from ..test_access_map import assert_no_secrets


def test_ready_when_everything_answers(app: Flask, client: FlaskClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json["status"] == "ready"
    assert answer.json["checks"] == {
        "database": {"ok": True},
        "storage": {"ok": True},
        "keys": {"ok": True},
    }
    assert_no_secrets(app, answer.get_data(as_text=True))


def test_a_missing_recordings_folder_is_not_ready(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    folder = tmp_path / "vault-folder"
    app.extensions[vault.STORAGE_EXTENSION] = LocalEncryptedStorage(folder)
    folder.rmdir()

    answer = client.get("/readyz")

    assert answer.status_code == 503
    assert answer.json["failed"] == ["storage"]
    assert answer.json["checks"]["storage"]["ok"] is False
    assert "recordings folder is not usable" in answer.json["checks"]["storage"]["error"]
    assert str(folder) not in answer.get_data(as_text=True)
    assert answer.json["checks"]["database"] == {"ok": True}


def test_keys_that_no_longer_load_are_named_not_shown(app: Flask, client: FlaskClient) -> None:
    broken = "not-a-key-line-but-it-looks-secret-123456"
    app.config.update(SEALING_KEYS=broken, SIGNING_KEYS=broken)

    answer = client.get("/readyz")

    assert answer.status_code == 503
    assert answer.json["failed"] == ["keys"]
    assert answer.json["checks"]["keys"] == {
        "ok": False,
        "error": "these keys do not load or do not match the database: sealing, signing",
    }
    assert broken not in answer.get_data(as_text=True)


def test_a_recordings_key_other_than_the_databases_is_not_ready(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from companion.recordings import keys

    # The database says the primary key had another check value: this key is not that one.
    primary = keys.load_keyring(app.config).primary_id
    monkeypatch.setattr(vault, "known_check_values", lambda _engine: {primary: "0" * 32})

    answer = client.get("/readyz")

    assert answer.status_code == 503
    assert answer.json["failed"] == ["keys"]
    assert answer.json["checks"]["keys"]["error"].endswith(": recordings")


def test_the_storage_is_checked_with_no_database_transaction_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object store's check is a network call: the database check's read has ended first.
    (An app of its own: the suite's app shares one never-ending test transaction.)"""
    from companion.db import get_session

    from ..conftest import make_app, own_database_url

    app = make_app(own_database_url(tmp_path, "ready", migrated=True), tmp_path)
    seen: list[bool] = []
    storage = vault.storage_for(app)
    real_check = storage.check

    def check() -> None:
        seen.append(get_session().in_transaction())
        real_check()

    monkeypatch.setattr(storage, "check", check)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200, answer.json
    assert seen == [False]
