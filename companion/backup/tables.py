"""The tables of a database as a backup sees them: names in dependency order, and each column's
*kind*, the portable type its values are written as (so an archive made on SQLite restores into
PostgreSQL and the reverse).

The tables and columns come from the database itself (reflection), so an archive holds exactly
what that database holds at its revision; the kinds come from companion's models where they
declare the column (a UUID that SQLite keeps as text is still a UUID), else from the reflected
type. Values are read and written through generic SQLAlchemy types of those kinds, which store
each kind the way each database does (``Uuid`` is CHAR(32) on SQLite and ``uuid`` on PostgreSQL).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Alembic's own table: the archive names the revision instead, and a restore migrates to it.
SKIPPED = frozenset({"alembic_version"})

_GENERIC: dict[str, Any] = {
    "int": sa.BigInteger,
    "float": sa.Float,
    "decimal": sa.Numeric,
    "bool": sa.Boolean,
    "text": sa.Text,
    "datetime": sa.DateTime,
    "date": sa.Date,
    "time": sa.Time,
    "bytes": sa.LargeBinary,
    "uuid": sa.Uuid,
    "json": sa.JSON,
}
KINDS = frozenset(_GENERIC)

_BY_PYTHON_TYPE: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    decimal.Decimal: "decimal",
    str: "text",
    dt.datetime: "datetime",
    dt.date: "date",
    dt.time: "time",
    bytes: "bytes",
    uuid.UUID: "uuid",
    dict: "json",
    list: "json",
}


def kind_of(column_type: Any) -> str:
    if isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, sa.Enum):
        return "text"
    if isinstance(column_type, sa.JSON):
        return "json"
    if isinstance(column_type, sa.Uuid):
        return "uuid"
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return "text"
    return _BY_PYTHON_TYPE.get(python_type, "text")


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, kind)
    primary_key: tuple[str, ...]

    def core(self) -> sa.Table:
        """A Core table of generic types for this spec (its own MetaData: nothing is created)."""
        return sa.Table(
            self.name,
            sa.MetaData(),
            *(
                sa.Column(name, _GENERIC[kind](), primary_key=name in self.primary_key)
                for name, kind in self.columns
            ),
        )


def declared_metadata() -> sa.MetaData:
    from ..models import Base

    return Base.metadata


def reflect(connection: Connection) -> sa.MetaData:
    metadata = sa.MetaData()
    metadata.reflect(bind=connection)
    return metadata


def specs(connection: Connection) -> list[TableSpec]:
    """Every table of the database but Alembic's, parents before the tables that refer to them."""
    declared = declared_metadata().tables
    found = []
    for table in reflect(connection).sorted_tables:
        if table.name in SKIPPED:
            continue
        model = declared.get(table.name)
        columns = []
        for column in table.columns:
            source = (
                model.c[column.name].type
                if model is not None and column.name in model.c
                else column.type
            )
            columns.append((column.name, kind_of(source)))
        found.append(
            TableSpec(table.name, tuple(columns), tuple(c.name for c in table.primary_key.columns))
        )
    return found


def encode(kind: str, value: Any) -> Any:
    """A JSON value for ``value`` of ``kind``."""
    if value is None:
        return None
    if kind in ("datetime", "date", "time"):
        return value.isoformat()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind in ("uuid", "decimal"):
        return str(value)
    return value


def decode(kind: str, value: Any) -> Any:
    """The Python value a generic column of ``kind`` binds, from what :func:`encode` wrote."""
    if value is None:
        return None
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "time":
        return dt.time.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value, validate=True)
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value
