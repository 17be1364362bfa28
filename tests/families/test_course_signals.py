"""Parents are told of a course change through companion.signals, connected by create_app: a
worker that imports only the courses' jobs tells them as a request would, and building many apps
in one process never tells them twice."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import ROOT, migrate, signals
from companion.courses.events import emit
from companion.db import job_session, make_engine
from companion.mail.models import OutboxMessage
from companion.zoom import EXTENSION_KEY

from .. import factories
from ..conftest import SECRET, TEST_KEYS, make_app, own_database_url
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")

PARENTS = [("Rana", "rana@example.net"), ("Omar", "omar@example.net")]

# What `companion worker` does: build the app with create_app, then import the job it runs.
# Nothing of the families package is imported here by hand.
WORKER = """
import json, sys
from companion import create_app

config, instance, course_id = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
app = create_app(config, instance_path=instance, environ={})

import companion.courses.jobs  # noqa: F401  (all a worker imports; it loads courses.events)
from companion.courses.events import emit
from companion.courses.models import Course
from companion.db import job_session

with app.app_context(), job_session(app) as session:
    emit("course_cancelled", session, session.get(Course, course_id))
print("emitted")
"""


@pytest.fixture
def own_database(tmp_path: Path) -> str:
    return own_database_url(tmp_path, "signals")


def test_a_worker_that_imports_only_the_course_jobs_tells_the_parents(
    own_database: str, tmp_path: Path, clock: Any
) -> None:
    engine = make_engine(own_database)
    with engine.begin() as conn:
        migrate.upgrade(own_database, connection=conn)
    engine.dispose()
    instance = tmp_path / "instance"
    setup = make_app(own_database, instance)
    sandbox = SandboxZoom(now=clock.now)
    zoom = setup.extensions[EXTENSION_KEY] = sandbox.client
    with setup.app_context(), job_session(setup) as session:
        org = factories.organisation(session)
        teacher = factories.user(session, org, role="teacher", email="teacher@example.org")
        course = factories.make_course(session, zoom, teacher)
        factories.enrol(session, zoom, teacher, course, contacts=PARENTS)
        course_id = course.id
        # What the worker needs to find: two parents holding a link, nobody told anything yet.
        assert len(factories.outbox(session, "family.link")) == 2
        assert factories.outbox(session, "family.course_cancelled") == []

    config = {
        "SECRET_KEY": SECRET,
        "DATABASE_URL": own_database,
        "TESTING": True,
        "STORAGE_DIR": str(instance / "recordings"),
        **TEST_KEYS,
    }
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(config), str(instance), str(course_id)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "emitted" in done.stdout, done.stderr[-3000:]

    with setup.app_context(), job_session(setup) as session:
        told = session.scalars(
            select(OutboxMessage.to_address)
            .where(OutboxMessage.kind == "family.course_cancelled")
            .order_by(OutboxMessage.id)
        ).all()
    assert told == ["rana@example.net", "omar@example.net"]
    setup.extensions["companion.engine"].dispose()
    sandbox.close()
    del setup
    gc.collect()


def test_building_more_apps_does_not_tell_parents_twice(
    app: Flask,
    database_url: str,
    instance_dir: Path,
    db_session: Session,
    zoom: Any,
    teacher: Any,
    course: Any,
) -> None:
    factories.enrol(db_session, zoom, teacher, course, contacts=PARENTS)
    # Other apps in the same process (the suite builds one per test; a worker builds its own).
    more = [make_app(database_url, instance_dir) for _ in range(2)]
    try:
        assert len(signals.passcode_rotated.receivers) == 1
        emit("passcode_rotated", db_session, course)
        told = [m.to_address for m in factories.outbox(db_session, "family.passcode_changed")]
        assert told == ["rana@example.net", "omar@example.net"]
    finally:
        for other in more:
            other.extensions["companion.engine"].dispose()
        # Collect them now rather than in the middle of a later test's compile() (CPython
        # 3.11.7 fails an ast.parse that a finalizer's traceback formatting re-enters).
        del more, other
        gc.collect()


def test_an_unknown_course_event_is_refused(db_session: Session, course: Any) -> None:
    with pytest.raises(ValueError, match="unknown course event"):
        emit("course_renamed", db_session, course)
