"""Database: the declarative base, column types, and the per-request session.

Services receive a ``Session`` and never commit; the request boundary (``init_app``) and each job
commit or roll back. Times are stored as naive UTC and always come back timezone-aware.

Transactions are kept short so that requests never wait on each other (issue 10):

* A read-only request (GET, HEAD, OPTIONS) reads in a deferred transaction: on SQLite it takes no
  write lock, so it never holds up a writer (WAL readers do not block writers). A write such a
  request must make (a session's idle-time touch, the audit of a refused access) goes in
  ``with write_transaction():``, which takes the write lock at its first write and commits at
  its end. A read transaction is never upgraded in place: on SQLite that fails at once with
  "database is locked" when another writer committed since it began; the read transaction is
  ended and a ``BEGIN IMMEDIATE`` one (which waits its turn) takes its place.
* A write request (POST, ...) takes the write lock at its first statement and ends its
  transaction before the page is rendered (``before_render_template``), so the lock is never held
  while a template renders or a response streams; an error response still rolls back.
* A streamed body never reads through the request's session (it has committed and closed by
  then): it uses ``stream_session()``, a read transaction of its own that ends with the stream.
* What must be kept whatever the answer (a refused sign-in counts) goes in ``kept_transaction()``.
* On SQLite the writers of one process queue on a lock of their own (see ``_WRITERS``).

The module runs a little past 600 lines and is kept whole: these rules work together and are
read together.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, cast

from flask import Flask, before_render_template, current_app, g, has_request_context, request
from sqlalchemy import CursorResult, DateTime, Engine, MetaData, Result, create_engine, event, func
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from .errors import CompanionError

log = logging.getLogger(__name__)

# Requests that only read: their session begins deferred transactions (no write lock on SQLite).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The engine execution option that makes SQLite begin with a plain (deferred) BEGIN.
READ_OPTION = "companion_read"

# Named constraints so that Alembic migrations are stable across databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Clock:
    """The service's clock. ``offset`` stays zero in production; tests move time forward with it
    (timeouts, throttling, expiry) without patching every module that imported ``utcnow``."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta | None = None, **kwargs: float) -> dt.datetime:
        self.offset += delta if delta is not None else dt.timedelta(**kwargs)
        return self.now()


clock = Clock()


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC; the only clock the services read unless one is passed in."""
    return clock.now()


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Store naive UTC, return aware UTC; refuse naive input so local times cannot slip in."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


created_at = Annotated[dt.datetime, mapped_column(UTCDateTime, default=utcnow, nullable=False)]


def state_column(states: type[enum.StrEnum], length: int) -> SAEnum:
    """The column type of a state: a VARCHAR(``length``) holding the members' values, the same
    strings as ever, and read back as members of ``states``.

    Plain strings are still accepted when writing; the table's CHECK constraint (not this type)
    refuses unknown ones, as before, so no migration is needed.
    """
    return SAEnum(
        states,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


def changed_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed. ``Session.execute`` is typed as returning a
    plain ``Result``; for those statements it is a ``CursorResult``, which counts them."""
    return cast(CursorResult[Any], result).rowcount


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime}


# SQLite lets one writer in at a time. Left to SQLite, writers that find the lock taken sleep in
# its busy handler (1 ms, 2 ms, ... up to 100 ms a nap) and find it free only by waking up: under
# a burst of webhooks most of the time went to napping, and a few waited seconds. So the writers
# of one process queue on a lock of their own, handed over the moment a transaction ends; SQLite's
# handler still arbitrates between processes (the web server and the worker).
_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_GUARD = threading.Lock()
_HOLDS_WRITER = "companion_holds_writer"


def _writer_lock(url: str) -> threading.Lock:
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(url, threading.Lock())


def _take_writer(conn: Any, lock: threading.Lock) -> None:
    info = conn.connection.info  # the DBAPI connection's, which outlives the Connection object
    if info.get(_HOLDS_WRITER):
        return
    # Bounded like SQLite's own wait: past it, SQLite's busy handler decides as before.
    if lock.acquire(timeout=SQLITE_BUSY_SECONDS):
        info[_HOLDS_WRITER] = lock


def _give_writer(conn: Any) -> None:
    _release_writer(conn.connection.info)


def _release_writer(info: dict[str, Any]) -> None:
    lock = info.pop(_HOLDS_WRITER, None)
    if lock is not None:
        lock.release()


SQLITE_BUSY_SECONDS = 30


