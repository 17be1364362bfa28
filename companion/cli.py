"""The `companion` command."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask

from .config import ConfigError


def _app() -> Flask:
    from . import create_app

    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"companion cannot start: {exc}", err=True)
        sys.exit(2)


class CompanionGroup(click.Group):
    """Turns a database that is missing, unreachable or not migrated into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError) as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc).splitlines()[0]
            click.echo(
                f"companion: the database is not ready ({reason}). Check "
                "COMPANION_DATABASE_URL and run `companion db upgrade`.",
                err=True,
            )
            sys.exit(2)


@click.group(
    cls=CompanionGroup,
    help="companion: safe-by-default online classes for children over Zoom.",
)
def main() -> None:
    pass


@main.command("init")
@click.option("--instance", type=click.Path(path_type=Path), default=None)
def init_command(instance: Path | None) -> None:
    """Create the instance folder, a config file with a fresh secret key, and a key file for
    each kind of key that is not configured yet (never replacing one)."""
    from . import ROOT

    folder = (
        instance
        or Path(__import__("os").environ.get("COMPANION_INSTANCE_PATH") or ROOT / "instance")
    ).resolve()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "companion.toml"
    existed = path.exists()
    if existed:
        click.echo(f"{path.name} exists; leaving it as it is.")
    else:
        path.write_text(
            "# companion instance settings; environment variables COMPANION_* override these.\n"
            f'secret_key = "{secrets.token_urlsafe(48)}"\n',
            encoding="utf-8",
        )
        path.chmod(0o600)
        click.echo(f"Wrote {path.name} with a new secret key.")
    from .recordings.keyfile import ensure_instance_key

    key_file = ensure_instance_key(folder, path, __import__("os").environ)
    if key_file is not None:
        click.echo(
            f"Wrote {key_file.name} with a new recordings key (back it up) and set kek_file."
        )
    from .keysets import ensure_instance_keys

    for line in ensure_instance_keys(
        folder, path, __import__("os").environ, existing_instance=existed
    ):
        click.echo(line)
    from .backup.keys import ensure_instance_key as ensure_backup_key

    done = ensure_backup_key(folder, path, __import__("os").environ)
    if done:
        click.echo(done)


@main.command("secret")
def secret_command() -> None:
    """Print a new random secret key."""
    click.echo(secrets.token_urlsafe(48))


@main.command("serve")
@click.option("--host", default=None, help="Default: COMPANION_HOST.")
@click.option("--port", type=int, default=None, help="Default: COMPANION_PORT.")
@click.option("--threads", type=int, default=8, help="Threads of each process.")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Web processes. 1: one waitress process. More: gunicorn with that many worker "
    "processes (about one per core), each with --threads threads.",
)
def serve_command(host: str | None, port: int | None, threads: int, processes: int) -> None:
    """Serve the web app with a production WSGI server (waitress, or gunicorn for several
    processes)."""
    from . import serving

    if processes > 1:
        _share_metrics_between_processes()
    app = _app()
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    click.echo(
        f"companion on http://{host}:{port} (Zoom: {app.config['ZOOM_MODE']}; "
        f"{processes} process(es) of {threads} thread(s))"
    )
    if processes == 1:
        serving.prepare(app)
        serving.serve(app, host=host, port=port, threads=threads)
        return
    from .db import get_engine

    # This process only supervises; each worker builds its own app and connections, and none
    # inherits this one's (a forked database connection must not be shared).
    get_engine(app).dispose()
    serving.serve_processes(_app, host=host, port=port, processes=processes, threads=threads)


