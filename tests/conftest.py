"""Shared fixtures: a real database migrated once, a transaction rolled back after every test.

The database is SQLite by default; set COMPANION_TEST_DATABASE_URL to a PostgreSQL URL to run the
same suite there (`make test` does both). Nothing here reaches the network beyond loopback.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2 import profiles as argon2_profiles
from flask import Flask, g, request_started
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from companion import create_app, migrate
from companion.accounts import services as accounts_services
from companion.db import Clock, make_engine
from companion.db import clock as db_clock
from companion.zoom import EXTENSION_KEY as ZOOM_EXTENSION

from . import factories, twofactor_helpers
from .servers import WsgiServer, free_port, wait_for_port
from .zoom_sandbox import SandboxZoom

SECRET = "test-secret-key-that-is-long-enough-0123456789"
# The recordings' key-encryption key of every test app (fixed: the suite's database remembers
# its check value, and a different key would rightly stop the app from starting).
TEST_KEK = "kek-test:" + "QkVLLXRlc3Qta2V5LW9mLXRoZS1zdWl0ZS0wMDAwMDA="
# The data-sealing and evidence-pack signing keys of every test app (README, "Keys"); fixed for
# the same reason: the suite's database holds values sealed and packs signed under them.
TEST_SEALING_KEYS = "seal-test:" + "U0VBTC10ZXN0LWtleS1vZi10aGUtc3VpdGUtMDAwMDA="
TEST_SIGNING_KEYS = "sign-test:" + "U0lHTi10ZXN0LWtleS1vZi10aGUtc3VpdGUtMDAwMDA="
# Every key a test app needs, as settings and as the environment of a `companion` process.
TEST_KEYS = {"KEK": TEST_KEK, "SEALING_KEYS": TEST_SEALING_KEYS, "SIGNING_KEYS": TEST_SIGNING_KEYS}
TEST_KEYS_ENV = {f"COMPANION_{name}": value for name, value in TEST_KEYS.items()}


def pytest_report_header(config: Any) -> str:
    return f"companion database: {database_kind()}"


# What a test (or a fixture it uses) must mention to reach the database under test.
_DATABASE_WORDS = (
    "database_url",
    "db_session",
    "engine",
    "make_app",
    "cached_app",
    "live_server",
    "serve(",
    "COMPANION_TEST_DATABASE_URL",
)


def _touches_database(item: pytest.Item) -> bool:
    """Whether ``item`` can reach the database under test: through a fixture of its own (read
    from each fixture's source, so a new fixture needs no list) or by name in its module."""
    module = getattr(item, "module", None)
    sources = [getattr(module, "__file__", None) and Path(module.__file__).read_text()]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info is not None else ():
        for fixture in defs:
            with contextlib.suppress(OSError, TypeError):
                sources.append(inspect.getsource(fixture.func))
    return any(word in text for text in sources if text for word in _DATABASE_WORDS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, run only the tests that can reach the database.

    `make test` runs the suite on SQLite and then on PostgreSQL; a test that never opens the
    database (the sandbox's own behaviour, the recording format, schedules, templates) answers
    the same both times, so the second pass leaves it out. A module that mentions the database
    at all keeps every test: when in doubt, a test runs twice.
    """
    if database_kind() != "postgresql":
        return
    kept, dropped = [], []
    for item in items:
        (kept if _touches_database(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def database_kind() -> str:
    url = os.environ.get("COMPANION_TEST_DATABASE_URL", "")
    return "postgresql" if url.startswith("postgres") else "sqlite"


def _guard_compile() -> None:
    """Work around CPython 3.11 before 3.11.8 failing compile() now and then with "AST
    constructor recursion depth mismatch" (python/cpython#106905).

    The AST constructor keeps its depth counter in state shared by every thread and does not
    put it back on every path, so a conversion that overlaps another one (live servers run in
    threads of this process while tests build apps, whose URL rules Werkzeug compiles) or that
    runs Python code half-way (a garbage collection's finalizers) can end with the counter off;
    it was seen in CI on collection-time imports and on app builds. So, for the whole run, from
    before the first test module is imported: one compile() at a time, with the collector
    paused, and the rare false alarm retried (the counter starts afresh on each call). Production
    compiles its templates and routes once, before serving (companion.web.warm_templates).
    """
    import builtins
    import gc
    import sys
    import threading

    if sys.version_info >= (3, 11, 8) or getattr(builtins.compile, "companion_guard", False):
        return
    real = builtins.compile
    lock = threading.RLock()

    def guarded(*args: Any, **kwargs: Any) -> Any:
        with lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                for attempt in range(3):
                    try:
                        return real(*args, **kwargs)
                    except SystemError as exc:
                        if "recursion depth mismatch" not in str(exc) or attempt == 2:
                            raise
                raise AssertionError("unreachable")
            finally:
                if collecting:
                    gc.enable()

    guarded.companion_guard = True  # type: ignore[attr-defined]
    builtins.compile = guarded


_guard_compile()

# The suite signs staff in thousands of times; with argon2's real cost (about half a second a
# check on this kind of machine) that was most of its time. The cheapest parameters, in this
# process only: a `companion` process a test starts still hashes with the real ones.
accounts_services.use_password_hasher(PasswordHasher.from_parameters(argon2_profiles.CHEAPEST))


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect anywhere but this machine."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host in ("localhost", "::1") or host.startswith("127.") or host.startswith("/")
        ):
            raise RuntimeError(f"test tried to reach {host}; only loopback is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("COMPANION_TEST_DATABASE_URL")
    if url:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            # Tests run in several processes (pytest-xdist): each has a database of its own on
            # the suite's server, as each has its own SQLite file in its own temporary folder.
            url = own_database_url(tmp_path_factory.mktemp("db"), worker)
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    if database_url.startswith("postgresql"):
        # Each run starts from an empty schema so that migrations are what is tested.
        with eng.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    with eng.begin() as conn:
        migrate.upgrade(database_url, connection=conn)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance")


class RollbackProvider:
    """Gives every request the test's session; commits inside it are savepoints."""

    def __init__(self, session: Session):
        self.session = session

    def open(self) -> Session:
        return self.session

    def close(self, session: Session) -> None:
        # Keep the test's objects usable after a request, as a second request would see them.
        pass


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    conn = engine.connect()
    trans = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        trans.rollback()
        conn.close()


class ClosingClient(FlaskClient):
    """Closes every answer that is not streamed, as a WSGI server does once it has sent it, so
    work that runs after the answer (``db.after_commit``) has run when the call returns."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        if "Content-Length" in response.headers:
            # An answer of known length: read it whole (a recording too), then close it as a
            # server would. One without a length (the CSV export) closes when the test has read it.
            response.get_data()
            response.close()
        return response


def make_app(database_url: str, instance_dir: Path, **overrides: Any) -> Flask:
    config = {
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "TESTING": True,
        "STORAGE_DIR": str(instance_dir / "recordings"),
        **TEST_KEYS,
    }
    config.update(overrides)
    application = create_app(config, instance_path=instance_dir, environ={})
    application.test_client_class = ClosingClient
    return application


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override per test (e.g. with a parametrised fixture) to change settings."""
    return {}


@dataclass
class _Cached:
    app: Flask
    config: dict[str, Any]
    extensions: dict[str, Any]
    endpoints: int


_apps: dict[str, _Cached] = {}


def cached_app(database_url: str, instance_dir: Path, **overrides: Any) -> Flask:
    """One app per configuration for the whole run (building one takes about 0.1 s), handed to
    each test as it was built: its settings and extensions put back, ready for a first request.

    A test that adds routes gets the app still (Flask allows that before a first request); the
    app is then dropped from the cache, so no later test sees those routes.
    """
    key = repr((database_url, str(instance_dir), sorted(overrides.items())))
    cached = _apps.get(key)
    if cached is None:
        application = make_app(database_url, instance_dir, **overrides)
        cached = _Cached(
            application,
            dict(application.config),
            dict(application.extensions),
            len(application.view_functions),
        )
        _apps[key] = cached
    application = cached.app
    application.config.clear()
    application.config.update(cached.config)
    application.extensions.clear()
    application.extensions.update(cached.extensions)
    application._got_first_request = False
    return application


def _release_app(application: Flask) -> None:
    for key, cached in list(_apps.items()):
        if cached.app is application and len(application.view_functions) != cached.endpoints:
            del _apps[key]


@pytest.fixture
def app(
    database_url: str, instance_dir: Path, db_session: Session, app_config: dict[str, Any]
) -> Iterator[Flask]:
    with bound_to_test(cached_app(database_url, instance_dir, **app_config), db_session) as bound:
        yield bound


@contextlib.contextmanager
def bound_to_test(application: Flask, db_session: Session) -> Iterator[Flask]:
    """Run ``application`` on the test's rolled-back session, inside its app context (the
    ``app`` fixture; a test that needs a second app, say with other keys, uses it too)."""
    application.extensions["companion.sessions"] = RollbackProvider(db_session)

    def _commit_test_setup(_sender: Any, **_extra: Any) -> None:
        # What the test built before this request counts as committed, as it would be in real
        # life; otherwise a request that fails and rolls back would undo the test's own setup.
        db_session.commit()
        # Requests share the test's app context, so give each one an empty `g` as in production
        # (otherwise e.g. one client's CSRF token or refusal mark leaks into the next).
        for name in list(g):
            g.pop(name)

    request_started.connect(_commit_test_setup, application, weak=False)
    try:
        with application.app_context():
            yield application
    finally:
        request_started.disconnect(_commit_test_setup, application)
        _release_app(application)


@pytest.fixture
def app_with(database_url: str, instance_dir: Path, db_session: Session) -> Iterator[Any]:
    """``app_with(**settings)`` builds another app on the test's database, as the same server
    restarted with other configuration (new keys, say); its app context stays pushed."""
    with contextlib.ExitStack() as stack:

        def build(**overrides: Any) -> Flask:
            application = make_app(database_url, instance_dir, **overrides)
            return stack.enter_context(bound_to_test(application, db_session))

        yield build


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The service's clock; ``clock.advance(minutes=31)`` moves every ``utcnow()`` forward."""
    saved = db_clock.offset
    try:
        yield db_clock
    finally:
        db_clock.offset = saved


@pytest.fixture
def http_sandbox(app: Flask) -> Iterator[SandboxZoom]:
    """Zoom's sandbox on a loopback port, on the real clock, with companion's client on it as the
    app's Zoom: for the tests where HTTP matters (a client giving up on a slow answer). Most tests
    use the in-process ``sandbox`` of their package's conftest."""
    zoom = SandboxZoom(http=True)
    app.extensions[ZOOM_EXTENSION] = zoom.client
    yield zoom
    zoom.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def org(db_session: Session) -> Any:
    return factories.organisation(db_session)


@pytest.fixture
def admin(db_session: Session, org: Any) -> Any:
    return factories.user(db_session, org, role="admin", email="admin@example.org")


@pytest.fixture
def teacher(db_session: Session, org: Any) -> Any:
    return factories.user(db_session, org, role="teacher", email="teacher@example.org")


@pytest.fixture
def lead(db_session: Session, org: Any) -> Any:
    return factories.user(db_session, org, role="safeguarding_lead", email="lead@example.org")


CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


class Browser:
    """A test client that signs in and fills forms like a person, CSRF token included."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def csrf(self, path: str = "/login") -> str:
        return csrf_from(self.client.get(path).get_data(as_text=True))

    def login(self, email: str, password: str = factories.PASSWORD) -> Any:
        token = self.csrf("/login")
        response = self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        # Leads and admins then enter a code from their (factory-enrolled) authenticator.
        return twofactor_helpers.finish_sign_in(self.client, response, email)

    def post(self, path: str, data: dict[str, Any] | None = None, *, form_page: str = "/") -> Any:
        payload = dict(data or {})
        payload["csrf_token"] = self.csrf(form_page)
        return self.client.post(path, data=payload)


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)


def ci_requires(what: str) -> None:
    """Skip when a local machine lacks something; in CI a missing server is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine (make test installs it)")


# --- Test infrastructure: free ports, Stoplight Prism, Chromium, a live server -------------------
# (`make test` installs Prism with npm and Chromium from Debian; see scripts/ and the Makefile.)

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    # The machine has no network; without these Chromium keeps trying to reach Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def zoom_spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zoom's OpenAPI spec (patched), kept in the repository (tests/zoom_spec/SOURCE.md)."""
    given = os.environ.get("COMPANION_TEST_ZOOM_SPEC")
    if given:
        return Path(given)
    from .zoom_spec import write_patched

    return write_patched(tmp_path_factory.mktemp("zoom-spec"))


# Prism needs about 2 s to load the 2 MB spec on this machine; allow for a slow CI machine.
PRISM_START_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def prism_url(zoom_spec_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of Stoplight Prism mocking Zoom's API (no /v2 prefix: Prism ignores it).

    Uses COMPANION_TEST_PRISM_URL when set, else starts node_modules/.bin/prism for the session.
    Requests need `Authorization: Bearer <anything>`; an invalid request comes back with an
    `sl-violations` header naming each problem.
    """
    import signal
    import subprocess

    from companion import ROOT

    given = os.environ.get("COMPANION_TEST_PRISM_URL")
    if given:
        yield given.rstrip("/")
        return
    prism = ROOT / "node_modules" / ".bin" / "prism"
    if not prism.exists():
        ci_requires("Stoplight Prism (`npm ci` installs it into node_modules)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(prism), "mock", "-h", "127.0.0.1", "-p", str(port), str(zoom_spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, timeout=PRISM_START_TIMEOUT, process=process, what="Prism")
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}\n--- prism log ---\n{tail}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (Playwright's own browser download is never used)."""
    import shutil

    path = os.environ.get("COMPANION_TEST_CHROMIUM") or shutil.which("chromium")
    if not path and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if not path:
        ci_requires("Debian chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        ci_requires("Playwright for Python")
    return str(path)


@pytest.fixture(scope="session")
def chromium_launch_options(chromium_path: str) -> dict[str, Any]:
    """Keyword arguments for `playwright.chromium.launch(**chromium_launch_options)`."""
    return {"executable_path": chromium_path, "headless": True, "args": list(CHROMIUM_ARGS)}


class LiveServer(str):
    """The base URL of a running companion (it is a str), plus what tests need to use it.

    ``app`` is the served Flask app, ``database_url`` its database, ``passwords`` maps each demo
    account's email (admin@, teacher@, lead@example.org) to its password (``factories.PASSWORD``).

    The admin and the lead have two-factor sign-in on with a known seed: after the password, the
    browser is on the code page; fill the field labelled "Code from your app, or a recovery
    code" with ``live_server.totp_code(email)`` (a fresh, not yet used code each call).
    """

    app: Flask
    database_url: str
    passwords: dict[str, str]

    def totp_code(self, email: str) -> str:
        return twofactor_helpers.fresh_code(self.app, email)


def own_database_url(folder: Path, name: str = "live", *, migrated: bool = False) -> str:
    """A fresh database of its own, for tests that need real commits from several connections:
    a SQLite file in ``folder``, or a new database on the suite's PostgreSQL server (left for
    the throwaway server to take away). ``migrated`` applies companion's migrations to it."""
    import secrets

    from sqlalchemy.engine import make_url

    suite_url = os.environ.get("COMPANION_TEST_DATABASE_URL", "")
    if not suite_url.startswith("postgres"):
        url = f"sqlite:///{folder / (name + '.db')}"
    else:
        base = make_url(suite_url).set(drivername="postgresql+psycopg")
        # A name of its own per call: several fixtures (the session-wide live server among
        # them) hold such a database at once, and a shared name would be dropped under another.
        database = f"{base.database}_{name}_{secrets.token_hex(4)}"
        admin = make_engine(base.render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        url = base.set(database=database).render_as_string(hide_password=False)
    if migrated:
        engine = make_engine(url)
        with engine.begin() as conn:
            migrate.upgrade(url, connection=conn)
        engine.dispose()
    return url


def _live_database_url(folder: Path) -> str:
    return own_database_url(folder, "live")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """companion served over real HTTP for browser tests, with the demo organisation and staff.

    Session-wide and committed for real (not rolled back): tests should create their own data
    with unique names rather than expect an empty database.
    """
    from companion import demo
    from companion.accounts import twofactor
    from companion.accounts.models import User

    folder = tmp_path_factory.mktemp("live")
    url = _live_database_url(folder)
    engine = make_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(url, connection=conn)

    server = WsgiServer()
    application = make_app(url, folder, TESTING=False, BASE_URL=server.url)
    passwords: dict[str, str] = {}
    with application.app_context(), Session(engine) as session, session.begin():
        for person in demo.create(session, application.config):
            passwords[person["email"]] = factories.PASSWORD
        # One known password everywhere in the suite (demo passwords are random).
        for user in session.query(User).filter(User.email.in_(list(passwords))):
            user.password_hash = factories.password_hash()
            if user.role in twofactor.REQUIRED_ROLES:
                # Leads and admins must use two-factor; a known seed lets tests enter codes.
                for name, value in twofactor_helpers.enrolled_fields().items():
                    setattr(user, name, value)

    live = LiveServer(server.start(application))
    live.app = application
    live.database_url = url
    live.passwords = passwords
    try:
        yield live
    finally:
        server.stop()
        engine.dispose()
