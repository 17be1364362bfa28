"""Staff forms: enrol a child, upload a CSV, edit the e-safety agreement.

The family side's forms are plain HTML with a token tied to the family session (see
family_views), so they are not FlaskForms.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import EmailField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .agreement import MAX_LENGTH


class EnrolForm(FlaskForm):
    child_first_name = StringField(
        "Child's first name", validators=[DataRequired(), Length(max=64)]
    )
    # Relabelled per the organisation's child_name_style ("surname" or "surname initial").
    child_last_name = StringField("Child's surname", validators=[DataRequired(), Length(max=64)])
    contact1_name = StringField("Parent/carer's name", validators=[DataRequired(), Length(max=200)])
    # Addresses are checked by the service (wtforms' Email() needs email_validator).
    contact1_email = EmailField(
        "Parent/carer's email", validators=[DataRequired(), Length(max=254)]
    )
    contact2_name = StringField(
        "Second parent/carer's name (optional)", validators=[Optional(), Length(max=200)]
    )
    contact2_email = EmailField(
        "Second parent/carer's email (optional)", validators=[Optional(), Length(max=254)]
    )


class ContactForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to upload.")])


class AgreementForm(FlaskForm):
    body = TextAreaField("Agreement text", validators=[DataRequired(), Length(max=MAX_LENGTH)])