def _share_metrics_between_processes() -> None:
    """Counters of several web processes add up in one folder (prometheus_client's
    multiprocess mode), set before prometheus_client is imported. A folder given in
    PROMETHEUS_MULTIPROC_DIR (shared with the workers of this host) is used as it is."""
    import os
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import atexit
        import shutil

        folder = tempfile.mkdtemp(prefix="companion-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        master = os.getpid()

        def remove() -> None:
            # Ours alone: removed when the server stops (the counts start again with it); not
            # by a web process, which inherits this hook when forked and exits on its own.
            if os.getpid() == master:
                shutil.rmtree(folder, ignore_errors=True)

        atexit.register(remove)
    if "prometheus_client" in sys.modules:
        # It picks its kind of counter when first imported, which must be after this.
        click.echo("companion serve: metrics would count per process only", err=True)


@main.command("run")
def run_command() -> None:
    """Serve companion with everything it needs (the Zoom sandbox and worker when present)."""
    from . import runner

    app = _app()
    sys.exit(runner.main(app.config, main))


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from . import migrate

    app = _app()
    migrate.upgrade(app.config["DATABASE_URL"], revision)
    click.echo("Database is up to date.")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION."""
    from . import migrate

    app = _app()
    migrate.downgrade(app.config["DATABASE_URL"], revision)


@main.group("user")
def user_group() -> None:
    """Staff accounts."""


@user_group.command("create")
@click.argument("email")
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(["teacher", "safeguarding_lead", "admin"]))
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--organisation-id", type=int, default=None)
def user_create(
    email: str, name: str, role: str, password: str, organisation_id: int | None
) -> None:
    """Create a staff member with a password."""
    from .accounts import services
    from .db import job_session
    from .errors import CompanionError
    from .orgs import services as orgs

    app = _app()
    try:
        with job_session(app) as session:
            org = orgs.get(session, organisation_id) if organisation_id else orgs.first(session)
            if org is None:
                raise click.ClickException("There is no organisation yet; run `companion demo`.")
            user = services.create_user(
                session,
                organisation_id=org.id,
                email=email,
                name=name,
                role=role,
                password=password,
            )
            click.echo(f"Created {user.email} ({role}).")
    except CompanionError as exc:
        raise click.ClickException(exc.message) from None


@user_group.command("reset-two-factor")
@click.argument("email")
def user_reset_two_factor(email: str) -> None:
    """Clear EMAIL's two-factor sign-in (a lost phone, no other admin to reset it)."""
    from .accounts import twofactor
    from .db import job_session, utcnow
    from .errors import CompanionError

    app = _app()
    try:
        with job_session(app) as session:
            person = twofactor.reset_from_command_line(session, email, now=utcnow())
            click.echo(
                f"Two-factor sign-in of {person.email} is reset; they are signed out and set it "
                "up again at their next sign-in."
            )
    except CompanionError as exc:
        raise click.ClickException(exc.message) from None


@main.group("token")
def token_group() -> None:
    """Staff API tokens."""


@token_group.command("create")
@click.argument("email")
@click.option("--name", default="command line")
def token_create(email: str, name: str) -> None:
    """Create an API token for EMAIL and print it once."""
    from .accounts import services
    from .db import job_session
    from .errors import CompanionError

    app = _app()
    try:
        with job_session(app) as session:
            user = services.find_user_by_email(session, email)
            if user is None:
                raise click.ClickException(f"No staff account for {email}.")
            raw = services.create_token(session, user=user, name=name)
    except CompanionError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(raw)


@main.command("demo")
@click.option("--force", is_flag=True, help="Add demo data even if the database has some.")
def demo_command(force: bool) -> None:
    """Create demo data when the database is new, and print the passwords once."""
    from . import demo
    from .db import job_session

    app = _app()
    # The demo course's passcode is sealed with the app's key and its mail goes to the outbox.
    with app.app_context(), job_session(app) as session:
        created = demo.create(session, app.config, force=force)
    if not created:
        click.echo("The database already has data; no demo data added.")
        return
    click.echo("Demo data created. Sign in at " + app.config["BASE_URL"] + "/login with:")
    for person in created:
        click.echo(f"  {person['role']:<18} {person['email']:<34} {person['password']}")
    click.echo("These passwords are shown only now.")


@main.command("routes")
def routes_command() -> None:
    """List every route with who may use it."""
    from .access import rule_for

    app = _app()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        access: Any = rule_for(app, rule.endpoint)
        methods = ",".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        click.echo(f"{rule.rule:<50} {methods:<12} {access.describe() if access else 'NONE'}")


@main.group("audit")
def audit_group() -> None:
    """The audit trail."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check the hash chain; name every edited, deleted or reordered row. Exit 1 if any."""
    from .audit import services
    from .db import job_session

    app = _app()
    with job_session(app) as session:
        problems = list(services.verify(session))
        head = services.head_id(session)
    if not problems:
        click.echo(f"Audit trail intact: {head} event(s) verified.")
        return
    for p in problems:
        click.echo(f"row {p.event_id}: {p.problem}", err=True)
    click.echo(f"Audit trail BROKEN: {len(problems)} problem(s).", err=True)
    sys.exit(1)


def _storage_ready(app: Flask, who: str) -> None:
    """Stop with the reason when the recordings cannot be stored (a missing bucket, refused
    credentials): the worker would otherwise start and fail each download. One quick request
    (a few seconds at most when the store does not answer), made with no transaction open."""
    from .recordings import vault
    from .recordings.storage import StorageError

    try:
        vault.storage_for(app).check()
    except StorageError as exc:
        click.echo(f"{who}: the recordings storage is not ready: {exc.message}", err=True)
        sys.exit(2)


@main.command("worker")
@click.option("--once", is_flag=True, help="Run every job once, then exit (for cron and tests).")
@click.option("--job", "jobs", multiple=True, metavar="NAME", help="Run only this job, once.")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="With --once/--job: seconds to wait for a running worker's lease before giving up.",
)
@click.option("--poll", type=float, default=5.0, show_default=True, hidden=True)
def worker_command(once: bool, jobs: tuple[str, ...], wait: float, poll: float) -> None:
    """Run the scheduled jobs; only one worker runs them at a time, the others wait."""
    import logging

    from flask.cli import ScriptInfo

    from .worker import LeaseBusy, Worker, quiet_scheduler_logs

    # `app.test_cli_runner()` passes the app under test; a real run builds it from config.
    info = click.get_current_context().find_object(ScriptInfo)
    app = info.load_app() if info is not None else _app()
    _storage_ready(app, "companion worker")
    level = logging.getLevelName(app.config["LOG_LEVEL"].upper())
    worker = Worker(app, poll_seconds=poll)
    with quiet_scheduler_logs(level):
        if once or jobs:
            try:
                ok = worker.run_once(jobs or None, wait_seconds=wait)
            except KeyError as exc:
                raise click.BadParameter(str(exc.args[0]), param_hint="--job") from None
            except LeaseBusy as exc:
                click.echo(f"companion worker: {exc}", err=True)
                sys.exit(75)  # EX_TEMPFAIL: try again later
            for name, record in worker.status.snapshot().items():
                outcome = record["last_error"] or f"ok ({record['last_result']!r})"
                click.echo(f"{name}: {outcome}")
            sys.exit(0 if ok else 1)
        worker.run_until_signalled()


def _add_sandbox_commands() -> None:
    from .zoom.sandbox.cli import sandbox_group

    main.add_command(sandbox_group)


_add_sandbox_commands()


def _add_keys_commands() -> None:
    from .recordings.keys_cli import keys_group

    main.add_command(keys_group)


_add_keys_commands()


def _add_evidence_commands() -> None:
    from .evidence.cli import evidence_group

    main.add_command(evidence_group)


_add_evidence_commands()


def _add_storage_commands() -> None:
    from .recordings.storage_cli import storage_group

    main.add_command(storage_group)


_add_storage_commands()


def _add_backup_commands() -> None:
    from .backup.cli import backup_group

    main.add_command(backup_group)


_add_backup_commands()


if __name__ == "__main__":
    main()
