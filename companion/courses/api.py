"""Courses in the JSON API (/api/v1): the same operations as the teacher pages.

Bearer tokens only (no cookies), so CSRF does not apply. Bodies are JSON objects; a Zoom outage
while creating answers 503 with the course kept "pending in Zoom" (its id is in the error).

A change is committed before Zoom is asked (:func:`_send_to_zoom`); the Zoom work then runs in
the request with no transaction open, so the answer says what Zoom did. When Zoom did not
answer, the change is kept and ``zoom.work`` says what companion will still send.

The module runs past 600 lines because its second half (from "the OpenAPI fragment" on) is the
OpenAPI description of these operations, written out by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import current_app, jsonify

from ..access import ADMIN, STAFF, TEACHER, allow, current_user
from ..api import openapi
from ..api.openapi import error_responses
from ..api.views import api_blueprint, json_body
from ..api.views import json_time as _time
from ..db import get_session, utcnow
from ..errors import CompanionError, ValidationError, error_response
from ..zoom import ZoomRefused, ZoomUnavailable
from . import access, changes, presentation, provisioning, timetable, verification, zoomwork
from . import schedule as sched
from .models import ZOOM_STATE_LABELS, ClassSession, Course

bp = api_blueprint("courses_api", __name__)
_body = json_body


# --- JSON out ---------------------------------------------------------------------------------


def class_json(course: Course, cls: ClassSession) -> dict[str, Any]:
    return {
        "id": cls.id,
        "course_id": course.id,
        "starts_at": _time(cls.starts_at),
        "local_start": timetable.local_time(course, cls.starts_at).isoformat(),
        "duration_minutes": cls.duration_minutes,
        "status": cls.status,
        "original_starts_at": _time(cls.original_starts_at),
        "zoom_occurrence_id": cls.occurrence_id,
    }


def course_json(course: Course, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": course.id,
        "title": course.title,
        "teacher": {
            "id": course.teacher.id,
            "name": course.teacher.name,
            "email": course.teacher.email,
        },
        "timezone": course.timezone,
        "first_date": course.first_date.isoformat(),
        "weekdays": list(course.weekday_list),
        "start_time": course.start_time.strftime("%H:%M"),
        "duration_minutes": course.duration_minutes,
        "class_count": course.class_count,
        "end_date": course.end_date.isoformat() if course.end_date else None,
        "ends_at": _time(course.ends_at),
        "zoom": {
            "state": course.zoom_state,
            "label": ZOOM_STATE_LABELS[course.zoom_state],
            "meeting_id": course.zoom_meeting_id,
            "error": course.zoom_error or None,
            "next_attempt_at": _time(course.zoom_next_attempt_at),
            "work": course.zoom_work or None,
        },
        "safety": {
            "state": course.safety_state,
            "safe": verification.course_is_safe(course),
            "last_verified_at": _time(course.last_verified_at),
            "problems": [
                {
                    "setting": p.setting,
                    "expected": p.expected,
                    "actual": p.actual,
                    "message": p.describe(),
                }
                for p in presentation.problem_list(course)
            ],
        },
    }
    if detail:
        data["safety"]["panel"] = [
            {"area": row.key, "label": row.label, "ok": row.ok, "reasons": list(row.reasons)}
            for row in presentation.safety_panel(course)
        ]
        data["join_url"] = course.join_url or None
        data["passcode"] = presentation.passcode_preview(course) if course.is_open else None
    return data


# --- JSON in ----------------------------------------------------------------------------------

SERIES_FIELDS = (
    "first_date",
    "weekdays",
    "start_time",
    "duration_minutes",
    "timezone",
    "class_count",
    "end_date",
)


def _check_fields(data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.", field=unknown[0])


def _date(value: Any, field: str) -> dt.date:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"Give {field} as a date, YYYY-MM-DD.", field=field)


def _clock(value: Any, field: str) -> dt.time:
    if isinstance(value, str) and len(value) in (5, 8):
        try:
            parsed = dt.time.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.second == 0 and parsed.tzinfo is None:
            return parsed
    raise ValidationError(f"Give {field} as a local time, HH:MM.", field=field)


def _int(value: Any, field: str, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"{field} must be a whole number.", field=field)
    if not low <= value <= high:
        raise ValidationError(f"{field} must be between {low} and {high}.", field=field)
    return value


def _title(data: Mapping[str, Any]) -> str:
    value = data.get("title")
    if not isinstance(value, str):
        raise ValidationError("Give the course a title.", field="title")
    return value


def _series(data: Mapping[str, Any], base: sched.Series | None, default_tz: str) -> sched.Series:
    """A series from the body, over ``base`` (the current one) for a partial change."""
    if base is None:
        missing = [
            f for f in ("first_date", "weekdays", "start_time", "duration_minutes") if f not in data
        ]
        if missing:
            raise ValidationError(f"Missing field(s): {', '.join(missing)}.", field=missing[0])
    values: dict[str, Any] = {
        "first_date": base.first_date if base else None,
        "weekdays": base.weekdays if base else (),
        "start_time": base.start_time if base else None,
        "duration_minutes": base.duration_minutes if base else None,
        "timezone": base.timezone if base else default_tz,
        "class_count": base.class_count if base else None,
        "end_date": base.end_date if base else None,
    }
    if "first_date" in data:
        values["first_date"] = _date(data["first_date"], "first_date")
    if "weekdays" in data:
        days = data["weekdays"]
        if not isinstance(days, list):
            raise ValidationError(
                'Give weekdays as a list of names, e.g. ["mon", "thu"].', field="weekdays"
            )
        values["weekdays"] = sched.parse_weekdays(days)
    if "start_time" in data:
        values["start_time"] = _clock(data["start_time"], "start_time")
    if "duration_minutes" in data:
        values["duration_minutes"] = _int(
            data["duration_minutes"],
            "duration_minutes",
            low=1,
            high=sched.ZOOM_MAX_DURATION_MINUTES,
        )
    if "timezone" in data:
        if not isinstance(data["timezone"], str):
            raise ValidationError("Give the time zone by name.", field="timezone")
        sched.zone(data["timezone"])
        values["timezone"] = data["timezone"]
    count_given = data.get("class_count") is not None
    end_given = data.get("end_date") is not None
    if count_given and end_given:
        raise ValidationError("Give either class_count or end_date, not both.", field="class_count")
    if count_given:
        values["class_count"] = _int(data["class_count"], "class_count", low=0, high=10_000)
        values["end_date"] = None
    elif end_given:
        values["end_date"] = _date(data["end_date"], "end_date")
        values["class_count"] = None
    elif base is None:
        raise ValidationError("Give class_count or end_date.", field="class_count")
    return sched.Series(**values)


def _teacher_id(data: Mapping[str, Any]) -> int | None:
    if data.get("teacher_id") is None:
        return None
    return _int(data["teacher_id"], "teacher_id", low=1, high=access.MAX_ID)


def _send_to_zoom(course_id: int) -> Course:
    """Commit the change, do its Zoom work with no transaction open, and read the course again.

    The API answers with what Zoom did, so its client waits for Zoom; nothing else does.
    """
    session = get_session()
    session.commit()
    zoomwork.run_now(current_app._get_current_object(), course_id)  # type: ignore[attr-defined]
    session.expire_all()
    course = session.get(Course, course_id)
    assert course is not None
    return course


def _class_answer(course_id: int, class_id: int) -> Any:
    course = _send_to_zoom(course_id)
    return jsonify(class_json(course, access.get_class(course, class_id)))


def _zoom_problem(course: Course) -> CompanionError | None:
    """Why the course is not in Zoom after its attempt, as the error the answer carries."""
    if course.zoom_state == "failed":
        return ZoomRefused(course.zoom_error or "Zoom refused the meeting.")
    if course.zoom_state == "pending":
        wait = 60
        if course.zoom_next_attempt_at is not None:
            wait = max(1, int((course.zoom_next_attempt_at - utcnow()).total_seconds()))
        reason = course.zoom_error or "Zoom did not answer yet; companion will try again."
        return ZoomUnavailable(
            "The course is saved but is still pending in Zoom: " + reason, retry_after=wait
        )
    return None


def _zoom_unavailable(course: Course, problem: CompanionError) -> Any:
    """The course was kept (committed before its Zoom work); say so with 503 (or 502 when Zoom
    refused)."""
    resp = error_response(problem.status, problem.code, problem.message, course_id=course.id)
    retry_after = getattr(problem, "retry_after", None)
    if retry_after:
        resp.headers["Retry-After"] = str(int(retry_after))
    return resp


def _outcome(outcome: provisioning.Outcome, status: int) -> Any:
    course = _send_to_zoom(outcome.course.id)
    problem = _zoom_problem(course)
    if problem is not None:
        return _zoom_unavailable(course, problem)
    body = course_json(course, detail=True)
    body["warnings"] = list(outcome.warnings)
    return jsonify(body), status


# --- routes -----------------------------------------------------------------------------------


@bp.get("/courses")
@allow(*STAFF)
def list_courses() -> Any:
    courses = access.list_courses(get_session(), current_user())
    return jsonify({"courses": [course_json(c) for c in courses]})


@bp.post("/courses")
@allow(TEACHER, ADMIN)
def create_course() -> Any:
    user = current_user()
    data = _body()
    _check_fields(data, ("title", "teacher_id", *SERIES_FIELDS))
    outcome = provisioning.create_course(
        get_session(),
        actor=user,
        title=_title(data),
        series=_series(data, None, user.organisation.timezone),
        now=utcnow(),
        teacher_id=_teacher_id(data),
        zoom_user_id=current_app.config["ZOOM_USER_ID"],
    )
    return _outcome(outcome, 201)


@bp.get("/courses/<int:course_id>")
@allow(*STAFF)
def get_course(course_id: int) -> Any:
    course = access.get_course(get_session(), current_user(), course_id)
    return jsonify(course_json(course, detail=True))


@bp.patch("/courses/<int:course_id>")
@allow(TEACHER, ADMIN)
def update_course(course_id: int) -> Any:
    user = current_user()
    session = get_session()
    data = _body()
    _check_fields(data, ("title", "teacher_id", *SERIES_FIELDS))
    course = access.get_course(session, user, course_id)
    now = utcnow()
    series = None
    if any(f in data for f in SERIES_FIELDS):
        series = _series(data, timetable.edit_defaults(course, now), course.timezone)
    outcome = changes.update_course(
        session,
        actor=user,
        course_id=course.id,
        now=now,
        title=_title(data) if "title" in data else None,
        teacher_id=_teacher_id(data),
        series=series,
    )
    return _outcome(outcome, 200)


@bp.get("/courses/<int:course_id>/classes")
@allow(*STAFF)
def list_classes(course_id: int) -> Any:
    course = access.get_course(get_session(), current_user(), course_id)
    return jsonify({"classes": [class_json(course, c) for c in timetable.class_sessions(course)]})


@bp.post("/courses/<int:course_id>/classes/<int:class_id>/move")
@allow(TEACHER, ADMIN)
def move_class(course_id: int, class_id: int) -> Any:
    data = _body()
    _check_fields(data, ("date", "start_time", "duration_minutes"))
    for name in ("date", "start_time"):
        if name not in data:
            raise ValidationError(f"Missing field: {name}.", field=name)
    duration = None
    if data.get("duration_minutes") is not None:
        duration = _int(
            data["duration_minutes"], "duration_minutes", low=1, high=sched.MAX_DURATION_MINUTES
        )
    cls = changes.move_class(
        get_session(),
        actor=current_user(),
        course_id=course_id,
        class_id=class_id,
        day=_date(data["date"], "date"),
        at=_clock(data["start_time"], "start_time"),
        duration_minutes=duration,
        now=utcnow(),
    )
    return _class_answer(course_id, cls.id)


@bp.post("/courses/<int:course_id>/classes/<int:class_id>/cancel")
@allow(TEACHER, ADMIN)
def cancel_class(course_id: int, class_id: int) -> Any:
    cls = changes.cancel_class(
        get_session(),
        actor=current_user(),
        course_id=course_id,
        class_id=class_id,
        now=utcnow(),
    )
    return _class_answer(course_id, cls.id)


@bp.post("/courses/<int:course_id>/cancel")
@allow(TEACHER, ADMIN)
def cancel_course(course_id: int) -> Any:
    changes.cancel_course(get_session(), actor=current_user(), course_id=course_id, now=utcnow())
    return jsonify(course_json(_send_to_zoom(course_id), detail=True))


@bp.post("/courses/<int:course_id>/passcode")
@allow(*STAFF)
def rotate_passcode(course_id: int) -> Any:
    changes.rotate_passcode(get_session(), actor=current_user(), course_id=course_id, now=utcnow())
    return jsonify(course_json(_send_to_zoom(course_id), detail=True))


@bp.post("/courses/<int:course_id>/verify")
@allow(*STAFF)
def verify_course(course_id: int) -> Any:
    user = current_user()
    session = get_session()
    verification.verify_now(session, actor=user, course_id=course_id, now=utcnow())
    return jsonify(course_json(_send_to_zoom(course_id), detail=True))


@bp.post("/courses/<int:course_id>/retry")
@allow(TEACHER, ADMIN)
def retry_course(course_id: int) -> Any:
    outcome = provisioning.retry_create(
        get_session(), actor=current_user(), course_id=course_id, now=utcnow()
    )
    return _outcome(outcome, 200)


# --- the OpenAPI fragment ---------------------------------------------------------------------

_ID = {"type": "integer", "minimum": 1, "maximum": access.MAX_ID}
_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
_WEEKDAYS = {
    "type": "array",
    "items": {"type": "string", "enum": list(sched.WEEKDAYS)},
    "minItems": 1,
    "maxItems": 7,
    "uniqueItems": True,
    "description": "Weekday names; a class is held on each, every week.",
}

SCHEMAS: dict[str, Any] = {
    "CourseSummary": {
        "type": "object",
        "required": [
            "id",
            "title",
            "teacher",
            "timezone",
            "first_date",
            "weekdays",
            "start_time",
            "duration_minutes",
            "class_count",
            "end_date",
            "ends_at",
            "zoom",
            "safety",
        ],
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "teacher": {
                "type": "object",
                "required": ["id", "name", "email"],
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "email": {"type": "string"},
                },
            },
            "timezone": {"type": "string"},
            "first_date": {"type": "string", "format": "date"},
            "weekdays": {"type": "array", "items": {"type": "string"}},
            "start_time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
            "duration_minutes": {"type": "integer"},
            "class_count": {"type": "integer", "nullable": True},
            "end_date": {"type": "string", "format": "date", "nullable": True},
            "ends_at": _NULLABLE_TIME,
            "zoom": {
                "type": "object",
                "required": ["state", "label", "meeting_id", "error", "next_attempt_at"],
                "properties": {
                    "state": {
                        "type": "string",
                        "enum": ["pending", "created", "failed", "cancelled", "closed"],
                        "description": "`pending`: saved, waiting for Zoom (retried "
                        "automatically); `failed`: Zoom refused it.",
                    },
                    "label": {"type": "string"},
                    "meeting_id": {"type": "integer", "format": "int64", "nullable": True},
                    "error": {"type": "string", "nullable": True},
                    "next_attempt_at": _NULLABLE_TIME,
                    "work": {
                        "type": "string",
                        "enum": ["create", "sync", "delete"],
                        "nullable": True,
                        "description": "What companion still has to tell Zoom (it retries "
                        "automatically); null when Zoom has everything.",
                    },
                },
            },
            "safety": {
                "type": "object",
                "required": ["state", "safe", "last_verified_at", "problems"],
                "properties": {
                    "state": {"type": "string", "enum": ["unverified", "safe", "not_safe"]},
                    "safe": {
                        "type": "boolean",
                        "description": "In Zoom and every enforced setting verified.",
                    },
                    "last_verified_at": _NULLABLE_TIME,
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["setting", "message"],
                            "properties": {
                                "setting": {"type": "string"},
                                "expected": {},
                                "actual": {},
                                "message": {"type": "string"},
                            },
                        },
                    },
                    "panel": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["area", "label", "ok", "reasons"],
                            "properties": {
                                "area": {"type": "string"},
                                "label": {"type": "string"},
                                "ok": {"type": "boolean", "nullable": True},
                                "reasons": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
    "Course": {
        "allOf": [
            {"$ref": "#/components/schemas/CourseSummary"},
            {
                "type": "object",
                "required": ["join_url", "passcode"],
                "properties": {
                    "join_url": {"type": "string", "nullable": True},
                    "passcode": {
                        "type": "string",
                        "nullable": True,
                        "description": "The meeting passcode (staff only).",
                    },
                    "warnings": {"type": "array", "items": {"type": "string"}},
                },
            },
        ]
    },
    "CourseCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["title", "first_date", "weekdays", "start_time", "duration_minutes"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "teacher_id": {"type": "integer", "description": "Admins only: the teacher."},
            "first_date": {"type": "string", "format": "date"},
            "weekdays": _WEEKDAYS,
            "start_time": {
                "type": "string",
                "pattern": "^[0-2][0-9]:[0-5][0-9]$",
                "description": "Local time in the course's time zone.",
            },
            "duration_minutes": {
                "type": "integer",
                "minimum": 1,
                "maximum": sched.MAX_DURATION_MINUTES,
            },
            "timezone": {"type": "string", "description": "Default: the organisation's."},
            "class_count": {"type": "integer", "minimum": 1, "maximum": sched.MAX_CLASSES},
            "end_date": {"type": "string", "format": "date"},
        },
    },
    "CourseUpdate": {
        "type": "object",
        "additionalProperties": False,
        "description": "Any of the fields; series fields change the whole series from "
        "first_date (default: the next class) on.",
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "teacher_id": {"type": "integer"},
            "first_date": {"type": "string", "format": "date"},
            "weekdays": _WEEKDAYS,
            "start_time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
            "duration_minutes": {
                "type": "integer",
                "minimum": 1,
                "maximum": sched.MAX_DURATION_MINUTES,
            },
            "timezone": {"type": "string"},
            "class_count": {"type": "integer", "minimum": 1, "maximum": sched.MAX_CLASSES},
            "end_date": {"type": "string", "format": "date"},
        },
    },
    "ClassSession": {
        "type": "object",
        "required": [
            "id",
            "course_id",
            "starts_at",
            "local_start",
            "duration_minutes",
            "status",
            "original_starts_at",
            "zoom_occurrence_id",
        ],
        "properties": {
            "id": {"type": "integer"},
            "course_id": {"type": "integer"},
            "starts_at": {"type": "string", "format": "date-time"},
            "local_start": {
                "type": "string",
                "format": "date-time",
                "description": "The start in the course's time zone, with its offset.",
            },
            "duration_minutes": {"type": "integer"},
            "status": {"type": "string", "enum": ["scheduled", "moved", "cancelled"]},
            "original_starts_at": _NULLABLE_TIME,
            "zoom_occurrence_id": {"type": "string", "nullable": True},
        },
    },
    "ClassMove": {
        "type": "object",
        "additionalProperties": False,
        "required": ["date", "start_time"],
        "properties": {
            "date": {"type": "string", "format": "date"},
            "start_time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
            "duration_minutes": {
                "type": "integer",
                "minimum": 1,
                "maximum": sched.MAX_DURATION_MINUTES,
            },
        },
    },
}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _json_body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_COURSE_ID = {"name": "course_id", "in": "path", "required": True, "schema": _ID}
_CLASS_ID = {"name": "class_id", "in": "path", "required": True, "schema": _ID}
_TAGS = ["courses"]

PATHS: dict[str, Any] = {
    "/courses": {
        "get": {
            "operationId": "listCourses",
            "summary": "Courses you may see (a teacher: their own; admin and lead: all)",
            "tags": _TAGS,
            "responses": {
                "200": {
                    "description": "The courses",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["courses"],
                                "properties": {
                                    "courses": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/CourseSummary"},
                                    }
                                },
                            }
                        }
                    },
                },
                **error_responses(401, 403),
            },
        },
        "post": {
            "operationId": "createCourse",
            "summary": "Schedule a course: one Zoom meeting, created, read back and verified",
            "description": "Bad input is refused with 422 before Zoom is called. When Zoom is "
            "down, slow or rate limiting the course is kept as `pending` and created "
            "automatically later: the answer is 503 with the course's id in "
            "`error.course_id`.",
            "tags": _TAGS,
            "requestBody": _json_body("CourseCreate"),
            "responses": {
                "201": _ok("Created in Zoom (see `safety` for the verification)", "Course"),
                **error_responses(400, 401, 403, 415, 422, 502, 503),
            },
        },
    },
    "/courses/{course_id}": {
        "parameters": [_COURSE_ID],
        "get": {
            "operationId": "getCourse",
            "summary": "One course, with its safety panel and passcode",
            "tags": _TAGS,
            "responses": {"200": _ok("The course", "Course"), **error_responses(401, 404)},
        },
        "patch": {
            "operationId": "updateCourse",
            "summary": "Change the title, teacher or the whole series",
            "tags": _TAGS,
            "requestBody": _json_body("CourseUpdate"),
            "responses": {
                "200": _ok("Changed in Zoom and verified", "Course"),
                **error_responses(400, 401, 403, 404, 409, 415, 422, 502, 503),
            },
        },
    },
    "/courses/{course_id}/classes": {
        "parameters": [_COURSE_ID],
        "get": {
            "operationId": "listClasses",
            "summary": "Every class of the course, cancelled ones included",
            "tags": _TAGS,
            "responses": {
                "200": {
                    "description": "The classes, oldest first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["classes"],
                                "properties": {
                                    "classes": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/ClassSession"},
                                    }
                                },
                            }
                        }
                    },
                },
                **error_responses(401, 404),
            },
        },
    },
    "/courses/{course_id}/classes/{class_id}/move": {
        "parameters": [_COURSE_ID, _CLASS_ID],
        "post": {
            "operationId": "moveClass",
            "summary": "Move one class to another local date and time",
            "tags": _TAGS,
            "requestBody": _json_body("ClassMove"),
            "responses": {
                "200": _ok("Moved in Zoom", "ClassSession"),
                **error_responses(400, 401, 403, 404, 409, 415, 422, 502, 503),
            },
        },
    },
    "/courses/{course_id}/classes/{class_id}/cancel": {
        "parameters": [_COURSE_ID, _CLASS_ID],
        "post": {
            "operationId": "cancelClass",
            "summary": "Cancel one class (its Zoom occurrence is deleted)",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Cancelled", "ClassSession"),
                **error_responses(401, 403, 404, 409, 415, 502, 503),
            },
        },
    },
    "/courses/{course_id}/cancel": {
        "parameters": [_COURSE_ID],
        "post": {
            "operationId": "cancelCourse",
            "summary": "Cancel the course: its Zoom meeting is deleted",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Cancelled", "Course"),
                **error_responses(401, 403, 404, 409, 415, 502, 503),
            },
        },
    },
    "/courses/{course_id}/passcode": {
        "parameters": [_COURSE_ID],
        "post": {
            "operationId": "rotatePasscode",
            "summary": "Give the meeting a new passcode (the old one leaked)",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Changed in Zoom and verified", "Course"),
                **error_responses(401, 403, 404, 409, 415, 502, 503),
            },
        },
    },
    "/courses/{course_id}/verify": {
        "parameters": [_COURSE_ID],
        "post": {
            "operationId": "verifyCourse",
            "summary": "Re-read the meeting from Zoom now, put drifted settings back, verify",
            "tags": _TAGS,
            "responses": {
                "200": _ok("The result is in `safety`", "Course"),
                **error_responses(401, 403, 404, 409, 415, 503),
            },
        },
    },
    "/courses/{course_id}/retry": {
        "parameters": [_COURSE_ID],
        "post": {
            "operationId": "retryCourse",
            "summary": "Try Zoom again now for a pending or refused course",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Created in Zoom", "Course"),
                **error_responses(401, 403, 404, 409, 415, 502, 503),
            },
        },
    },
}

openapi.EXTRA_PATHS.update(PATHS)
openapi.EXTRA_SCHEMAS.update(SCHEMAS)
