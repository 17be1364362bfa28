"""The schedule: computed with zoneinfo, DST-correct, and every bad input named before Zoom."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.courses import schedule as sched
from companion.errors import ValidationError

from ..factories import NOW, series


def test_weekly_class_keeps_local_time_across_the_clock_change():
    # London moves to BST on Sunday 29 March 2026.
    plan = sched.compute(series(first_date=dt.date(2026, 3, 16), class_count=4), now=NOW)
    local = [c.local_start.strftime("%Y-%m-%d %H:%M %Z") for c in plan.classes]
    assert local == [
        "2026-03-16 17:00 GMT",
        "2026-03-23 17:00 GMT",
        "2026-03-30 17:00 BST",
        "2026-04-06 17:00 BST",
    ]
    utc = [c.starts_at.strftime("%H:%M") for c in plan.classes]
    assert utc == ["17:00", "17:00", "16:00", "16:00"]
    assert all(c.starts_at.tzinfo is dt.UTC for c in plan.classes)


def test_several_weekdays_and_an_end_date():
    plan = sched.compute(
        series(weekdays=("thu", "mon"), class_count=None, end_date=dt.date(2026, 3, 19)),
        now=NOW,
    )
    assert [c.local_start.date().isoformat() for c in plan.classes] == [
        "2026-03-09",
        "2026-03-12",
        "2026-03-16",
        "2026-03-19",
    ]
    assert plan.series.weekdays == ("mon", "thu")
    assert sched.recurrence_body(plan) == {
        "type": 2,
        "repeat_interval": 1,
        "weekly_days": "2,5",
        "end_times": 4,
    }


def test_zoom_weekday_numbers_start_on_sunday():
    assert sched.zoom_weekly_days(["sun"]) == "1"
    assert sched.zoom_weekly_days(["sat", "mon", "sun"]) == "1,2,7"


def test_meeting_times_are_local_with_the_time_zone():
    plan = sched.compute(series(), now=NOW)
    times = sched.meeting_times(plan)
    assert times["type"] == 8
    assert times["start_time"] == "2026-03-09T17:00:00"
    assert times["timezone"] == "Europe/London"
    assert times["duration"] == 45
    assert times["recurrence"]["end_times"] == 10


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"class_count": None, "end_date": dt.date(2026, 3, 1)}, "end_date", "before the first"),
        ({"class_count": 0}, "class_count", "at least one class"),
        ({"class_count": 51}, "class_count", "at most 50"),
        (
            {"class_count": None, "end_date": dt.date(2027, 6, 1), "weekdays": ("mon", "thu")},
            "end_date",
            "more than 50",
        ),
        ({"duration_minutes": 0}, "duration_minutes", "at least one minute"),
        ({"duration_minutes": 1441}, "duration_minutes", "at most 300"),
        ({"duration_minutes": 301}, "duration_minutes", "at most 300"),
        ({"weekdays": ()}, "weekdays", "at least one weekday"),
        ({"weekdays": ("mon", "funday")}, "weekdays", "not a weekday"),
        ({"weekdays": ("mon", "Monday")}, "weekdays", "listed twice"),
        ({"weekdays": (2, 4)}, "weekdays", "by name"),
        ({"weekdays": ("tue",)}, "first_date", "Monday 9 March 2026"),
        ({"timezone": "Mars/Olympus"}, "timezone", "not a known time zone"),
        ({"class_count": None}, "class_count", "either the number"),
        ({"end_date": dt.date(2026, 5, 1)}, "class_count", "either the number"),
        ({"first_date": dt.date(2026, 2, 23)}, "first_date", "in the future"),
        ({"first_date": dt.date(2027, 3, 8)}, "first_date", "more than a year"),
    ],
)
def test_bad_series_is_refused_with_the_field_named(overrides, field, words):
    with pytest.raises(ValidationError) as err:
        sched.compute(series(**overrides), now=NOW)
    assert err.value.field == field
    assert words in err.value.message


def test_a_time_the_clock_change_skips_is_refused():
    # 01:30 does not exist in London on Sunday 29 March 2026.
    with pytest.raises(ValidationError) as err:
        sched.compute(
            series(first_date=dt.date(2026, 3, 15), weekdays=("sun",), start_time=dt.time(1, 30)),
            now=NOW,
        )
    assert err.value.field == "start_time"
    assert "01:30 does not exist on Sunday 29 March 2026" in err.value.message
    assert "clocks go forward" in err.value.message


def test_a_time_that_happens_twice_is_flagged_and_the_first_one_used():
    # 01:30 happens twice in London on Sunday 25 October 2026.
    plan = sched.compute(
        series(first_date=dt.date(2026, 10, 18), weekdays=("sun",), start_time=dt.time(1, 30)),
        now=NOW,
    )
    assert len(plan.warnings) == 1
    assert "happens twice on Sunday 25 October 2026" in plan.warnings[0]
    second = plan.classes[1]
    assert second.local_start.utcoffset() == dt.timedelta(hours=1)  # BST, the first 01:30


def test_weekday_names_in_any_case_and_order():
    assert sched.parse_weekdays("Thursday, mon") == ("mon", "thu")
    assert sched.parse_weekdays(["SUN", "sat"]) == ("sat", "sun")


def test_match_occurrences_pairs_by_instant_and_names_differences():
    plan = sched.compute(series(class_count=3), now=NOW)
    occ = [
        {
            "occurrence_id": str(i),
            "start_time": c.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration": 45,
            "status": "available",
        }
        for i, c in enumerate(plan.classes)
    ]
    ok = sched.match_occurrences(plan.classes, {"occurrences": occ})
    assert ok.ok and [o.occurrence_id for o in ok.matched] == ["0", "1", "2"]

    occ[1]["start_time"] = "2026-03-16T18:00:00Z"
    occ[2]["duration"] = 60
    bad = sched.match_occurrences(plan.classes, {"occurrences": occ})
    assert not bad.ok
    assert "Zoom has no class at Mon 16 Mar 2026 17:00 GMT" in bad.problems
    assert "Zoom has an extra class at Mon 16 Mar 2026 18:00 GMT" in bad.problems
    assert any("lasts 60 minutes in Zoom, not 45" in p for p in bad.problems)

    # Deleted occurrences do not count, and with ``since`` earlier classes are left out.
    occ[1]["status"] = "deleted"
    later = sched.match_occurrences(
        plan.classes, {"occurrences": occ}, since=plan.classes[1].starts_at
    )
    assert later.matched[0] is None and later.matched[1] is None
    assert later.problems == (
        "the class at Mon 23 Mar 2026 17:00 GMT lasts 60 minutes in Zoom, not 45",
    )


@settings(max_examples=200, deadline=None)
@given(
    first=st.dates(min_value=dt.date(2026, 3, 3), max_value=dt.date(2027, 2, 28)),
    days=st.sets(st.sampled_from(sched.WEEKDAYS), min_size=1, max_size=7),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    count=st.integers(1, 50),
    tz=st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Tokyo"]),
)
def test_every_class_is_at_the_local_time_on_a_chosen_day(first, days, hour, minute, count, tz):
    weekdays = tuple(days)
    while sched.WEEKDAYS[first.weekday()] not in days:
        first += dt.timedelta(days=1)
    spec = series(
        first_date=first,
        weekdays=weekdays,
        start_time=dt.time(hour, minute),
        class_count=count,
        timezone=tz,
    )
    try:
        plan = sched.compute(spec, now=NOW)
    except ValidationError as exc:
        assert exc.field in ("start_time", "first_date")  # a skipped hour, or over a year
        return
    assert plan.count == count
    starts = [c.starts_at for c in plan.classes]
    assert starts == sorted(set(starts))
    for cls in plan.classes:
        local = cls.starts_at.astimezone(sched.zone(tz))
        assert (local.hour, local.minute) == (hour, minute)
        assert sched.WEEKDAYS[local.weekday()] in days
