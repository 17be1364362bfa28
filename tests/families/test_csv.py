"""CSV import: every bad line shown with its reason, nothing imported until the file is clean."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from companion.families import access, csv_import, enrolment, errors, jobs, people

from .. import factories
from ..factories import NOW
from ..staff_helpers import audit_events, csrf_of, sign_in, text
from ..zoom_sandbox import SandboxZoom

pytestmark = pytest.mark.usefixtures("app_with_zoom")

HEADER = (
    "child_first_name,child_last_name,contact1_name,contact1_email,contact2_name,contact2_email"
)


def csv_bytes(*lines: str, header: str = HEADER, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join([header, *lines]) + "\r\n").encode(encoding)


def parse(org: Any, data: bytes, existing: set[tuple[str, str]] | None = None) -> Any:
    return csv_import.parse(data, org=org, existing=existing or set())


def messages(parsed: Any) -> list[str]:
    return [p.describe() for p in parsed.problems]


def test_a_clean_file_with_a_bom_and_accents(org: Any) -> None:
    data = "\ufeff" + HEADER + "\r\nZoë,Ångström,Åsa Ångström,asa@example.net,,\r\n"
    data += "\"Mary, Jane\",O'Neil,Pat O'Neil,pat@example.net,Sam O'Neil,sam@example.net\r\n"
    parsed = parse(org, data.encode("utf-8"))
    assert parsed.problems == []
    assert [(r.line, r.first, r.last, len(r.contacts)) for r in parsed.rows] == [
        (2, "Zoë", "Å", 1),
        (3, "Mary, Jane", "O", 2),
    ]


def test_semicolons_and_friendly_column_names(org: Any) -> None:
    data = b"Child first name;Child surname;Parent name;Parent email\nAmira;Khan;Rana;rana@x.net\n"
    parsed = parse(org, data)
    assert parsed.problems == []
    assert parsed.rows[0].contacts == [people.ContactInput("Rana", "rana@x.net")]


def test_a_missing_column(org: Any) -> None:
    parsed = parse(org, b"child_first_name,contact1_name,contact1_email\nA,B,b@x.net\n")
    assert messages(parsed) == [
        "Line 1: missing column(s): child_last_name. The first line must name the columns: "
        + ", ".join(csv_import.COLUMNS)
        + "."
    ]
    assert parsed.rows == []


def test_unknown_and_extra_contact_columns(org: Any) -> None:
    parsed = parse(
        org, csv_bytes("A,K,B,b@x.net,,,C,c@x.net", header=HEADER + ",contact3_name,colour")
    )
    assert messages(parsed) == [
        "Line 1, contact3_name: a family has at most two parent/carer contacts; remove this "
        "column.",
        "Line 1, colour: unknown column. The columns are: " + ", ".join(csv_import.COLUMNS) + ".",
    ]


def test_every_bad_line_is_shown_with_its_reason(org: Any) -> None:
    parsed = parse(
        org,
        csv_bytes(
            "Amira,Khan,Rana Khan,rana@example.net,,",
            "Ben,Tan,Jo Tan,jo@@example,,",  # malformed email
            "amira,K.,Omar Khan,omar@example.net,,",  # the same child again (line 2)
            ",Lee,Kim Lee,kim@example.net,,",  # no first name
            "Cara,Day,,,,",  # no parent
            "Dan,Eve,Al Eve,al@example.net,Bo Eve,al@example.net",  # same address twice
            "Eli,Fox,Fi Fox,fi@example.net,Gus Fox,",  # second parent without email
            "Fay,Gee,Ha Gee,ha@example.net,,,extra",  # a value too many
            "Gil,Ho,Ida,ida@example.net,,",  # already enrolled (see existing)
        ),
        existing={("gil", "h")},
    )
    assert messages(parsed) == [
        "Line 3, contact1_email: “jo@@example” is not a valid email address.",
        "Line 4, child_first_name: amira K. is already on line 2 of this file.",
        "Line 5, child_first_name: Give the child's first name.",
        "Line 6, contact1_name: give at least one parent or carer.",
        "Line 7, contact2_email: the two parents/carers need different email addresses: each "
        "gets a personal link.",
        "Line 8, contact2_email: Give the second parent/carer's email address.",
        "Line 9: this line has more values than there are columns. A name with a comma in it "
        "must be in double quotes; a third parent/carer cannot be imported.",
        "Line 10, child_first_name: Gil H. is already enrolled on this course.",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Zoë,K,Åsa,asa@x.net,,".encode("latin-1"), "Line 2: this line is not UTF-8 text"),
        (csv_bytes("A,K,B,b@x.net,,", encoding="utf-16"), "The file: The file is saved as UTF-16"),
        (b"", "The file: The file is empty."),
        (HEADER.encode(), "The file: The file has a header line but no families."),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "The file: This is not a text file."),
    ],
)
def test_wrong_encoding_and_empty_files(org: Any, data: bytes, expected: str) -> None:
    if (
        not data.startswith(HEADER.encode())
        and data
        and b"\x00" not in data
        and data[:2] != b"\xff\xfe"
    ):
        data = HEADER.encode() + b"\r\n" + data
    parsed = parse(org, data)
    assert len(parsed.problems) == 1
    assert parsed.problems[0].describe().startswith(expected)
    assert parsed.rows == []


def test_a_huge_file_and_too_many_rows(org: Any) -> None:
    huge = parse(org, csv_bytes(*["A,K,B,b@x.net,," + " " * 1000] * 300))
    assert len(huge.problems) == 1
    assert "the limit is 256 KB" in huge.problems[0].message
    many = parse(
        org, csv_bytes(*[f"Child{i},K,P{i},p{i}@x.net,," for i in range(csv_import.MAX_ROWS + 1)])
    )
    assert [p.message for p in many.problems] == [
        f"The file has more than {csv_import.MAX_ROWS} families; import at most "
        f"{csv_import.MAX_ROWS} at a time."
    ]
    assert many.rows == []
    exactly = parse(
        org, csv_bytes(*[f"Child{i},K,P{i},p{i}@x.net,," for i in range(csv_import.MAX_ROWS)])
    )
    assert exactly.problems == [] and len(exactly.rows) == csv_import.MAX_ROWS


def test_an_unterminated_quote(org: Any) -> None:
    parsed = parse(org, csv_bytes('"Amira,K,Rana,rana@x.net,,'))
    assert parsed.rows == []
    assert parsed.problems


def test_import_is_all_or_nothing(db_session: Session, teacher: Any, course: Any) -> None:
    data = csv_bytes("Amira,Khan,Rana,rana@x.net,,", "Ben,Tan,Jo,not-an-email,,")
    with pytest.raises(errors.ImportRejected) as caught:
        enrolment.import_families(
            db_session, actor=teacher, course_id=course.id, data=data, now=NOW
        )
    assert len(caught.value.problems) == 1
    assert access.families_of(db_session, course.id) == []


def test_an_imported_file_is_registered_by_the_job(
    app: Any, db_session: Session, zoom: Any, sandbox: SandboxZoom, teacher: Any, course: Any
) -> None:
    data = csv_bytes("Amira,Khan,Rana,rana@x.net,Omar,omar@x.net", "Ben,Tan,Jo,jo@x.net,,")
    families = enrolment.import_families(
        db_session, actor=teacher, course_id=course.id, data=data, now=NOW
    )
    assert [f.zoom_state for f in families] == ["pending", "pending"]
    assert len(audit_events(db_session, "family.imported")) == 1
    assert jobs.sync_zoom(app, now=NOW) == {"registered": 2}
    assert len(sandbox.approved(course.zoom_meeting_id)) == 2
    assert sorted(m.to_address for m in factories.outbox(db_session, "family.link")) == [
        "jo@x.net",
        "omar@x.net",
        "rana@x.net",
    ]


def upload(client: FlaskClient, course: Any, data: bytes, name: str = "families.csv") -> Any:
    path = f"/courses/{course.id}/families/import"
    return client.post(
        path,
        data={"csrf_token": csrf_of(client, path), "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_uploading_shows_every_problem_and_imports_nothing(
    db_session: Session, client: FlaskClient, teacher: Any, course: Any
) -> None:
    sign_in(client, teacher.email)
    response = upload(
        client,
        course,
        csv_bytes("Amira,Khan,Rana,rana@x.net,,", "Ben,Tan,Jo,jo@,,", "amira,k,X,x@x.net,,"),
    )
    assert response.status_code == 422
    page = text(response)
    assert "Nothing was imported: the file has 2 problem(s)." in page
    assert "“jo@” is not a valid email address." in page
    assert "amira K. is already on line 2 of this file." in page
    assert access.families_of(db_session, course.id) == []

    ok = upload(client, course, csv_bytes("Amira,Khan,Rana,rana@x.net,,"))
    assert ok.status_code == 302
    assert len(access.families_of(db_session, course.id)) == 1
    assert "1 family enrolled" in text(client.get(ok.headers["Location"]))


def big_upload(client: FlaskClient, course: Any, size: int) -> Any:
    path = f"/courses/{course.id}/families/import"
    token = csrf_of(client, path)
    return client.post(
        path,
        data={"csrf_token": token, "file": (io.BytesIO(b"x" * size), "big.csv")},
        content_type="multipart/form-data",
    )


def test_a_huge_upload_is_refused_with_its_size(
    db_session: Session, client: FlaskClient, teacher: Any, course: Any
) -> None:
    sign_in(client, teacher.email)
    response = big_upload(client, course, 3 * 1024 * 1024)
    assert response.status_code == 422
    assert "the limit is 256 KB" in text(response)
    assert access.families_of(db_session, course.id) == []


class TestBeyondTheRequestLimit:
    @pytest.fixture
    def app_config(self) -> dict[str, Any]:
        return {"MAX_CONTENT_LENGTH": 1024 * 1024}

    def test_is_refused_kindly(
        self, db_session: Session, client: FlaskClient, teacher: Any, course: Any
    ) -> None:
        sign_in(client, teacher.email)
        response = big_upload(client, course, 2 * 1024 * 1024)
        assert response.status_code == 302
        assert "far too large" in text(client.get(response.headers["Location"]))
        assert access.families_of(db_session, course.id) == []


def test_the_template_file(client: FlaskClient, teacher: Any, course: Any) -> None:
    sign_in(client, teacher.email)
    response = client.get(f"/courses/{course.id}/families/import/template.csv")
    assert response.data.decode("utf-8-sig").strip() == ",".join(csv_import.COLUMNS)
