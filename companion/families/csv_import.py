"""Read a CSV of families and find every problem in it before anything is imported.

The file must be UTF-8 (a byte-order mark is fine: Excel's "CSV UTF-8" writes one), at most
:data:`MAX_BYTES` and :data:`MAX_ROWS` families, with a first line naming the columns::

    child_first_name,child_last_name,contact1_name,contact1_email,contact2_name,contact2_email

Column names are matched loosely ("Child first name", "child surname" work). Each problem names
its line and, where there is one, its column; :func:`parse` returns all of them, and the import
only goes ahead when there are none.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import ValidationError
from ..orgs.models import Organisation
from .people import (
    ContactInput,
    child_names,
    clean_email,
    clean_text,
    contact_label,
    name_key,
)

MAX_BYTES = 256 * 1024
MAX_ROWS = 500

REQUIRED = ("child_first_name", "child_last_name", "contact1_name", "contact1_email")
OPTIONAL = ("contact2_name", "contact2_email")
COLUMNS = REQUIRED + OPTIONAL
ALIASES = {
    "child_first_name": ("child_first_name", "first_name", "child_forename", "child_first"),
    "child_last_name": (
        "child_last_name",
        "last_name",
        "child_surname",
        "surname",
        "child_surname_initial",
        "child_initial",
        "child_last",
    ),
    "contact1_name": ("contact1_name", "parent1_name", "contact_name", "parent_name"),
    "contact1_email": ("contact1_email", "parent1_email", "contact_email", "parent_email", "email"),
    "contact2_name": ("contact2_name", "parent2_name"),
    "contact2_email": ("contact2_email", "parent2_email"),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_EXTRA_CONTACT = re.compile(r"^(contact|parent|carer)_?([3-9]|\d{2,})_")


@dataclass(frozen=True)
class Problem:
    line: int | None  # None: the file as a whole
    column: str | None
    message: str

    def describe(self) -> str:
        where = f"Line {self.line}" if self.line is not None else "The file"
        if self.column:
            where += f", {self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Row:
    line: int
    first: str
    last: str
    contacts: list[ContactInput]


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _normalise_header(cell: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", cell.strip().lower()).strip("_")


def _decode(data: bytes, parsed: Parsed) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        parsed.problems.append(
            Problem(
                None,
                None,
                "The file is saved as UTF-16 (Excel's “Unicode text”). Save it as “CSV UTF-8” "
                "and upload it again.",
            )
        )
        return None
    if b"\x00" in data:
        parsed.problems.append(
            Problem(None, None, "This is not a text file. Upload a CSV file saved as “CSV UTF-8”.")
        )
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        parsed.problems.append(
            Problem(
                line,
                None,
                "this line is not UTF-8 text (the file was probably saved as “CSV” in a Windows "
                "or Mac encoding, which garbles accented names). Save it as “CSV UTF-8” and "
                "upload it again.",
            )
        )
        return None


def _dialect(text: str) -> str:
    first = text.split("\n", 1)[0]
    if first.count(";") > first.count(",") and first.count(";") >= first.count("\t"):
        return ";"  # Excel in many European locales
    if first.count("\t") > first.count(","):
        return "\t"
    return ","


def _header(cells: list[str], parsed: Parsed, line: int) -> dict[str, int] | None:
    positions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _normalise_header(cell)
        if not key:
            if any(c.strip() for c in cells[index:]):
                parsed.problems.append(Problem(line, None, f"column {index + 1} has no name."))
            continue
        if _EXTRA_CONTACT.match(key):
            parsed.problems.append(
                Problem(
                    line,
                    cell.strip(),
                    "a family has at most two parent/carer contacts; remove this column.",
                )
            )
            continue
        name = _CANONICAL.get(key)
        if name is None:
            parsed.problems.append(
                Problem(
                    line,
                    cell.strip(),
                    "unknown column. The columns are: " + ", ".join(COLUMNS) + ".",
                )
            )
            continue
        if name in positions:
            parsed.problems.append(Problem(line, cell.strip(), f"a second {name} column."))
            continue
        positions[name] = index
    missing = [name for name in REQUIRED if name not in positions]
    if missing:
        parsed.problems.append(
            Problem(
                line,
                None,
                "missing column(s): "
                + ", ".join(missing)
                + ". The first line must name the columns: "
                + ", ".join(COLUMNS)
                + ".",
            )
        )
    return None if parsed.problems else positions


def _records(text: str, delimiter: str, parsed: Parsed) -> Iterable[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as exc:
        parsed.problems.append(
            Problem(reader.line_num or None, None, f"this line cannot be read as CSV ({exc}).")
        )


def parse(data: bytes, *, org: Organisation, existing: set[tuple[str, str]]) -> Parsed:
    """Every family of the file, or every problem in it. ``existing`` holds the name keys of
    children already enrolled on the course (see :func:`companion.families.people.name_key`)."""
    parsed = Parsed()
    if len(data) > MAX_BYTES:
        parsed.problems.append(
            Problem(
                None,
                None,
                f"The file is {len(data) / 1024:,.0f} KB; the limit is {MAX_BYTES // 1024} KB "
                f"(about {MAX_ROWS} families). Split it into smaller files.",
            )
        )
        return parsed
    text = _decode(data, parsed)
    if text is None:
        return parsed
    if not text.strip():
        parsed.problems.append(Problem(None, None, "The file is empty."))
        return parsed
    records = _records(text, _dialect(text), parsed)
    positions = None
    for line, cells in records:
        if not any(c.strip() for c in cells):
            continue
        positions = _header(cells, parsed, line)
        break
    if positions is None:
        if not parsed.problems:
            parsed.problems.append(Problem(None, None, "The file is empty."))
        return parsed
    width = max(positions.values()) + 1
    seen: dict[tuple[str, str], int] = {}
    count = 0
    for line, cells in records:
        if not any(c.strip() for c in cells):
            continue
        count += 1
        if count > MAX_ROWS:
            parsed.problems.insert(
                0,
                Problem(
                    None,
                    None,
                    f"The file has more than {MAX_ROWS} families; import at most {MAX_ROWS} at "
                    "a time.",
                ),
            )
            parsed.rows.clear()
            return parsed
        _row(org, positions, width, line, cells, existing, seen, parsed)
    if count == 0 and not parsed.problems:
        parsed.problems.append(Problem(None, None, "The file has a header line but no families."))
    return parsed


def _row(
    org: Organisation,
    positions: dict[str, int],
    width: int,
    line: int,
    cells: list[str],
    existing: set[tuple[str, str]],
    seen: dict[tuple[str, str], int],
    parsed: Parsed,
) -> None:
    before = len(parsed.problems)
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        parsed.problems.append(
            Problem(
                line,
                None,
                "this line has more values than there are columns. A name with a comma in it "
                "must be in double quotes; a third parent/carer cannot be imported.",
            )
        )
        return

    def cell(name: str) -> str:
        index = positions.get(name)
        return cells[index] if index is not None and index < len(cells) else ""

    names: tuple[str, str] | None = None
    try:
        names = child_names(org, cell("child_first_name"), cell("child_last_name"))
    except ValidationError as exc:
        parsed.problems.append(Problem(line, exc.field, exc.message))
    contacts: list[ContactInput] = []
    # Each cell is checked on its own, so that a line with several problems shows them all.
    for position in (1, 2):
        name, email = cell(f"contact{position}_name"), cell(f"contact{position}_email")
        if not (name.strip() or email.strip()):
            if position == 1:
                parsed.problems.append(
                    Problem(line, "contact1_name", "give at least one parent or carer.")
                )
            continue
        who = contact_label(position)
        try:
            name = clean_text(
                name, field=f"contact{position}_name", label=f"{who}'s name", max_len=200
            )
            valid_name = True
        except ValidationError as exc:
            parsed.problems.append(Problem(line, exc.field, exc.message))
            valid_name = False
        try:
            email = clean_email(
                email, field=f"contact{position}_email", label=f"{who}'s email address"
            )
        except ValidationError as exc:
            parsed.problems.append(Problem(line, exc.field, exc.message))
            continue
        if valid_name:
            contacts.append(ContactInput(name, email))
    if len(contacts) == 2 and contacts[0].email == contacts[1].email:
        parsed.problems.append(
            Problem(
                line,
                "contact2_email",
                "the two parents/carers need different email addresses: each gets a personal link.",
            )
        )
    if names is not None:
        key = name_key(*names)
        shown = f"{names[0]} {names[1]}" + ("." if len(names[1]) == 1 else "")
        if key in seen:
            parsed.problems.append(
                Problem(
                    line,
                    "child_first_name",
                    f"{shown} is already on line {seen[key]} of this file.",
                )
            )
        elif key in existing:
            parsed.problems.append(
                Problem(line, "child_first_name", f"{shown} is already enrolled on this course.")
            )
        else:
            seen[key] = line
    if len(parsed.problems) == before and names is not None:
        parsed.rows.append(Row(line, names[0], names[1], contacts))
