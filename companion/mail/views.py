from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.exceptions import NotFound

from ..access import ADMIN, allow, current_user
from ..db import get_session, utcnow
from ..errors import CompanionError
from . import services

bp = Blueprint("mail", __name__, url_prefix="/admin/outbox")


def _message(message_id: int) -> services.OutboxMessage:
    msg = get_session().get(services.OutboxMessage, message_id)
    user = current_user()
    if msg is None or msg.organisation_id not in (None, user.organisation_id):
        raise NotFound("No such message.")
    return msg


@bp.get("/")
@allow(ADMIN)
def outbox() -> Any:
    user = current_user()
    messages = services.list_outbox(get_session(), user.organisation_id)
    return render_template("mail/outbox.html", messages=messages)


@bp.get("/<int:message_id>")
@allow(ADMIN)
def message(message_id: int) -> Any:
    return render_template("mail/message.html", msg=_message(message_id))


@bp.post("/<int:message_id>/resend")
@allow(ADMIN)
def resend(message_id: int) -> Any:
    msg = _message(message_id)
    try:
        services.resend(get_session(), msg, actor=current_user(), now=utcnow())
    except CompanionError as exc:
        flash(exc.message, "error")
    else:
        flash("The message will be sent again within a minute.")
    return redirect(url_for("mail.message", message_id=msg.id))
