"""The shapes of the courses API (/api/v1/courses): request bodies and answers.

Each model validates or serialises its shape and is its schema in the OpenAPI document (see
:mod:`companion.api.shapes`). The views are in :mod:`.api`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Self

from pydantic import MISSING, Field, model_validator
from pydantic.json_schema import JsonDict

from ..api.shapes import (
    Answer,
    Body,
    ClockTime,
    HourMinute,
    IsoDate,
    Rule,
    Text,
    UtcTime,
    WholeNumber,
    ZonedTime,
    given,
    one_of,
    refusal,
)
from . import models, presentation, timetable, verification
from . import schedule as sched
from .access import MAX_ID

# --- requests -----------------------------------------------------------------------------------


class Weekdays(Rule):
    """A list of weekday names, read by the schedule's own parser."""

    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, list):
            raise refusal('Give weekdays as a list of names, e.g. ["mon", "thu"].')
        return sched.parse_weekdays(value)

    def json_schema(self, generated: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "string", "enum": list(sched.WEEKDAYS)},
            "minItems": 1,
            "maxItems": 7,
            "uniqueItems": True,
            "description": "Weekday names; a class is held on each, every week.",
        }


class TimeZoneName(Rule):
    def check(self, value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise refusal("Give the time zone by name.")
        sched.zone(value)
        return value


Title = Annotated[str, Text("Give the course a title.")]
Day = Annotated[dt.date, IsoDate()]
Days = Annotated[tuple[str, ...], Weekdays()]
Zone = Annotated[str, TimeZoneName()]
# Zoom's limit; the schedule refuses more than MAX_DURATION_MINUTES, saying why.
SeriesMinutes = Annotated[int, WholeNumber(1, sched.ZOOM_MAX_DURATION_MINUTES)]
ClassCount = Annotated[int, WholeNumber(0, 10_000)]
TeacherId = Annotated[int, WholeNumber(1, MAX_ID)]

# Published limits that the services check (with a message that says why).
TITLE_LIMITS: JsonDict = {"minLength": 1, "maxLength": 200}
MINUTES_LIMITS: JsonDict = {"minimum": 1, "maximum": sched.MAX_DURATION_MINUTES}
COUNT_LIMITS: JsonDict = {"minimum": 1, "maximum": sched.MAX_CLASSES}


def _count_or_end(count: int | None, end: dt.date | None, *, required: bool) -> None:
    # null for either is the same as leaving it out.
    if count is not None and end is not None:
        raise refusal("Give either class_count or end_date, not both.", "class_count")
    if required and count is None and end is None:
        raise refusal("Give class_count or end_date.", "class_count")


class CourseCreate(Body):
    title: Title = Field(json_schema_extra=TITLE_LIMITS)
    first_date: Day
    weekdays: Days
    start_time: Annotated[dt.time, HourMinute("Local time in the course's time zone.")]
    duration_minutes: SeriesMinutes = Field(json_schema_extra=MINUTES_LIMITS)
    timezone: Zone | MISSING = Field(MISSING, description="Default: the organisation's.")
    class_count: ClassCount | None = Field(None, json_schema_extra=COUNT_LIMITS)
    end_date: Day | None = None
    teacher_id: TeacherId | None = Field(None, description="Admins only: the teacher.")

    @model_validator(mode="after")
    def _series_length(self) -> Self:
        _count_or_end(self.class_count, self.end_date, required=True)
        return self

    def series(self, default_timezone: str) -> sched.Series:
        return sched.Series(
            first_date=self.first_date,
            weekdays=self.weekdays,
            start_time=self.start_time,
            duration_minutes=self.duration_minutes,
            timezone=given(self.timezone, default_timezone),
            class_count=self.class_count,
            end_date=self.end_date,
        )


class CourseUpdate(Body):
    """Any of the fields; series fields change the whole series from first_date (default: the
    next class) on."""

    first_date: Day | MISSING = MISSING
    weekdays: Days | MISSING = MISSING
    start_time: Annotated[dt.time, HourMinute()] | MISSING = MISSING
    duration_minutes: SeriesMinutes | MISSING = Field(MISSING, json_schema_extra=MINUTES_LIMITS)
    timezone: Zone | MISSING = MISSING
    class_count: ClassCount | None = Field(None, json_schema_extra=COUNT_LIMITS)
    end_date: Day | None = None
    title: Title | MISSING = Field(MISSING, json_schema_extra=TITLE_LIMITS)
    teacher_id: TeacherId | None = None

    @model_validator(mode="after")
    def _series_length(self) -> Self:
        _count_or_end(self.class_count, self.end_date, required=False)
        return self

    def series_over(self, base: sched.Series) -> sched.Series | None:
        """The series with this change over ``base`` (the current one), or None when no series
        field was sent."""
        if not SERIES_FIELDS & self.model_fields_set:
            return None
        count, end = base.class_count, base.end_date
        if self.class_count is not None:
            count, end = self.class_count, None
        elif self.end_date is not None:
            count, end = None, self.end_date
        return dataclasses.replace(
            base,
            first_date=given(self.first_date, base.first_date),
            weekdays=given(self.weekdays, base.weekdays),
            start_time=given(self.start_time, base.start_time),
            duration_minutes=given(self.duration_minutes, base.duration_minutes),
            timezone=given(self.timezone, base.timezone),
            class_count=count,
            end_date=end,
        )


# The fields that make a series: sending any of them changes the whole series.
SERIES_FIELDS = frozenset(CourseUpdate.model_fields) - {"title", "teacher_id"}


class ClassMove(Body):
    date: Annotated[dt.date, IsoDate(missing="Missing field: date.")]
    start_time: Annotated[dt.time, HourMinute(missing="Missing field: start_time.")]
    duration_minutes: Annotated[int, WholeNumber(1, sched.MAX_DURATION_MINUTES)] | None = None


# --- answers ------------------------------------------------------------------------------------


class ClassSession(Answer):
    id: int
    course_id: int
    starts_at: UtcTime
    local_start: ZonedTime = Field(
        description="The start in the course's time zone, with its offset."
    )
    duration_minutes: int
    status: str = one_of(models.CLASS_STATUSES)
    original_starts_at: UtcTime | None
    zoom_occurrence_id: str | None

    @classmethod
    def of(cls, course: models.Course, row: models.ClassSession) -> ClassSession:
        return cls(
            id=row.id,
            course_id=course.id,
            starts_at=row.starts_at,
            local_start=timetable.local_time(course, row.starts_at),
            duration_minutes=row.duration_minutes,
            status=row.status,
            original_starts_at=row.original_starts_at,
            zoom_occurrence_id=row.occurrence_id,
        )


class ClassList(Answer):
    classes: list[ClassSession]


class Teacher(Answer):
    id: int
    name: str
    email: str


class CourseZoom(Answer):
    state: str = one_of(
        models.ZOOM_STATES,
        "`pending`: saved, waiting for Zoom (retried automatically); `failed`: Zoom refused it.",
    )
    label: str
    meeting_id: int | None = Field(json_schema_extra={"format": "int64"})
    error: str | None
    next_attempt_at: UtcTime | None
    work: str | None = one_of(
        [w for w in models.ZOOM_WORK if w],
        "What companion still has to tell Zoom (it retries automatically); null when Zoom has "
        "everything.",
    )


class SafetyProblem(Answer):
    setting: str
    expected: Any
    actual: Any
    message: str


class PanelRow(Answer):
    area: str
    label: str
    ok: bool | None
    reasons: list[str]


class Safety(Answer):
    state: str = one_of(models.SAFETY_STATES)
    safe: bool = Field(description="In Zoom and every enforced setting verified.")
    last_verified_at: UtcTime | None
    problems: list[SafetyProblem]

    @classmethod
    def of(cls, course: models.Course) -> Self:
        return cls(
            state=course.safety_state,
            safe=verification.course_is_safe(course),
            last_verified_at=course.last_verified_at,
            problems=[
                SafetyProblem(
                    setting=p.setting, expected=p.expected, actual=p.actual, message=p.describe()
                )
                for p in presentation.problem_list(course)
            ],
        )


class SafetyDetail(Safety):
    panel: list[PanelRow]

    @classmethod
    def of(cls, course: models.Course) -> Self:
        panel = [
            PanelRow(area=row.key, label=row.label, ok=row.ok, reasons=list(row.reasons))
            for row in presentation.safety_panel(course)
        ]
        return cls(**dict(Safety.of(course)), panel=panel)


class CourseSummary(Answer):
    id: int
    title: str
    teacher: Teacher
    timezone: str
    first_date: dt.date
    weekdays: list[str]
    start_time: ClockTime
    duration_minutes: int
    class_count: int | None
    end_date: dt.date | None
    ends_at: UtcTime | None
    zoom: CourseZoom
    safety: Safety

    @classmethod
    def of(cls, course: models.Course) -> Self:
        teacher = course.teacher
        return cls(
            id=course.id,
            title=course.title,
            teacher=Teacher(id=teacher.id, name=teacher.name, email=teacher.email),
            timezone=course.timezone,
            first_date=course.first_date,
            weekdays=list(course.weekday_list),
            start_time=course.start_time,
            duration_minutes=course.duration_minutes,
            class_count=course.class_count,
            end_date=course.end_date,
            ends_at=course.ends_at,
            zoom=CourseZoom(
                state=course.zoom_state,
                label=models.ZOOM_STATE_LABELS[course.zoom_state],
                meeting_id=course.zoom_meeting_id,
                error=course.zoom_error or None,
                next_attempt_at=course.zoom_next_attempt_at,
                work=course.zoom_work or None,
            ),
            safety=Safety.of(course),
        )


class CourseList(Answer):
    courses: list[CourseSummary]


class Course(CourseSummary):
    safety: SafetyDetail
    join_url: str | None
    passcode: str | None = Field(description="The meeting passcode (staff only).")
    warnings: list[str] | MISSING = MISSING

    @classmethod
    def of(cls, course: models.Course, warnings: list[str] | MISSING = MISSING) -> Self:
        return cls(
            **{
                **dict(CourseSummary.of(course)),
                "safety": SafetyDetail.of(course),
                "join_url": course.join_url or None,
                "passcode": presentation.passcode_preview(course) if course.is_open else None,
                "warnings": warnings,
            }
        )
