"""Audio-only requests: one class or all remaining, withdrawn, refused after the cut-off, kept
as append-only records, idempotent on a second click."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from companion.courses import timetable
from companion.courses.changes import cancel_class
from companion.courses.timetable import class_sessions
from companion.errors import Conflict, NotFound
from companion.families import admit, audio_only, family_sessions, jobs
from companion.families.models import AudioOnlyEvent, Family

from .. import factories
from ..factories import NOW

pytestmark = pytest.mark.usefixtures("app_with_zoom")


def events(db_session: Session) -> int:
    return db_session.scalar(select(func.count(AudioOnlyEvent.id))) or 0


def state(db_session: Session, family: Family) -> list[bool]:
    """Audio-only per class of the course, in order."""
    result = []
    for cls in timetable.class_sessions(family.course):
        result.append(audio_only.audio_only_for_class(db_session, cls).get(family.id, False))
    return result


@pytest.fixture
def parent(db_session: Session, family: Family) -> family_sessions.FamilyPrincipal:
    return factories.principal(db_session, family.contacts[0])


def ask(db_session: Session, parent: Any, class_id: int | None, action: str = "request", now=NOW):
    return audio_only.request_audio_only(
        db_session, parent, class_id=class_id, action=action, now=now
    )


def test_one_class_then_a_second_click_then_withdrawal(
    db_session: Session, course: Any, family: Family, parent: Any
) -> None:
    first, second = class_sessions(course)[:2]
    result = ask(db_session, parent, first.id)
    assert result.changed
    assert "Amira will join the class on Monday 9 March at 17:00 by audio only" in result.message
    assert state(db_session, family)[:2] == [True, False]

    again = ask(db_session, parent, first.id)
    assert not again.changed
    assert "already asked" in again.message
    assert events(db_session) == 1

    back = ask(db_session, parent, first.id, "withdraw")
    assert back.changed and "with video" in back.message
    assert state(db_session, family)[0] is False
    assert not ask(db_session, parent, first.id, "withdraw").changed
    assert events(db_session) == 2
    rows = list(db_session.scalars(select(AudioOnlyEvent).order_by(AudioOnlyEvent.id)))
    assert [(r.action, r.class_id, r.contact_id, r.at) for r in rows] == [
        ("request", first.id, family.contacts[0].id, NOW),
        ("withdraw", first.id, family.contacts[0].id, NOW),
    ]


def test_all_remaining_classes_then_one_back_to_video(
    db_session: Session, course: Any, family: Family, parent: Any
) -> None:
    classes = class_sessions(course)
    result = ask(db_session, parent, None)
    assert result.changed and f"all {len(classes)} remaining" in result.message
    assert all(state(db_session, family))
    assert not ask(db_session, parent, None).changed

    ask(db_session, parent, classes[3].id, "withdraw")
    expected = [True] * len(classes)
    expected[3] = False
    assert state(db_session, family) == expected

    ask(db_session, parent, None, "withdraw")
    assert not any(state(db_session, family))


def test_all_remaining_leaves_classes_past_their_cut_off_alone(
    db_session: Session, org: Any, course: Any, family: Family, parent: Any
) -> None:
    org.audio_only_cutoff_minutes = 60
    first = class_sessions(course)[0]
    later = first.starts_at - dt.timedelta(minutes=5)  # past the first class's cut-off
    ask(db_session, parent, None, now=later)
    flags = state(db_session, family)
    assert flags[0] is False and all(flags[1:])


def test_after_the_cut_off_it_is_too_late(
    db_session: Session, org: Any, course: Any, family: Family, parent: Any
) -> None:
    org.audio_only_cutoff_minutes = 120
    first = class_sessions(course)[0]
    with pytest.raises(Conflict) as caught:
        ask(db_session, parent, first.id, now=first.starts_at - dt.timedelta(minutes=90))
    assert "Too late" in caught.value.message and "by 15:00" in caught.value.message
    assert ask(db_session, parent, first.id, now=first.starts_at - dt.timedelta(minutes=121))
    with pytest.raises(Conflict):
        ask(db_session, parent, first.id, "withdraw", now=first.starts_at - dt.timedelta(hours=1))
    assert events(db_session) == 1


def test_a_class_that_has_started_is_refused(
    db_session: Session, course: Any, family: Family, parent: Any
) -> None:
    first = class_sessions(course)[0]
    with pytest.raises(Conflict) as caught:
        ask(db_session, parent, first.id, now=first.starts_at + dt.timedelta(minutes=1))
    assert "has already started" in caught.value.message
    assert events(db_session) == 0


def test_a_class_of_another_course_is_not_found(
    db_session: Session, zoom: Any, teacher: Any, family: Family, parent: Any
) -> None:
    other = factories.make_course(db_session, zoom, teacher, title="Drama")
    with pytest.raises(NotFound):
        ask(db_session, parent, class_sessions(other)[0].id)
    with pytest.raises(NotFound):
        ask(db_session, parent, 2**40)
    assert events(db_session) == 0


def test_a_cancelled_class_and_a_withdrawn_family(
    db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family, parent: Any
) -> None:
    cls = class_sessions(course)[1]
    cancel_class(db_session, actor=teacher, course_id=course.id, class_id=cls.id, now=NOW)
    with pytest.raises(Conflict, match="cancelled"):
        ask(db_session, parent, cls.id)
    factories.withdraw(db_session, zoom, teacher, family)
    with pytest.raises(Conflict, match="withdrawn"):
        ask(db_session, parent, class_sessions(course)[0].id)


def test_one_family_never_changes_another(
    db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family, parent: Any
) -> None:
    other = factories.enrol(
        db_session, zoom, teacher, course, first="Ben", contacts=[("Jo", "jo@example.net")]
    )
    ask(db_session, parent, None)
    assert all(state(db_session, family))
    assert not any(state(db_session, other))


def test_the_admit_list_flags_audio_only(
    db_session: Session, zoom: Any, teacher: Any, course: Any, family: Family, parent: Any
) -> None:
    factories.enrol(db_session, zoom, teacher, course, first="Ben", contacts=[("Jo", "jo@x.net")])
    first = class_sessions(course)[0]
    ask(db_session, parent, first.id)
    rows = admit.admit_list(db_session, first, now=NOW)
    assert [(r.child_name, r.zoom_name, r.audio_only) for r in rows] == [
        ("Amira K.", "Amira K", True),
        ("Ben K.", "Ben K", False),
    ]


def test_a_change_after_the_summary_is_mailed_to_the_teacher(
    app: Any, db_session: Session, teacher: Any, course: Any, family: Family, parent: Any
) -> None:
    first = class_sessions(course)[0]
    before = first.starts_at - dt.timedelta(minutes=90)
    assert jobs.class_summaries(app, now=before) == {"sent": 1}
    ask(db_session, parent, first.id, now=before + dt.timedelta(minutes=10))
    (change,) = factories.outbox(db_session, "family.audio_only_change")
    assert change.to_address == teacher.email
    assert "Amira K. will join by audio only" in change.body_text
    # A change for a class whose summary has not gone out is not mailed on its own.
    ask(db_session, parent, class_sessions(course)[2].id, now=before)
    assert len(factories.outbox(db_session, "family.audio_only_change")) == 1
