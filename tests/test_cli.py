"""The `companion` command, run as a person would, against a fresh instance folder."""

from __future__ import annotations

import re
import stat
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from flask import Flask

from companion import create_app
from companion.cli import main
from companion.config import SETTINGS

from .staff_helpers import sign_in

STRONG = "violet harbour lantern 7"


class Cli:
    """Runs `companion ...` with an environment that points at one temporary instance."""

    def __init__(self, folder: Path, env: dict[str, Any]):
        self.folder = folder
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True, **kwargs: Any) -> Result:
        result = self.runner.invoke(main, list(args), env=self.env, **kwargs)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    def app(self) -> Flask:
        environ = {k: v for k, v in self.env.items() if v is not None}
        return create_app({"TESTING": True}, instance_path=self.folder, environ=environ)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    folder = tmp_path / "instance"
    # Hermetic: settings from the surrounding environment (None unsets them) do not leak in.
    env: dict[str, Any] = {s.env: None for s in SETTINGS}
    env["COMPANION_INSTANCE_PATH"] = str(folder)
    return Cli(folder, env)


@pytest.fixture
def ready(cli: Cli) -> Cli:
    """An instance with a config file and a migrated database."""
    cli("init")
    cli("db", "upgrade")
    return cli


def test_init_writes_a_private_config_with_a_secret_once(cli: Cli) -> None:
    result = cli("init")

    path = cli.folder / "companion.toml"
    assert "Wrote companion.toml with a new secret key." in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = tomllib.loads(path.read_text())["secret_key"]
    assert len(secret) >= 32
    assert secret not in result.output

    again = cli("init")
    assert "exists; leaving it as it is" in again.output
    assert tomllib.loads(path.read_text())["secret_key"] == secret


def test_secret_prints_a_new_key(cli: Cli) -> None:
    first, second = cli("secret").output.strip(), cli("secret").output.strip()
    assert len(first) >= 32 and first != second


def test_db_upgrade_is_repeatable(cli: Cli) -> None:
    cli("init")
    assert "Database is up to date." in cli("db", "upgrade").output
    assert "Database is up to date." in cli("db", "upgrade").output
    assert (cli.folder / "companion.db").exists()


def test_demo_creates_an_organisation_and_three_staff_once(ready: Cli) -> None:
    result = ready("demo")

    out = result.output
    people = re.findall(r"^\s+(\S+)\s+(\S+@example\.org)\s+(\S+)$", out, re.M)
    assert [(role, email) for role, email, _ in people] == [
        ("admin", "admin@example.org"),
        ("teacher", "teacher@example.org"),
        ("safeguarding_lead", "lead@example.org"),
    ]
    assert "These passwords are shown only now." in out
    assert "/login" in out

    # Each printed password signs its person in.
    app = ready.app()
    for role, email, password in people:
        client = app.test_client()
        assert sign_in(client, email, password).status_code == 302, role
        if role in ("admin", "safeguarding_lead"):
            # They can see recordings: the first thing they do is set up two-factor sign-in.
            assert client.get("/").headers["Location"] == "/account/two-factor/setup", role
        else:
            assert client.get("/").status_code == 200

    again = ready("demo")
    assert "The database already has data; no demo data added." in again.output
    for _, _, password in people:
        assert password not in again.output


def test_user_create(ready: Cli) -> None:
    ready("demo")
    args = ("user", "create", "Kim@Example.org", "--name", "Kim Keys", "--role", "teacher")

    created = ready(*args, "--password", STRONG)
    assert "Created kim@example.org (teacher)." in created.output
    app = ready.app()
    assert sign_in(app.test_client(), "kim@example.org", STRONG).status_code == 302

    duplicate = ready(*args, "--password", STRONG, ok=False)
    assert duplicate.exit_code == 1
    assert "There is already a staff account for kim@example.org." in duplicate.output
    assert "Traceback" not in duplicate.output


def test_user_create_refuses_a_weak_password(ready: Cli) -> None:
    ready("demo")
    result = ready(
        "user", "create", "lee@example.org", "--name", "Lee", "--role", "admin",
        "--password", "short", ok=False,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Choose a stronger password: it must be at least 12 characters long" in result.output
    app = ready.app()
    assert sign_in(app.test_client(), "lee@example.org", "short").status_code == 401


def test_user_create_prompts_for_the_password_twice(ready: Cli) -> None:
    ready("demo")
    result = ready(
        "user", "create", "pat@example.org", "--name", "Pat", "--role", "teacher",
        input=f"{STRONG}\n{STRONG}\n",
    )  # fmt: skip
    assert "Created pat@example.org (teacher)." in result.output
    assert STRONG not in result.output


def test_user_create_refuses_an_unknown_role(ready: Cli) -> None:
    ready("demo")
    result = ready(
        "user", "create", "x@example.org", "--name", "X", "--role", "owner",
        "--password", STRONG, ok=False,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'owner' is not one of 'teacher', 'safeguarding_lead', 'admin'" in result.output


def test_user_create_needs_an_organisation(ready: Cli) -> None:
    result = ready(
        "user", "create", "x@example.org", "--name", "X", "--role", "admin",
        "--password", STRONG, ok=False,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "There is no organisation yet; run `companion demo`." in result.output


def test_token_create_prints_a_working_token(ready: Cli) -> None:
    ready("demo")

    result = ready("token", "create", "teacher@example.org", "--name", "sync script")

    raw = result.output.strip()
    assert raw.startswith("cmp_") and "\n" not in raw
    client = ready.app().test_client()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 200
    assert me.json["email"] == "teacher@example.org"
    assert me.json["role"] == "teacher"


def test_token_create_for_an_unknown_email(ready: Cli) -> None:
    result = ready("token", "create", "ghost@example.org", ok=False)
    assert result.exit_code == 1
    assert "No staff account for ghost@example.org." in result.output


def test_routes_lists_every_route_with_its_rule(ready: Cli) -> None:
    out = ready("routes").output
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "staff:" in lines["/api/v1/me"]
    assert lines["/login"].split()[-1] == "public"
    assert lines["/healthz"].split()[-1] == "public"
    assert "staff:admin" in lines["/staff"]
    assert "NONE" not in out
    app = ready.app()
    assert set(lines) == {rule.rule for rule in app.url_map.iter_rules()}


def test_missing_secret_is_explained(cli: Cli) -> None:
    result = cli("db", "upgrade", ok=False)
    assert result.exit_code == 2
    assert "COMPANION_SECRET_KEY is required" in result.stderr
    assert "Traceback" not in result.output


def test_demo_course_waits_for_zoom_with_its_families(ready: Cli) -> None:
    """The demo never calls Zoom: its course is "pending in Zoom" until the worker creates it."""
    from companion.courses.models import Course
    from companion.db import job_session
    from companion.families.models import Family

    ready("demo")
    app = ready.app()
    with job_session(app) as session:
        course = session.query(Course).one()
        families = session.query(Family).order_by(Family.id).all()
        assert course.zoom_state == "pending" and course.zoom_work == "create"
        assert course.teacher.email == "teacher@example.org"
        assert len(course.classes) == 8
        local = [c.starts_at.astimezone(ZoneInfo(course.timezone)) for c in course.classes]
        assert {t.strftime("%a %H:%M") for t in local} == {"Mon 17:00", "Thu 17:00"}
        assert [(f.child_first_name, f.zoom_state) for f in families] == [
            ("Amira", "pending"),
            ("Tom", "pending"),
        ]
        assert sum(len(f.contacts) for f in families) == 3
