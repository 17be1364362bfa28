from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, render_template, request

from ..access import ADMIN, LEAD, allow, current_user
from ..db import get_session, stream_session, write_transaction
from ..errors import ValidationError
from . import queries
from .services import record

bp = Blueprint("audit", __name__, url_prefix="/audit")

MAX_DAYS_ON_PAGE = 3660


def _parse_filter() -> queries.AuditFilter:
    """Read the search form; dates are days in the organisation's time zone."""
    user = current_user()
    tz = ZoneInfo(user.organisation.timezone)
    args = request.args

    def day(name: str) -> dt.datetime | None:
        raw = (args.get(name) or "").strip()
        if not raw:
            return None
        try:
            d = dt.date.fromisoformat(raw)
        except ValueError:
            raise ValidationError(f"{raw!r} is not a date (YYYY-MM-DD).", field=name) from None
        return dt.datetime.combine(d, dt.time(), tzinfo=tz).astimezone(dt.UTC)

    def number(name: str) -> int | None:
        raw = (args.get(name) or "").strip()
        if not raw:
            return None
        if not raw.isdigit():
            raise ValidationError(f"{name.replace('_', ' ')} must be a number.", field=name)
        return int(raw)

    since = day("since")
    until = day("until")
    if until is not None:
        until += dt.timedelta(days=1)  # "until" is inclusive of that whole day
    if since and until and until <= since:
        raise ValidationError("The end date is before the start date.", field="until")
    child = (args.get("child") or "").strip()[:130]
    family_ids = (
        queries.families_of_child(get_session(), user.organisation_id, child) if child else None
    )
    return queries.AuditFilter(
        organisation_id=user.organisation_id,
        family_ids=family_ids,
        person=(args.get("person") or "")[:254],
        kind=(args.get("kind") or "")[:64],
        course_id=number("course_id"),
        family_id=number("family_id"),
        since=since,
        until=until,
    )


@bp.get("/")
@allow(LEAD, ADMIN)
def index() -> Any:
    user = current_user()
    error = None
    events: list[Any] = []
    try:
        f = _parse_filter()
        events = queries.search(get_session(), f)
    except ValidationError as exc:
        error = exc.message
    return render_template(
        "audit/index.html",
        events=events,
        error=error,
        args=request.args,
        kinds=queries.kinds(get_session()),
        tz=ZoneInfo(user.organisation.timezone),
    ), (422 if error else 200)


@bp.get("/export.csv")
@allow(LEAD, ADMIN)
def export() -> Any:
    user = current_user()
    f = _parse_filter()
    # The export is itself on the trail, committed (a short write of its own) before any row
    # goes out.
    with write_transaction() as db:
        record(db, "audit.exported", actor=user, filters=request.args.to_dict())
    tz = ZoneInfo(user.organisation.timezone)
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def rows() -> Iterator[str]:
        # The rows are read in a read transaction of the stream's own, opened when the server
        # starts sending and ended with the stream (or when the client goes away): never the
        # request's session, which has committed and closed by then.
        with stream_session(app) as session:
            yield from _csv_rows(session, f, tz)

    return Response(
        rows(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=companion-audit.csv"},
    )


def _csv_rows(session: Any, f: queries.AuditFilter, tz: ZoneInfo) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "id",
            "at_utc",
            "at_local",
            "kind",
            "actor",
            "subject_type",
            "subject_id",
            "course_id",
            "family_id",
            "ip",
            "detail",
            "hash",
        ]
    )
    for e in queries.iter_all(session, f):
        writer.writerow(
            [
                e.id,
                e.at.isoformat(),
                e.at.astimezone(tz).isoformat(),
                e.kind,
                _csv_safe(e.actor),
                e.subject_type,
                e.subject_id,
                e.course_id or "",
                e.family_id or "",
                e.ip,
                _csv_safe(e.detail),
                e.hash,
            ]
        )
        if buf.tell() > 64 * 1024:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets; defuse it.
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value
