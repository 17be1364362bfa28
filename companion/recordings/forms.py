from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .concerns import MAX_TEXT, MIN_TEXT
from .services import MAX_INCIDENT_REF, MAX_REASON, MIN_REASON

REASON_HELP = "Recorded in the audit trail with your name, this file and the time."


class AccessForm(FlaskForm):
    """Asked every time the safeguarding lead opens a recording file."""

    reason = TextAreaField(
        "Why do you need this recording?",
        validators=[DataRequired(), Length(min=MIN_REASON, max=MAX_REASON)],
        description=REASON_HELP,
    )
    incident_ref = StringField(
        "Incident reference (if there is one)",
        validators=[Optional(), Length(max=MAX_INCIDENT_REF)],
    )


class ReasonForm(FlaskForm):
    """Placing or releasing a hold."""

    reason = TextAreaField(
        "Reason", validators=[DataRequired(), Length(min=MIN_TEXT, max=MAX_REASON)]
    )


class ConcernForm(FlaskForm):
    class_session_id = SelectField("Class", coerce=int, validators=[DataRequired()])
    what_happened = TextAreaField(
        "What happened?",
        validators=[DataRequired(), Length(min=MIN_TEXT, max=MAX_TEXT)],
        description="Facts as you saw or heard them. Only you and the safeguarding lead see this.",
    )
    when = StringField(
        "When in the class?",
        validators=[DataRequired(), Length(max=40)],
        description="The minute of the class (e.g. 12) or the time (e.g. 17:25).",
    )
