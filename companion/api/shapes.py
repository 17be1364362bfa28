"""The JSON API's shapes: one Pydantic model per request body, query string and answer.

Each model is the one declaration of its shape: a request model validates what a client sent and
an answer model serialises what a view returns, and both give the OpenAPI document its schema
(see :mod:`.openapi`).

Request fields are checked by :class:`Rule`\\ s, which keep the API's own wording ("Give
start_time as a local time, HH:MM.") and name the field; :func:`problems` turns every problem
Pydantic found into one :class:`~companion.errors.ValidationError`. A limit that a service
checks, and explains better than a type could ("A class can last at most 300 minutes"), is
published with ``Field(json_schema_extra=...)`` and is not checked twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Self, TypeVar

import pydantic
from pydantic import MISSING, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from ..access import ROLES
from ..accounts.models import User
from ..errors import ValidationError

T = TypeVar("T")


def json_time(at: dt.datetime) -> str:
    """A UTC time as the API writes it everywhere: 2026-01-07T16:00:00Z."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DATE_TIME = {"type": "string", "format": "date-time"}
HH_MM = "^[0-2][0-9]:[0-5][0-9]$"

# Answer field types: how a value is written, and the schema that says so.
UtcTime = Annotated[
    dt.datetime, PlainSerializer(json_time, return_type=str), WithJsonSchema(_DATE_TIME)
]
# A time in a course's zone, with its offset: 2026-01-07T16:00:00+00:00.
ZonedTime = Annotated[
    dt.datetime, PlainSerializer(dt.datetime.isoformat, return_type=str), WithJsonSchema(_DATE_TIME)
]
ClockTime = Annotated[
    dt.time,
    PlainSerializer(lambda at: at.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": HH_MM}),
]


def one_of(values: Iterable[str | int], description: str | None = None) -> Any:
    """An answer field that is always one of ``values`` (the model's own list of states)."""
    return Field(description=description, json_schema_extra={"enum": list(values)})


def given(value: T | MISSING, default: T) -> T:
    """A request field's value, or ``default`` when the client left it out."""
    return default if value is MISSING else value


# --- checks with the API's wording --------------------------------------------------------------


def refusal(message: str, field: str | None = None) -> PydanticCustomError:
    """A problem with the API's own wording; ``field`` names it when a model-level check (one
    that compares fields) finds it. The message goes in the context, so braces in it are text."""
    context = {"message": message} if field is None else {"message": message, "field": field}
    return PydanticCustomError("companion", "{message}", context)


class Rule:
    """How one request field is checked and what it publishes, as ``Annotated[type, Rule()]``.

    ``check`` gets what the client sent and returns the value for ``type`` (or raises
    :func:`refusal`, or a domain :class:`ValidationError` from a shared parser);
    ``json_schema`` is the schema published for it, by default the type's own.
    ``missing`` is what to say when the field is left out; without it the field is listed in
    one "Missing field(s): ..." problem.
    """

    missing: str | None = None

    def check(self, value: Any, field: str) -> Any:
        return value

    def json_schema(self, generated: dict[str, Any]) -> dict[str, Any]:
        return generated

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> CoreSchema:
        def validate(value: Any, info: core_schema.ValidationInfo) -> Any:
            try:
                return self.check(value, info.field_name or "")
            except ValidationError as exc:
                raise refusal(exc.message) from None

        return core_schema.with_info_before_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return self.json_schema(dict(handler(schema)))


class Text(Rule):
    """A string; ``message`` when it is not one, or is left out."""

    def __init__(self, message: str) -> None:
        self.message = self.missing = message

    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise refusal(self.message)
        return value


class WholeNumber(Rule):
    """An integer (not a boolean, not 45.0) from ``low`` to ``high``; ``message``, when given,
    is said for every problem (and when the field is left out)."""

    def __init__(self, low: int | None = None, high: int | None = None, message: str = "") -> None:
        self.low, self.high = low, high
        self.message = message
        self.missing = message or None

    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise refusal(self.message or f"{field} must be a whole number.")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise refusal(self.message or f"{field} must be between {self.low} and {self.high}.")
        return value

    def json_schema(self, generated: dict[str, Any]) -> dict[str, Any]:
        bounds = {"minimum": self.low, "maximum": self.high}
        return {**generated, **{k: v for k, v in bounds.items() if v is not None}}


class IsoDate(Rule):
    """A date written YYYY-MM-DD."""

    def __init__(self, missing: str | None = None) -> None:
        self.missing = missing

    def check(self, value: Any, field: str) -> Any:
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise refusal(f"Give {field} as a date, YYYY-MM-DD.")


class HourMinute(Rule):
    """A local time of day, HH:MM (HH:MM:00 is taken too), without a zone."""

    def __init__(self, description: str | None = None, missing: str | None = None) -> None:
        self.description = description
        self.missing = missing

    def check(self, value: Any, field: str) -> Any:
        if isinstance(value, str) and len(value) in (5, 8):
            try:
                parsed = dt.time.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.second == 0 and parsed.tzinfo is None:
                return parsed
        raise refusal(f"Give {field} as a local time, HH:MM.")

    def json_schema(self, generated: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "pattern": HH_MM}
        if self.description:
            schema["description"] = self.description
        return schema


class QueryId(Rule):
    """An id in a query string: digits only; ``message`` when it is not, or is left out."""

    def __init__(self, message: str) -> None:
        self.message = self.missing = message

    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, str) or not value.isdigit() or len(value) > 12:
            raise refusal(self.message)
        return int(value)


