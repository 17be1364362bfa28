"""The admin's security review page (/admin/security) and the reminder on the home page."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from ..access import ADMIN, allow, current_user, signed_in_user
from ..accounts import twofactor
from ..accounts.forms import ActionForm
from ..accounts.views import form_failed
from ..courses.safety import SafetyProblem
from ..db import get_session, utcnow
from ..errors import CompanionError
from ..orgs.models import Organisation
from . import services

bp = Blueprint("security_review", __name__, url_prefix="/admin/security")


class ReviewForm(FlaskForm):
    note = TextAreaField(
        "What you checked and what you changed",
        validators=[DataRequired(), Length(max=services.MAX_NOTE)],
    )


def _local(when: dt.datetime | None, timezone: str, fmt: str = "%d %b %Y") -> str:
    if when is None:
        return "never"
    return when.astimezone(zoneinfo.ZoneInfo(timezone)).strftime(fmt)


@bp.app_context_processor
def _reminder_global() -> dict[str, Any]:
    def security_review_reminder() -> dict[str, str] | None:
        """For an admin whose organisation's review is due: when the last one was."""
        user = signed_in_user()
        if user is None or user.role != ADMIN:
            return None
        org = get_session().get(Organisation, user.organisation_id)
        if org is None or not services.review_due(org, utcnow()):
            return None
        return {"last": _local(org.last_security_review_at, org.timezone)}

    return {"security_review_reminder": security_review_reminder}


@bp.route("", methods=["GET", "POST"])
@allow(ADMIN)
def index() -> Any:
    user = current_user()
    session = get_session()
    form = ReviewForm()
    status = 200
    if form.validate_on_submit():
        try:
            services.record_review(session, actor=user, note=form.note.data, now=utcnow())
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422
        else:
            flash("The security review is recorded.")
            return redirect(url_for("security_review.index"))
    elif request.method == "POST":
        status = 422
    org = session.get(Organisation, user.organisation_id)
    assert org is not None
    data = services.overview(session, org, now=utcnow())
    return render_template(
        "security_review/index.html",
        o=data,
        form=form,
        action_form=ActionForm(),
        local=lambda when, fmt="%d %b %Y": _local(when, org.timezone, fmt),
        is_required=twofactor.is_required,
        describe_problem=lambda p: SafetyProblem.from_dict(p).describe(),
        unused_days=services.UNUSED_AFTER.days,
        every_months=services.REVIEW_EVERY_MONTHS,
        # Recordings still held by Zoom (its own section of the page).
        held_by_zoom=services.held_by_zoom(session, org.id, now=utcnow()),
    ), status
