from __future__ import annotations

import zoneinfo
from functools import lru_cache

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ..errors import ValidationError
from . import schedule as sched


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


@lru_cache(maxsize=1)
def timezone_choices() -> list[SelectChoice]:
    names = sorted(
        n for n in zoneinfo.available_timezones() if "/" in n and not n.startswith("Etc/")
    )
    return [SelectChoice(n, n.replace("_", " ")) for n in [*names, "UTC"]]


WEEKDAY_CHOICES = [SelectChoice(key, sched.WEEKDAY_NAMES[key]) for key in sched.WEEKDAYS]


class CourseForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    teacher_id = SelectField("Teacher", coerce=int, choices=[])
    timezone = SelectField("Time zone", choices=[], validators=[DataRequired()])
    first_date = DateField("First class", validators=[InputRequired()])
    weekdays = MultiCheckboxField(
        "Meets on",
        choices=WEEKDAY_CHOICES,
        validators=[DataRequired(message="Choose at least one weekday.")],
    )
    start_time = TimeField("Starts at (local time)", validators=[InputRequired()])
    duration_minutes = IntegerField(
        "Length (minutes)",
        validators=[InputRequired(), NumberRange(1, sched.MAX_DURATION_MINUTES)],
    )
    end_mode = RadioField(
        "The course ends",
        choices=[
            SelectChoice("count", "after a number of classes"),
            SelectChoice("date", "on a date"),
        ],
        default="count",
    )
    class_count = IntegerField(
        "Number of classes", validators=[Optional(), NumberRange(1, sched.MAX_CLASSES)]
    )
    end_date = DateField("Last date", validators=[Optional()])

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.timezone.choices = timezone_choices()

    def series(self) -> sched.Series:
        """The series as typed; missing end values are named against their field."""
        count = end = None
        if self.end_mode.data == "date":
            if self.end_date.data is None:
                raise ValidationError("Give the date of the last class.", field="end_date")
            end = self.end_date.data
        else:
            if self.class_count.data is None:
                raise ValidationError("Give the number of classes.", field="class_count")
            count = self.class_count.data
        return sched.Series(
            first_date=self.first_date.data,
            weekdays=tuple(self.weekdays.data or ()),
            start_time=self.start_time.data.replace(second=0, microsecond=0),
            duration_minutes=self.duration_minutes.data,
            timezone=self.timezone.data,
            class_count=count,
            end_date=end,
        )


class MoveClassForm(FlaskForm):
    date = DateField("New date", validators=[InputRequired()])
    start_time = TimeField("New start (local time)", validators=[InputRequired()])
    duration_minutes = IntegerField(
        "Length (minutes)",
        validators=[InputRequired(), NumberRange(1, sched.MAX_DURATION_MINUTES)],
    )
