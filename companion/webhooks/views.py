"""POST /zoom/webhook: Zoom's events, signed with the subscription's secret token.

Order matters: size first (never read an oversized body), then the signature over the raw bytes
with the timestamp window, and only then is the body parsed. A refusal (401 for the signature,
400 for a malformed event, 413 for size) is logged without the body and changes nothing. An
accepted event is stored with its redelivery key and committed before the 200 goes out; the
work happens afterwards in the worker, so Zoom gets its answer well within three seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..access import public
from ..accounts.auth import client_ip
from ..db import utcnow
from ..errors import ValidationError, error_response
from ..security import csrf
from ..zoom.webhooks import (
    WebhookRejected,
    sandbox_webhook_secret,
    url_validation_response,
    verify,
)
from . import services
from .intake import intake

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)


def _refuse(status: int, code: str, message: str, reason: str) -> Any:
    # Who and why, never the body: it may carry children's names and download tokens.
    log.warning(
        "zoom webhook refused (%s): %s; from %s, %s bytes",
        status,
        reason,
        client_ip() or "?",
        request.content_length if request.content_length is not None else "unknown",
    )
    return error_response(status, code, message)


@bp.post("/zoom/webhook")
@public
@csrf.exempt
def zoom_webhook() -> Any:
    config = current_app.config
    limit = int(config["WEBHOOK_MAX_BYTES"])
    if request.content_length is not None and request.content_length > limit:
        return _refuse(413, "too_large", "The body is too large.", f"declared size over {limit}")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _refuse(413, "too_large", "The body is too large.", f"body over {limit} bytes")

    secret = sandbox_webhook_secret(config)
    try:
        verify(
            secret,
            request.headers,
            body,
            now=time.time(),
            tolerance=int(config["WEBHOOK_TOLERANCE_SECONDS"]),
        )
    except WebhookRejected as exc:
        return _refuse(401, "bad_signature", "The request is not signed by Zoom.", exc.reason)

    try:
        document = services.parse(body)
        if document["event"] == services.URL_VALIDATION:
            return jsonify(url_validation_response(secret, services.plain_token(document)))
        # Stored in a transaction shared with the deliveries arriving at the same moment, and
        # committed before this returns (see intake.py); the request's own session is unused.
        stored = intake(current_app).store(document, body, now=utcnow())
    except ValidationError as exc:
        return _refuse(400, "malformed", exc.message, exc.message)
    if stored.duplicate:
        log.info(
            "zoom webhook %s: a redelivery of event %s (%s); nothing to do",
            document["event"],
            stored.event_id,
            stored.status,
        )
        return jsonify({"status": "duplicate"})
    return jsonify({"status": "received"})