# --- the base models ----------------------------------------------------------------------------


def _rule_of(model: type[BaseModel], name: str) -> Rule | None:
    found = model.model_fields.get(name)
    return next((m for m in found.metadata if isinstance(m, Rule)), None) if found else None


def problems(model: type[BaseModel], exc: pydantic.ValidationError) -> ValidationError:
    """Every problem Pydantic found, in the API's words, as one error: the first problem is its
    ``field`` and ``message``, and all of them are in ``problems``. Unknown fields come first
    (they are usually a misspelt name), and fields left out are listed together."""
    unknown: list[str] = []
    missing: list[str] = []
    # (field, message); the message None holds the place of the "Missing field(s)" problem.
    found: list[tuple[str, str | None]] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        name = str(loc[0]) if loc else str(error.get("ctx", {}).get("field", ""))
        rule = _rule_of(model, name)
        wording = rule.missing if rule is not None else None
        if error["type"] == "extra_forbidden":
            unknown.append(name)
        elif error["type"] == "missing" and wording is None:
            if not missing:
                found.append((name, None))
            missing.append(name)
        elif error["type"] == "missing":
            found.append((name, wording))
        else:
            found.append((name, error["msg"]))
    listed = [
        {"field": name, "message": message or f"Missing field(s): {', '.join(missing)}."}
        for name, message in found
    ]
    if unknown:
        unknown.sort()
        listed.insert(
            0, {"field": unknown[0], "message": f"Unknown field(s): {', '.join(unknown)}."}
        )
    first = listed[0]
    return ValidationError(first["message"], field=first["field"] or None, problems=listed)


class Body(BaseModel):
    """A JSON request body; fields it does not declare are refused."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise problems(cls, exc) from None


class Query(Body):
    """A query string; parameters it does not declare are ignored, as browsers and proxies add
    their own."""

    model_config = ConfigDict(extra="ignore")


class Answer(BaseModel):
    """What an operation answers with. The class docstring is published as its description."""


# --- shapes shared by every domain --------------------------------------------------------------


class Problem(Answer):
    """One problem with the request."""

    field: str
    message: str


class ErrorDetail(Answer):
    code: str
    message: str
    field: str | MISSING = Field(MISSING, description="The field at fault, when there is one.")
    problems: list[Problem] | MISSING = Field(
        MISSING,
        description="Every problem found in the body or query (the first is `field` and "
        "`message`).",
    )


class Error(Answer):
    error: ErrorDetail


class MeOrganisation(Answer):
    id: int
    name: str
    timezone: str


class Me(Answer):
    id: int
    email: str = Field(json_schema_extra={"format": "email"})
    name: str
    role: str = one_of(ROLES)
    organisation: MeOrganisation

    @classmethod
    def of(cls, user: User) -> Me:
        org = user.organisation
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            organisation=MeOrganisation(id=org.id, name=org.name, timezone=org.timezone),
        )
