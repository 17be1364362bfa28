from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from ..access import ADMIN, allow, current_user
from ..db import get_session
from . import services

bp = Blueprint("mail", __name__, url_prefix="/admin/outbox")


@bp.get("/")
@allow(ADMIN)
def outbox() -> Any:
    user = current_user()
    messages = services.list_outbox(get_session(), user.organisation_id)
    return render_template("mail/outbox.html", messages=messages)


@bp.get("/<int:message_id>")
@allow(ADMIN)
def message(message_id: int) -> Any:
    from werkzeug.exceptions import NotFound

    msg = get_session().get(services.OutboxMessage, message_id)
    user = current_user()
    if msg is None or msg.organisation_id not in (None, user.organisation_id):
        raise NotFound("No such message.")
    return render_template("mail/message.html", msg=msg)
