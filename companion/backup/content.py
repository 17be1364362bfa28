"""What an archive holds once decrypted: one JSON record per line, in this order.

    {"record": "archive", "format": 1, "archive_id", "created_at", "dialect", "revision",
     "tables": [names, parents first], "with_recordings"}
    for each table:
        {"record": "table", "name", "columns": [[name, kind], ...], "primary_key": [...]}
        [value, value, ...]                      one line per row, values encoded by kind
        {"record": "table_end", "name", "rows": N}
    for each recording blob, only with --with-recordings (already encrypted, copied as stored):
        {"record": "blob", "key", "size": N}
        "base64 of up to 768 KiB"                 one line per chunk
        {"record": "blob_end", "key", "size": N}
    {"record": "end", "tables": {name: rows}, "blobs": N, "blob_bytes": N,
     "referenced_blobs": N, "revision"}

The end record is the manifest: a reader counts every row and blob as it goes and refuses an
archive whose counts, order or revision disagree with it. The encryption authenticates every
byte; the manifest is what says the archive is whole in the sense of the database.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .archive import ArchiveError
from .tables import KINDS, TableSpec

FORMAT = 1
BLOB_CHUNK = 768 * 1024  # 1 MiB of base64 per line
_FLUSH = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> Any: ...


class RecordWriter:
    """Buffers records into about 1 MiB writes (one segment of the encrypted format)."""

    def __init__(self, out: Sink):
        self._out = out
        self._buffer = bytearray()

    def record(self, value: Any) -> None:
        self._buffer += json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        self._buffer += b"\n"
        if len(self._buffer) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._out.write(bytes(self._buffer))
            self._buffer.clear()


@dataclass
class Manifest:
    """The archive's header and end record, as read and checked."""

    archive_id: str
    created_at: str
    dialect: str
    revision: str | None
    with_recordings: bool
    tables: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    referenced_blobs: int = 0

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


# What `records` yields: (what, value).
Header = dict[str, Any]


def _problem(path: str, what: str) -> ArchiveError:
    return ArchiveError(f"{path} does not hold a whole backup ({what}); use another backup")


def records(lines: Iterator[bytes], path: str) -> Iterator[tuple[str, Any]]:
    """Parse and check the records of an archive, yielding

    ``("header", Manifest)``, ``("table", TableSpec)``, ``("rows", [row, ...])`` (batches),
    ``("table_end", name)``, ``("blob", (key, size))``, ``("blob_data", bytes)``,
    ``("blob_end", key)`` and last ``("end", Manifest)`` with the counts checked.
    """

    def parse(line: bytes) -> Any:
        try:
            return json.loads(line)
        except ValueError:
            raise _problem(path, "a record is not valid JSON") from None

    first = next(lines, None)
    header = parse(first) if first is not None else None
    if not isinstance(header, dict) or header.get("record") != "archive":
        raise _problem(path, "it does not start with the archive record")
    if header.get("format") != FORMAT:
        raise ArchiveError(
            f"{path} holds backup content of format {header.get('format')!r}, "
            "which this version of companion does not read"
        )
    manifest = Manifest(
        archive_id=str(header["archive_id"]),
        created_at=str(header["created_at"]),
        dialect=str(header["dialect"]),
        revision=header.get("revision"),
        with_recordings=bool(header.get("with_recordings")),
    )
    expected_tables: list[str] = list(header.get("tables") or [])
    yield "header", manifest

    table: TableSpec | None = None
    rows: list[list[Any]] = []
    count = 0
    blob: tuple[str, int] | None = None
    blob_read = 0
    seen_tables: list[str] = []
    for line in lines:
        if table is not None and line[:1] == b"[":
            row = parse(line)
            if not isinstance(row, list) or len(row) != len(table.columns):
                raise _problem(path, f"a row of {table.name} has the wrong number of values")
            rows.append(row)
            count += 1
            if len(rows) >= 1000:
                yield "rows", rows
                rows = []
            continue
        if blob is not None and line[:1] == b'"':
            try:
                data = base64.b64decode(parse(line), validate=True)
            except (binascii.Error, TypeError):
                raise _problem(path, f"blob {blob[0]} is not valid base64") from None
            blob_read += len(data)
            yield "blob_data", data
            continue
        item = parse(line)
        kind = item.get("record") if isinstance(item, dict) else None
        if kind == "table" and table is None and blob is None:
            columns = tuple((str(n), str(k)) for n, k in item["columns"])
            if any(k not in KINDS for _, k in columns):
                raise _problem(path, f"table {item['name']} has a column of unknown kind")
            table = TableSpec(str(item["name"]), columns, tuple(item.get("primary_key") or ()))
            count = 0
            yield "table", table
        elif kind == "table_end" and table is not None and item.get("name") == table.name:
            if rows:
                yield "rows", rows
                rows = []
            if item.get("rows") != count:
                raise _problem(
                    path, f"table {table.name} has {count} rows, its end says {item.get('rows')}"
                )
            manifest.tables[table.name] = count
            seen_tables.append(table.name)
            yield "table_end", table.name
            table = None
        elif kind == "blob" and table is None and blob is None:
            blob = (str(item["key"]), int(item["size"]))
            blob_read = 0
            yield "blob", blob
        elif kind == "blob_end" and blob is not None and item.get("key") == blob[0]:
            if blob_read != blob[1] or item.get("size") != blob[1]:
                raise _problem(path, f"blob {blob[0]} has {blob_read} bytes, not {blob[1]}")
            manifest.blobs += 1
            manifest.blob_bytes += blob_read
            yield "blob_end", blob[0]
            blob = None
        elif kind == "end" and table is None and blob is None:
            if seen_tables != expected_tables:
                raise _problem(path, "its tables are not the ones its header lists")
            if (
                item.get("tables") != manifest.tables
                or item.get("blobs") != manifest.blobs
                or item.get("blob_bytes") != manifest.blob_bytes
                or item.get("revision") != manifest.revision
            ):
                raise _problem(path, "its manifest does not match what it holds")
            manifest.referenced_blobs = int(item.get("referenced_blobs") or 0)
            if next(lines, None) is not None:
                raise _problem(path, "there are records after its end")
            yield "end", manifest
            return
        else:
            raise _problem(path, f"an unexpected record ({kind or 'not a record'})")
    raise _problem(path, "it has no end record")


ProgressFn = Callable[[str], None]
