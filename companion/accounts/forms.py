from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from ..access import ROLE_LABELS

# SelectChoice, not (value, label) tuples: WTForms 3.3 deprecates tuples (3.4 removes them).
ROLE_CHOICES = [SelectChoice(value, label) for value, label in ROLE_LABELS.items()]
UNKNOWN_ROLE = "Choose one of the listed roles: " + ", ".join(ROLE_LABELS.values()) + "."


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class SetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The two passwords differ.")],
    )


class InviteForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    role = SelectField(
        "Role",
        choices=ROLE_CHOICES,
        validators=[DataRequired()],
        invalid_choice_message=UNKNOWN_ROLE,
    )


class RoleForm(FlaskForm):
    role = SelectField(
        "Role",
        choices=ROLE_CHOICES,
        validators=[DataRequired()],
        invalid_choice_message=UNKNOWN_ROLE,
    )


class ActionForm(FlaskForm):
    """A button that changes something: only a CSRF token."""


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=100)])
