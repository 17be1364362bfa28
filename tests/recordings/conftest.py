"""Fixtures for the vault tests: the app wired to the Zoom sandbox, a course with classes, and
a real S3 API on loopback for the object-storage backend."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from ..conftest import ci_requires
from ..factories import class_start, zoom_course
from .vault_helpers import Vault

if TYPE_CHECKING:
    from companion.recordings.s3storage import S3EncryptedStorage

    from .s3_helpers import S3Server


@pytest.fixture
def vault(app: Flask, db_session: Session, tmp_path: Path) -> Iterator[Vault]:
    v = Vault(app, db_session, tmp_path)
    yield v
    v.close()


@pytest.fixture
def course_in_zoom(vault: Vault, db_session: Session, teacher: Any) -> Any:
    """A course whose meeting exists in the sandbox, with a class yesterday and one next week."""
    start = class_start(1)
    meeting_id = vault.meeting(start + dt.timedelta(days=8))
    return zoom_course(
        db_session,
        teacher,
        meeting_id=meeting_id,
        starts=[start, start + dt.timedelta(days=7)],
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a loopback port, for the whole session (emptied after each test)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        ci_requires("moto's S3 server (moto[server], in the test extra)")
    from .s3_helpers import S3Server, isolated_aws_environment

    with pytest.MonkeyPatch.context() as patch:
        for name, value in isolated_aws_environment().items():
            patch.setenv(name, value)
        server = S3Server()
        server.start()
        try:
            yield server
        finally:
            if server.running:
                server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A new bucket; afterwards the server forgets everything (and runs again if stopped)."""
    from .s3_helpers import REGION

    name = f"companion-{secrets.token_hex(4)}"
    s3_server.admin.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    yield name
    if not s3_server.running:
        s3_server.start()
    s3_server.reset()


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str) -> S3EncryptedStorage:
    """The S3 backend on that bucket under the prefix ``recordings/``, with 5 MiB parts."""
    return s3_server.storage(s3_bucket)
