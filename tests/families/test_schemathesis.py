"""Schemathesis over the families operations, against real objects: a course with a family, so
generated requests reach the services (not only "not found"), and every answer is as documented."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session

from companion.accounts import services as accounts
from companion.courses.timetable import class_sessions

from .. import factories

pytestmark = pytest.mark.usefixtures("app_with_zoom")

FAMILY_PATHS = ("/families", "/classes")


def test_the_families_operations_conform(
    app_with_zoom: Flask, db_session: Session, zoom: Any, admin: Any, course: Any
) -> None:
    family = factories.enrol(
        db_session,
        zoom,
        admin,
        course,
        contacts=[("Rana", "rana@example.net"), ("Omar", "omar@example.net")],
    )
    real = {
        "family_id": family.id,
        "contact_id": family.contacts[0].id,
        "class_id": class_sessions(course)[0].id,
        "course_id": course.id,
    }
    db_session.flush()
    token = accounts.create_token(db_session, user=admin, name="fuzz")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app_with_zoom)
    operations = [
        o.ok() for o in schema.get_all_operations() if o.ok().path.startswith(FAMILY_PATHS)
    ]
    assert len(operations) == 7
    statuses: Counter[int] = Counter()
    turn = itertools.count()
    failures: list[str] = []

    def fuzz(op: Any) -> None:
        @settings(
            max_examples=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            # Half the time aim at the objects that exist, so the services do real work.
            aim = next(turn) % 2 == 0
            if case.path_parameters and aim:
                case.path_parameters = {k: real.get(k, v) for k, v in case.path_parameters.items()}
            if case.query and "course_id" in case.query and aim:
                case.query = {**case.query, "course_id": course.id}
            if isinstance(case.body, dict) and "course_id" in case.body:
                case.body = {**case.body, "course_id": course.id}
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call()
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{op.method.upper()} {op.path}: {response.status_code}")
            case.validate_response(
                response, excluded_checks=[schemathesis.checks.positive_data_acceptance]
            )

        run()

    for op in operations:
        fuzz(op)
    assert failures == []
    assert statuses[200] > 0 and statuses[201] > 0 and statuses[422] > 0 and statuses[404] > 0
