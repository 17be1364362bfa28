"""Families in the JSON API (/api/v1): the same operations as the staff pages.

Bearer tokens only (no cookies), so CSRF does not apply. An enrolment is saved even when Zoom
is down: it is committed before Zoom is called, and the answer is 201 at once with
``zoom.state`` "pending" (Zoom is called right after the answer: read the family again to see
it registered, or ``zoom.error`` saying why not yet; the worker keeps trying). Links are
never returned: they go to each parent by email only.

The module runs past 600 lines because it declares the families resources of the published
OpenAPI document beside the views that serve them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..access import ADMIN, STAFF, TEACHER, allow, current_user
from ..api import openapi
from ..api.openapi import error_responses
from ..api.views import api_blueprint, json_body
from ..api.views import json_time as _time
from ..courses.api import class_json
from ..courses.models import ClassSession
from ..db import get_session, utcnow
from ..errors import ValidationError
from . import access, admit, agreement, audio_only, enrolment, jobs, links, registrants
from .models import ZOOM_STATE_LABELS, AgreementAcceptance, AgreementVersion, Family
from .people import MAX_CONTACTS, ContactInput, display_name, zoom_name

bp = api_blueprint("families_api", __name__)
_body = json_body


# --- JSON out ----------------------------------------------------------------------------------


def _latest_acceptances(session: Session, family: Family) -> dict[int, tuple[int, dt.datetime]]:
    found: dict[int, tuple[int, dt.datetime]] = {}
    for acceptance, version in session.execute(
        select(AgreementAcceptance, AgreementVersion)
        .join(AgreementVersion, AgreementVersion.id == AgreementAcceptance.agreement_id)
        .where(AgreementAcceptance.family_id == family.id)
        .order_by(AgreementVersion.version)
    ):
        found[acceptance.contact_id] = (version.version, acceptance.accepted_at)
    return found


def family_json(session: Session, family: Family, now: dt.datetime) -> dict[str, Any]:
    current = agreement.current(session, family.organisation, now=now)
    accepted = _latest_acceptances(session, family)
    contacts = []
    for contact in family.contacts:
        link = links.link_state(session, contact, now)
        version, at = accepted.get(contact.id, (None, None))
        contacts.append(
            {
                "id": contact.id,
                "position": contact.position,
                "name": contact.name,
                "email": contact.email,
                "link": {
                    "state": link.state,
                    "label": link.label,
                    "sent_at": _time(link.sent_at),
                    "last_used_at": _time(link.last_used_at),
                },
                "agreement": {
                    "accepted_version": version,
                    "accepted_at": _time(at),
                    "current": version == current.version,
                },
            }
        )
    return {
        "id": family.id,
        "course_id": family.course_id,
        "child": {
            "first_name": family.child_first_name,
            "last_name": family.child_last_name,
            "display_name": display_name(family),
            "zoom_name": zoom_name(family),
        },
        "status": family.status,
        "enrolled_at": _time(family.created_at),
        "withdrawn_at": _time(family.withdrawn_at),
        "zoom": {
            "state": family.zoom_state,
            "label": ZOOM_STATE_LABELS[family.zoom_state],
            "registrant_id": family.zoom_registrant_id,
            "error": family.zoom_error or None,
            "next_attempt_at": _time(family.zoom_next_attempt_at),
        },
        "agreement_version": current.version,
        "contacts": contacts,
    }


def _class_ref(cls: ClassSession) -> dict[str, Any]:
    return class_json(cls.course, cls)


# --- JSON in -----------------------------------------------------------------------------------


def _string(data: dict[str, Any], name: str, label: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValidationError(f"Give {label} as a string.", field=name)
    return value


def _contacts(data: dict[str, Any]) -> list[ContactInput | None]:
    given = data.get("contacts")
    if not isinstance(given, list) or not given:
        raise ValidationError(
            "Give contacts as a list of one or two {name, email} objects.", field="contacts"
        )
    if len(given) > MAX_CONTACTS:
        raise ValidationError(
            f"A family has at most {MAX_CONTACTS} parent/carer contacts.",
            field="contacts",
        )
    people: list[ContactInput | None] = []
    for index, item in enumerate(given, start=1):
        if not isinstance(item, dict) or set(item) - {"name", "email"}:
            raise ValidationError(
                f"Contact {index} must be an object with a name and an email.", field="contacts"
            )
        name, email = item.get("name"), item.get("email")
        if not isinstance(name, str) or not isinstance(email, str):
            raise ValidationError(
                f"Contact {index} needs a name and an email, both strings.", field="contacts"
            )
        people.append(ContactInput(name, email))
    return people


# --- routes ------------------------------------------------------------------------------------


def _course_id_arg() -> int:
    raw = request.args.get("course_id", "")
    if not raw.isdigit() or len(raw) > 12:
        raise ValidationError("Give the course as ?course_id=<id>.", field="course_id")
    return int(raw)


@bp.get("/families")
@allow(*STAFF)
def list_families() -> Any:
    session = get_session()
    now = utcnow()
    families = access.list_families(session, current_user(), _course_id_arg())
    return jsonify({"families": [family_json(session, f, now) for f in families]})


@bp.post("/families")
@allow(TEACHER, ADMIN)
def enrol() -> Any:
    session = get_session()
    data = _body()
    fields = {"course_id", "child_first_name", "child_last_name", "contacts"}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.", field=unknown[0])
    course_id = data.get("course_id")
    if not isinstance(course_id, int) or isinstance(course_id, bool):
        raise ValidationError("Give course_id, the course's id.", field="course_id")
    now = utcnow()
    family = enrolment.enrol(
        session,
        actor=current_user(),
        course_id=course_id,
        child_first_name=_string(data, "child_first_name", "the child's first name"),
        child_last_name=_string(data, "child_last_name", "the child's surname (or initial)"),
        contacts=_contacts(data),
        now=now,
    )
    # Zoom is called once this is committed and answered; read the family again to see it.
    jobs.after_request(family, actor_id=current_user().id)
    body = family_json(session, family, now)
    body["warnings"] = _warnings(family)
    return jsonify(body), 201


@bp.get("/families/<int:family_id>")
@allow(*STAFF)
def get_family(family_id: int) -> Any:
    session = get_session()
    family = access.find_family(session, current_user(), family_id)
    return jsonify(family_json(session, family, utcnow()))


@bp.post("/families/<int:family_id>/withdraw")
@allow(TEACHER, ADMIN)
def withdraw(family_id: int) -> Any:
    session = get_session()
    user = current_user()
    family = access.find_family(session, user, family_id)
    now = utcnow()
    registrants.withdraw(
        session, actor=user, course_id=family.course_id, family_id=family.id, now=now
    )
    if family.zoom_state == "cancelling":
        jobs.after_request(family, actor_id=user.id)
    body = family_json(session, family, now)
    body["warnings"] = _warnings(family)
    return jsonify(body)


def _warnings(family: Family) -> list[str]:
    """What the answer should say about Zoom work that is still to come."""
    if family.zoom_state == "pending" and family.zoom_error:
        return [f"Saved; the family is pending in Zoom: {family.zoom_error}"]
    if family.zoom_state == "pending":
        return [
            "Saved; the family is pending in Zoom until companion has registered it, right "
            "after this answer (see zoom.state)."
        ]
    if family.zoom_state == "cancelling":
        return ["Saved; companion is cancelling the family's Zoom registration now."]
    return []


def _link_change(family_id: int, contact_id: int, change: Any) -> Any:
    session = get_session()
    user = current_user()
    family = access.find_family(session, user, family_id)
    now = utcnow()
    result = change(
        session,
        actor=user,
        course_id=family.course_id,
        family_id=family.id,
        contact_id=contact_id,
        now=now,
    )
    return jsonify(
        {
            "result": result if isinstance(result, str) else "revoked",
            "family": family_json(session, family, now),
        }
    )


@bp.post("/families/<int:family_id>/contacts/<int:contact_id>/resend-link")
@allow(*STAFF)
def resend_link(family_id: int, contact_id: int) -> Any:
    return _link_change(family_id, contact_id, links.resend_link)


@bp.post("/families/<int:family_id>/contacts/<int:contact_id>/revoke-link")
@allow(*STAFF)
def revoke_link(family_id: int, contact_id: int) -> Any:
    return _link_change(family_id, contact_id, links.revoke_link)


@bp.get("/classes/<int:class_id>/audio-only")
@allow(*STAFF)
def class_audio_only(class_id: int) -> Any:
    session = get_session()
    cls = access.find_class(session, current_user(), class_id)
    now = utcnow()
    rows = admit.admit_list(session, cls, now=now)
    events = admit.audio_only_events_for_class(session, cls)
    return jsonify(
        {
            "class": _class_ref(cls),
            "cutoff_at": _time(audio_only.cutoff_of(cls.course.organisation, cls)),
            "families": [
                {
                    "family_id": row.family.id,
                    "child_name": row.child_name,
                    "zoom_name": row.zoom_name,
                    "audio_only": row.audio_only,
                    "registered_in_zoom": row.registered,
                    "agreement_accepted": row.agreement_accepted,
                }
                for row in rows
            ],
            "events": [
                {
                    "id": event.id,
                    "family_id": event.family_id,
                    "contact_id": event.contact_id,
                    "action": event.action,
                    "scope": event.scope,
                    "class_id": event.class_id,
                    "at": _time(event.at),
                }
                for event in events
            ],
        }
    )


# --- the OpenAPI fragment ---------------------------------------------------------------------

_ID = {"type": "integer", "minimum": 1, "maximum": access.MAX_ID}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS: dict[str, Any] = {
    "FamilyContact": {
        "type": "object",
        "required": ["id", "position", "name", "email", "link", "agreement"],
        "properties": {
            "id": {"type": "integer"},
            "position": {"type": "integer", "enum": [1, 2]},
            "name": {"type": "string"},
            "email": {"type": "string"},
            "link": {
                "type": "object",
                "required": ["state", "label", "sent_at", "last_used_at"],
                "description": "The parent's personal family link (never returned itself).",
                "properties": {
                    "state": {
                        "type": "string",
                        "enum": ["active", "queued", "revoked", "none"],
                        "description": "`queued`: owed, and sent automatically once the course "
                        "is safe and Zoom has registered the family.",
                    },
                    "label": {"type": "string"},
                    "sent_at": _NULLABLE_TIME,
                    "last_used_at": _NULLABLE_TIME,
                },
            },
            "agreement": {
                "type": "object",
                "required": ["accepted_version", "accepted_at", "current"],
                "properties": {
                    "accepted_version": {"type": "integer", "nullable": True},
                    "accepted_at": _NULLABLE_TIME,
                    "current": {
                        "type": "boolean",
                        "description": "This parent accepted the current version.",
                    },
                },
            },
        },
    },
    "Family": {
        "type": "object",
        "required": [
            "id",
            "course_id",
            "child",
            "status",
            "enrolled_at",
            "withdrawn_at",
            "zoom",
            "agreement_version",
            "contacts",
        ],
        "properties": {
            "id": {"type": "integer"},
            "course_id": {"type": "integer"},
            "child": {
                "type": "object",
                "required": ["first_name", "last_name", "display_name", "zoom_name"],
                "properties": {
                    "first_name": {"type": "string"},
                    "last_name": {
                        "type": "string",
                        "description": "The surname, or only its initial when the "
                        "organisation names children by initial.",
                    },
                    "display_name": {"type": "string"},
                    "zoom_name": {
                        "type": "string",
                        "description": "The name the child has in Zoom's waiting room.",
                    },
                },
            },
            "status": {"type": "string", "enum": ["enrolled", "withdrawn"]},
            "enrolled_at": _TIME,
            "withdrawn_at": _NULLABLE_TIME,
            "zoom": {
                "type": "object",
                "required": ["state", "label", "registrant_id", "error", "next_attempt_at"],
                "properties": {
                    "state": {
                        "type": "string",
                        "enum": ["pending", "registered", "failed", "cancelling", "cancelled"],
                        "description": "`pending`: waiting for Zoom (retried automatically); "
                        "`failed`: Zoom refused; `cancelling`: withdrawn, Zoom not confirmed "
                        "yet (retried automatically).",
                    },
                    "label": {"type": "string"},
                    "registrant_id": {"type": "string", "nullable": True},
                    "error": {"type": "string", "nullable": True},
                    "next_attempt_at": _NULLABLE_TIME,
                },
            },
            "agreement_version": {
                "type": "integer",
                "description": "The current version of the e-safety agreement.",
            },
            "contacts": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {"$ref": "#/components/schemas/FamilyContact"},
            },
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "FamilyEnrol": {
        "type": "object",
        "additionalProperties": False,
        "required": ["course_id", "child_first_name", "child_last_name", "contacts"],
        "properties": {
            "course_id": {"type": "integer", "minimum": 1, "maximum": access.MAX_ID},
            "child_first_name": {"type": "string", "minLength": 1, "maxLength": 64},
            "child_last_name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": "The surname; only its initial is kept when the organisation "
                "names children by initial.",
            },
            "contacts": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "email"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        "email": {"type": "string", "format": "email", "maxLength": 254},
                    },
                },
            },
        },
    },
    "LinkResult": {
        "type": "object",
        "required": ["result", "family"],
        "properties": {
            "result": {
                "type": "string",
                "enum": ["sent", "queued", "revoked"],
                "description": "`queued`: the old link is dead; the new one is sent "
                "automatically once the course is safe and the family registered in Zoom.",
            },
            "family": {"$ref": "#/components/schemas/Family"},
        },
    },
    "ClassAudioOnly": {
        "type": "object",
        "required": ["class", "cutoff_at", "families", "events"],
        "properties": {
            "class": {"$ref": "#/components/schemas/ClassSession"},
            "cutoff_at": {
                "type": "string",
                "format": "date-time",
                "description": "Requests and withdrawals for this class close at this time.",
            },
            "families": {
                "type": "array",
                "description": "The children expected (the list to admit), audio-only flagged.",
                "items": {
                    "type": "object",
                    "required": [
                        "family_id",
                        "child_name",
                        "zoom_name",
                        "audio_only",
                        "registered_in_zoom",
                        "agreement_accepted",
                    ],
                    "properties": {
                        "family_id": {"type": "integer"},
                        "child_name": {"type": "string"},
                        "zoom_name": {"type": "string"},
                        "audio_only": {"type": "boolean"},
                        "registered_in_zoom": {"type": "boolean"},
                        "agreement_accepted": {"type": "boolean"},
                    },
                },
            },
            "events": {
                "type": "array",
                "description": "Every request and withdrawal that concerns this class, oldest "
                "first (`scope` `remaining`: made for all remaining classes).",
                "items": {
                    "type": "object",
                    "required": [
                        "id",
                        "family_id",
                        "contact_id",
                        "action",
                        "scope",
                        "class_id",
                        "at",
                    ],
                    "properties": {
                        "id": {"type": "integer"},
                        "family_id": {"type": "integer"},
                        "contact_id": {"type": "integer"},
                        "action": {"type": "string", "enum": ["request", "withdraw"]},
                        "scope": {"type": "string", "enum": ["class", "remaining"]},
                        "class_id": {"type": "integer", "nullable": True},
                        "at": _TIME,
                    },
                },
            },
        },
    },
}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_FAMILY_ID = {"name": "family_id", "in": "path", "required": True, "schema": _ID}
_CONTACT_ID = {"name": "contact_id", "in": "path", "required": True, "schema": _ID}
_CLASS_ID = {"name": "class_id", "in": "path", "required": True, "schema": _ID}
_TAGS = ["families"]

PATHS: dict[str, Any] = {
    "/families": {
        "get": {
            "operationId": "listFamilies",
            "summary": "The families of a course (a teacher: only their own courses)",
            "tags": _TAGS,
            "parameters": [
                {"name": "course_id", "in": "query", "required": True, "schema": _ID},
            ],
            "responses": {
                "200": {
                    "description": "The families, enrolled first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["families"],
                                "properties": {
                                    "families": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Family"},
                                    }
                                },
                            }
                        }
                    },
                },
                **error_responses(401, 404, 422),
            },
        },
        "post": {
            "operationId": "enrolFamily",
            "summary": "Enrol a child with one or two parents/carers; registered in Zoom",
            "description": "Bad input is refused with 422 (409 for a child already enrolled) "
            "before anything is saved. The answer comes before Zoom is asked: 201 with "
            "`zoom.state` `pending` (and `warnings` saying so); companion registers the family "
            "right after, so read it again to see `registered`, or `zoom.error` when Zoom did "
            "not answer (retried automatically). Each parent gets their own link by email once "
            "the family is registered and the course is safe.",
            "tags": _TAGS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/FamilyEnrol"}}
                },
            },
            "responses": {
                "201": _ok("Enrolled (see `zoom` for the registration)", "Family"),
                **error_responses(400, 401, 403, 404, 409, 415, 422),
            },
        },
    },
    "/families/{family_id}": {
        "parameters": [_FAMILY_ID],
        "get": {
            "operationId": "getFamily",
            "summary": "One family, with its parents' link and agreement states",
            "tags": _TAGS,
            "responses": {"200": _ok("The family", "Family"), **error_responses(401, 404)},
        },
    },
    "/families/{family_id}/withdraw": {
        "parameters": [_FAMILY_ID],
        "post": {
            "operationId": "withdrawFamily",
            "summary": "Withdraw a family: its Zoom registrant is cancelled, its page says so",
            "description": "The family is withdrawn at once, with `zoom.state` `cancelling` "
            "while companion cancels its registrant right after the answer (retried "
            "automatically when Zoom does not answer), then `cancelled`.",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Withdrawn", "Family"),
                **error_responses(401, 403, 404, 409, 415),
            },
        },
    },
    "/families/{family_id}/contacts/{contact_id}/resend-link": {
        "parameters": [_FAMILY_ID, _CONTACT_ID],
        "post": {
            "operationId": "resendFamilyLink",
            "summary": "Send one parent a new personal link; the old one stops working",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Sent, or queued until the course is safe", "LinkResult"),
                **error_responses(401, 403, 404, 409, 415),
            },
        },
    },
    "/families/{family_id}/contacts/{contact_id}/revoke-link": {
        "parameters": [_FAMILY_ID, _CONTACT_ID],
        "post": {
            "operationId": "revokeFamilyLink",
            "summary": "Stop one parent's link (and sign out every browser it opened)",
            "tags": _TAGS,
            "responses": {
                "200": _ok("Revoked", "LinkResult"),
                **error_responses(401, 403, 404, 409, 415),
            },
        },
    },
    "/classes/{class_id}/audio-only": {
        "parameters": [_CLASS_ID],
        "get": {
            "operationId": "listClassAudioOnly",
            "summary": "The children expected in a class with audio-only flagged, and every "
            "request and withdrawal for it",
            "tags": _TAGS,
            "responses": {
                "200": _ok("The admit list and the requests", "ClassAudioOnly"),
                **error_responses(401, 404),
            },
        },
    },
}

openapi.EXTRA_PATHS.update(PATHS)
openapi.EXTRA_SCHEMAS.update(SCHEMAS)