# Connections each process keeps open. A request holds one from its first query to its end, so
# every server thread may hold one at once (waitress serves with 8 by default), and work after
# a commit (``after_commit``) takes another. SQLAlchemy's default pool of 5 made each request
# beyond the fifth open a connection and close it again at its end (on PostgreSQL a new server
# process each time); a pool as large as the threads that use it opens each connection once.
POOL_SIZE = 16
POOL_OVERFLOW = 16


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets real transactions and foreign keys."""
    if ":memory:" not in url and url not in ("sqlite://", "sqlite+pysqlite://"):
        # A file or a server: a QueuePool, sized for the server's threads (see POOL_SIZE).
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        writers = _writer_lock(str(engine.url))

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            if conn.get_execution_options().get(READ_OPTION):
                # A read transaction (a GET's session, a stream's own session): no lock now, a
                # snapshot at the first read. It is never upgraded to a writer (see
                # ``_lock_for_write``), so it cannot fail with "database is locked".
                conn.exec_driver_sql("BEGIN")
                return
            # IMMEDIATE takes the write lock up front, so concurrent writers queue on the busy
            # timeout. A deferred BEGIN reads first and then fails at once with "database is
            # locked" when another writer committed in between (most concurrent sign-ins did).
            _take_writer(conn, writers)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _give_writer(conn)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn: Any) -> None:
            _give_writer(conn)

        # However a connection leaves its transaction (returned to the pool, invalidated after
        # an error, closed), the process's writer lock goes with it.
        @event.listens_for(engine, "checkin")
        @event.listens_for(engine, "close")
        def _sqlite_gone(_dbapi_conn: Any, record: Any) -> None:
            _release_writer(record.info)

        @event.listens_for(engine, "invalidate")
        def _sqlite_invalid(_dbapi_conn: Any, record: Any, _exc: Any) -> None:
            _release_writer(record.info)

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class SessionProvider:
    """Hands out the request's session; tests swap in one bound to a rolled-back transaction.

    ``read_mode`` and ``open_reader`` are optional for a provider (the tests' one has neither:
    its single session is one transaction with savepoints, where nothing can wait on a lock).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        # The same engine and pool; its transactions begin deferred on SQLite.
        self.read_engine = engine.execution_options(**{READ_OPTION: True})
        self.factory = sessionmaker(bind=engine, expire_on_commit=False)
        self.sqlite = engine.dialect.name == "sqlite"

    def open(self) -> Session:
        session = self.factory()
        # Only a real SQLite connection ever needs a read transaction replaced by a write one.
        session.info["companion_switch"] = self.sqlite
        return session

    def open_reader(self) -> Session:
        """A session of its own for a streamed body: read transactions only."""
        session = self.factory(bind=self.read_engine)
        session.info["companion_stream"] = True
        return session

    def read_mode(self, session: Session, on: bool) -> None:
        """Make the session's next transactions read (deferred) or write (IMMEDIATE) ones."""
        session.bind = self.read_engine if on else self.engine

    def close(self, session: Session) -> None:
        session.close()


def _provider(app: Flask | None = None) -> Any:
    return (app or current_app).extensions["companion.sessions"]


def _set_read_mode(session: Session, on: bool) -> None:
    session.info["companion_read"] = on
    set_mode = getattr(_provider(), "read_mode", None)
    if set_mode is not None:
        set_mode(session, on)


def _lock_for_write(session: Session) -> None:
    """Before the first write of a read transaction on SQLite, swap it for a write transaction.

    The read transaction has written nothing, so ending it loses nothing; ``BEGIN IMMEDIATE``
    then waits (busy timeout) for the lock instead of failing as an upgrade would. What was
    read before stays in the session; rows read ``FOR UPDATE`` are read after the swap.
    """
    info = session.info
    if info.get("companion_locked") or not info.get("companion_switch"):
        return
    if session.in_nested_transaction():
        return  # a savepoint cannot survive the swap; let SQLite upgrade (rare, never planned)
    conn = session.connection()
    if not conn.get_execution_options().get(READ_OPTION):
        info["companion_locked"] = True  # a write transaction already
        return
    conn.exec_driver_sql("COMMIT")
    _take_writer(conn, _writer_lock(str(conn.engine.url)))
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    info["companion_locked"] = True


