from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from ..access import ADMIN, allow, current_user
from ..accounts.views import form_failed
from ..db import get_session
from ..errors import CompanionError
from . import services
from .forms import OrganisationForm

bp = Blueprint("orgs", __name__, url_prefix="/admin/organisation")


@bp.route("/", methods=["GET", "POST"])
@allow(ADMIN)
def settings() -> Any:
    user = current_user()
    org = services.get(get_session(), user.organisation_id)
    form = OrganisationForm(obj=org)
    if form.validate_on_submit():
        values = {name: getattr(form, name).data for name in services.EDITABLE}
        values["audio_only_cutoff_minutes"] = values["audio_only_cutoff_minutes"] or 0
        values = {k: ("" if v is None else v) for k, v in values.items()}
        try:
            services.update(get_session(), actor=user, organisation_id=org.id, **values)
        except CompanionError as exc:
            form_failed(form, exc)
        else:
            flash("Settings saved.")
            return redirect(url_for("orgs.settings"))
    status = 422 if request.method == "POST" else 200
    return render_template("orgs/settings.html", form=form, org=org), status
