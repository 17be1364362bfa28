"""Database: the declarative base, column types, and the per-request session.

Services receive a ``Session`` and never commit; the request boundary (``init_app``) and each job
commit or roll back. Times are stored as naive UTC and always come back timezone-aware.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from flask import Flask, current_app, g
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, func
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime}


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets real transactions and foreign keys."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front, so concurrent requests queue on the busy
            # timeout. A deferred BEGIN reads first and then fails at once with "database is
            # locked" when another writer committed in between (most concurrent sign-ins did).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class SessionProvider:
    """Hands out the request's session; tests swap in one bound to a rolled-back transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.factory = sessionmaker(bind=engine, expire_on_commit=False)

    def open(self) -> Session:
        return self.factory()

    def close(self, session: Session) -> None:
        session.close()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["companion.engine"] = engine
    app.extensions["companion.sessions"] = SessionProvider(engine)

    @app.after_request
    def _commit_or_roll_back(response: Any) -> Any:
        # The request boundary owns the transaction: success commits, any error rolls back,
        # except what a view marked to keep (a failed sign-in is still counted).
        session = g.get("db_session")
        # Popped, not read: an app context can outlive one request (tests, CLI) and the mark
        # belongs to this request only.
        keep = g.pop("keep_changes", False)
        after = g.pop("after_commit", [])
        success = response.status_code < 400 or keep
        if session is not None:
            if success:
                session.commit()
            else:
                session.rollback()
        if success and after:
            # Work that must not run inside the request's transaction (a Zoom call, say) runs
            # once the answer has been sent, with no transaction open; see work.after_commit.
            app_ = current_app._get_current_object()  # type: ignore[attr-defined]
            response.call_on_close(lambda: _run_after_commit(app_, after))
        return response

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
    """The session of the current request or app context."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["companion.sessions"].open()
    return g.db_session


def keep_changes() -> None:
    """Commit this request's changes even though it answers with an error."""
    g.keep_changes = True


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