def _write_intent(session: Session) -> None:
    """A read-mode session is about to write: allowed inside ``write_transaction`` only."""
    info = session.info
    info["companion_wrote"] = True
    if not info.get("companion_read"):
        return
    if not info.get("companion_writing"):
        where = f"{request.method} {request.path}" if has_request_context() else "a read session"
        # Still done correctly (the swap below), but the write lock is then held until the
        # request ends: say where, so that the write can be moved into write_transaction().
        log.warning(
            "%s wrote through its read-only session; wrap the write in db.write_transaction()",
            where,
        )
    _lock_for_write(session)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        _write_intent(session)


@event.listens_for(Session, "do_orm_execute")
def _before_execute(state: Any) -> None:
    locking_read = state.is_select and getattr(state.statement, "_for_update_arg", None) is not None
    if state.is_insert or state.is_update or state.is_delete or locking_read:
        _write_intent(state.session)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("companion_locked", None)
        # "wrote" is about the open transaction: what was committed or rolled back is done.
        session.info["companion_wrote"] = False


@contextmanager
def write_transaction() -> Iterator[Session]:
    """The writes a read-only request must make, in a short write transaction of their own.

    Inside a write request this is simply part of the request's transaction. Inside a read
    request the lock is taken at the block's first write (none if it writes nothing) and the
    block commits at its end, whatever the response will be: use it for what must be kept (a
    refusal's audit row), and keep it to the write itself.
    """
    session = get_session()
    if not session.info.get("companion_read"):
        yield session
        return
    session.info["companion_writing"] = True
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info["companion_writing"] = False


@contextmanager
def kept_transaction(
    keep: tuple[type[BaseException], ...] = (CompanionError,),
) -> Iterator[Session]:
    """Writes kept whatever the request answers: a refused attempt that counts towards
    throttling, a refusal's audit row, an integrity failure.

    The block is a transaction of its own, committed at its end, and also when it raises one of
    ``keep`` (the service recorded the attempt, then refused it); any other exception rolls it
    back. Only the block is kept: it must come before the request's other writes, which still
    commit or roll back with the request (a failing request keeps nothing else).
    """
    session = get_session()
    info = session.info
    if info.get("companion_wrote") or session.new or session.dirty or session.deleted:
        raise RuntimeError(
            "kept_transaction() must come before the request's other writes: it would keep them"
        )
    if session.in_transaction():
        session.rollback()  # reads only so far: nothing is lost
    reading = info.get("companion_read")
    info["companion_writing"] = True
    try:
        yield session
    except keep:
        session.commit()
        raise
    except BaseException:
        session.rollback()
        raise
    else:
        session.commit()
    finally:
        if reading:
            info["companion_writing"] = False


@contextmanager
def stream_session(app: Flask | None = None) -> Iterator[Session]:
    """A read transaction of its own for a streamed response body; it ends with the stream.

    Use it inside the body's generator (``with stream_session(app) as s: yield from ...``), so
    that it is opened when the server starts sending and closed when the stream ends or the
    client goes away (the generator is closed).
    """
    provider = _provider(app)
    open_reader = getattr(provider, "open_reader", None)
    if open_reader is None:
        # The tests' provider: the test's own session, whose transaction is not ours to end.
        yield provider.open()
        return
    session = open_reader()
    try:
        yield session
    finally:
        session.rollback()
        provider.close(session)


def end_read(session: Session) -> None:
    """End a stream session's read transaction between batches (the next batch begins a new
    one), so a slow client never keeps one snapshot open (on SQLite that stops the WAL from
    being checkpointed). Nothing for any other session."""
    if session.info.get("companion_stream") and session.in_transaction():
        session.rollback()


# --- the request boundary --------------------------------------------------------------------

_page_templates: dict[str, bool] = {}


def _is_page(app: Flask, name: str | None) -> bool:
    """Is this template a whole page (extends base.html), not a fragment or an email body?

    Only the response's page ends the transaction early: a service that renders something in
    the middle of its work (an evidence pack, a message) must not have its transaction split.
    """
    if name is None:
        return False
    known = _page_templates.get(name)
    if known is not None:
        return known
    from jinja2 import nodes

    env = app.jinja_env
    result = False
    try:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        for node in env.parse(source).find_all(nodes.Extends):
            parent = node.template
            if isinstance(parent, nodes.Const) and isinstance(parent.value, str):
                result = parent.value == "base.html" or _is_page(app, parent.value)
    except Exception:  # noqa: BLE001 - a template we cannot inspect is treated as a fragment
        result = False
    _page_templates[name] = result
    return result


