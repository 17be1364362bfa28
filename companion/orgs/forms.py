from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional


class OrganisationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64)])
    safeguarding_contact_name = StringField(
        "Safeguarding lead's name (shown to parents)", validators=[Optional(), Length(max=200)]
    )
    safeguarding_contact_email = EmailField(
        # Checked by the service: wtforms' Email() needs the email_validator package.
        "Safeguarding lead's email",
        validators=[Optional(), Length(max=254)],
    )
    safeguarding_contact_phone = StringField(
        "Safeguarding lead's phone", validators=[Optional(), Length(max=50)]
    )
    lead_as_alternative_host = BooleanField("Make the safeguarding lead alternative host")
    recording_retention_days = IntegerField(
        # InputRequired, not DataRequired: 0 is falsy, and "required" would hide the real problem.
        "Keep recordings for (days)",
        validators=[InputRequired(), NumberRange(1, 3650)],
    )
    audio_only_cutoff_minutes = IntegerField(
        "Audio-only requests close this many minutes before a class",
        validators=[Optional(), NumberRange(0, 7 * 24 * 60)],
        default=0,
    )
    child_name_style = SelectField(
        "Children are named by",
        choices=[
            SelectChoice("initial", "First name and surname initial"),
            SelectChoice("full", "First name and surname"),
        ],
    )