def _failing(context: dict[str, Any]) -> bool:
    """Is the page being rendered the answer to a failure (so its writes must not stay)?"""
    if sys.exc_info()[0] is not None:
        return True  # rendered while an exception is handled: an error page
    status = context.get("status")
    if isinstance(status, int) and status >= 400:
        return True  # the error page, shown by a view that answers with its status
    from wtforms.form import BaseForm

    return any(isinstance(v, BaseForm) and v.errors for v in context.values())


def _end_before_render(app: Flask, template: Any, context: dict[str, Any]) -> None:
    session = g.get("db_session")
    if session is None or not has_request_context() or not session.in_transaction():
        return
    info = session.info
    if info.get("companion_read") and not info.get("companion_locked"):
        return  # a read transaction holds no lock; it ends with the request
    if not _is_page(app, getattr(template, "name", None)):
        return
    wrote = bool(info.get("companion_wrote"))
    if wrote and _failing(context):
        session.rollback()
        g.db_ended_early = "rolled back"
    else:
        session.commit()
        g.db_ended_early = "committed" if wrote else "read"
    info["companion_wrote"] = False
    # Whatever the page still loads while rendering is read in a read transaction.
    _set_read_mode(session, True)


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["companion.engine"] = engine
    app.extensions["companion.sessions"] = SessionProvider(engine)

    def _before_render(sender: Flask, template: Any, context: dict[str, Any], **_: Any) -> None:
        _end_before_render(sender, template, context)

    before_render_template.connect(_before_render, app, weak=False)

    @app.after_request
    def _commit_or_roll_back(response: Any) -> Any:
        # The request boundary owns the transaction: success commits, any error rolls back.
        # What must be kept whatever the answer (a failed sign-in is still counted) was
        # committed by its own kept_transaction() block already.
        session = g.get("db_session")
        # Popped, not read: an app context can outlive one request (tests, CLI) and these
        # belong to this request only.
        after = g.pop("after_commit", [])
        success = response.status_code < 400
        early = g.pop("db_ended_early", None)
        if session is not None:
            if success:
                session.commit()
            else:
                session.rollback()
            if early == "committed" and response.status_code >= 400:
                log.error(
                    "%s %s committed its writes before rendering, then answered %s: roll back "
                    "(or raise) before rendering an error page, or use kept_transaction()",
                    request.method,
                    request.path,
                    response.status_code,
                )
        if (success or early == "committed") and after:
            # Work that must not run inside the request's transaction (a Zoom call, say) runs
            # once the answer has been sent, with no transaction open; see after_commit.
            app_ = current_app._get_current_object()  # type: ignore[attr-defined]
            response.call_on_close(lambda: _run_after_commit(app_, after))
        return response

    @app.teardown_request
    def _end_request_mode(_exc: BaseException | None) -> None:
        # The tests' session outlives the request: leave it as a plain (writing) session.
        session = g.get("db_session")
        if session is not None and session.info.get("companion_read"):
            if session.in_transaction():
                session.rollback()
            _set_read_mode(session, False)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            if session.in_transaction():
                session.rollback()
            current_app.extensions["companion.sessions"].close(session)


def _run_after_commit(app: Flask, callbacks: list[Any]) -> None:
    import logging

    for callback in callbacks:
        try:
            with app.app_context():
                callback()
        except Exception:
            # The work is durable (a work item) and the worker picks it up; the person already
            # has their answer, so a failure here is only logged.
            logging.getLogger(__name__).exception("work after the request failed")


def after_commit(callback: Any) -> None:
    """Run ``callback()`` once the current request's transaction has committed and its answer
    has gone out, with no transaction open (and not at all if the request rolled back)."""
    g.setdefault("after_commit", []).append(callback)


def get_session() -> Session:
    """The session of the current request or app context.

    In a read-only request (GET, HEAD, OPTIONS) it reads without taking the write lock; writes
    there belong in ``with write_transaction():``.
    """
    if "db_session" not in g:
        session = current_app.extensions["companion.sessions"].open()
        g.db_session = session
        session.info["companion_wrote"] = False
        if has_request_context() and request.method in READ_METHODS:
            _set_read_mode(session, True)
    return g.db_session


def refusal_recorded() -> None:
    """This request's refusal is on the audit trail already: the access hook adds no second."""
    g.refusal_recorded = True


def get_engine(app: Flask | None = None) -> Engine:
    return (app or current_app).extensions["companion.engine"]


@contextmanager
def job_session(app: Flask) -> Iterator[Session]:
    """A session for a job or command: commits on success, rolls back on any error."""
    provider: SessionProvider = app.extensions["companion.sessions"]
    session = provider.open()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        provider.close(session)


def db_now() -> Any:
    return func.now()
