"""The sandbox's admin endpoints under ``/_sandbox`` (not Zoom; no auth, loopback only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from .. import delivery
from ..errors import ZoomApiError, bad_request
from ..simulate import end_instance, simulate_class
from .common import bool_arg, json_body

if TYPE_CHECKING:
    from ..core import Sandbox


def blueprint(sandbox: Sandbox) -> Blueprint:
    bp = Blueprint("admin", __name__)

    @bp.get("/_sandbox/state")
    def admin_state() -> Response:
        return jsonify(sandbox.state())

    @bp.post("/_sandbox/reset")
    def admin_reset() -> Response:
        sandbox.reset()
        return jsonify({"reset": True})

    @bp.get("/_sandbox/stats")
    def admin_stats() -> Response:
        return jsonify(sandbox.stats())

    @bp.delete("/_sandbox/stats")
    def admin_stats_reset() -> Response:
        sandbox.reset_stats()
        return Response(status=204)

    @bp.get("/_sandbox/recording-settings")
    def admin_recording_settings() -> Response:
        return jsonify(sandbox.recording_settings())

    @bp.post("/_sandbox/recording-settings")
    def admin_set_recording_settings() -> Response:
        # As an account admin would in Zoom's web portal (Settings > Recording).
        return jsonify(sandbox.set_recording_settings(json_body()))

    @bp.get("/_sandbox/locks")
    def admin_locks() -> Response:
        return jsonify(sandbox.locks())

    @bp.post("/_sandbox/locks")
    def admin_set_locks() -> Response:
        return jsonify(sandbox.set_locks(json_body()))

    @bp.delete("/_sandbox/locks")
    def admin_clear_locks() -> Response:
        sandbox.clear_locks()
        return Response(status=204)

    @bp.get("/_sandbox/faults")
    def admin_faults() -> Response:
        return jsonify(sandbox.faults())

    @bp.post("/_sandbox/faults")
    def admin_add_fault() -> Response:
        body = json_body()
        specs = body if isinstance(body, list) else [body]
        added = [sandbox.add_fault(spec) for spec in specs]
        response = jsonify(added if isinstance(body, list) else added[0])
        response.status_code = 201
        return response

    @bp.delete("/_sandbox/faults")
    def admin_clear_faults() -> Response:
        sandbox.clear_faults()
        return Response(status=204)

    @bp.post("/_sandbox/meetings/<meeting_id>/settings")
    def admin_tamper(meeting_id: str) -> Response:
        return jsonify(sandbox.tamper_settings(meeting_id, json_body()))

    @bp.post("/_sandbox/meetings/<meeting_id>/end")
    def admin_end(meeting_id: str) -> Response:
        doc = sandbox.meeting_doc(meeting_id)
        if not doc.get("live_instance"):
            raise bad_request("No class of this meeting is live.")
        return jsonify(end_instance(sandbox, doc["live_instance"]))

    @bp.post("/_sandbox/simulate")
    def admin_simulate() -> Response:
        body = json_body()
        if not isinstance(body, dict) or "meeting_id" not in body:
            raise bad_request('Send {"meeting_id": ..., optional "occurrence_id", ...}.')
        participants = body.get("participants")
        count = body.get("participant_count")
        if participants is None and count is not None:
            participants = _first_participants(sandbox, body["meeting_id"], int(count))
        summary = simulate_class(
            sandbox,
            body["meeting_id"],
            occurrence_id=body.get("occurrence_id"),
            participants=participants,
            teacher=body.get("teacher") or "Teacher",
            start_at=body.get("start_at"),
            minutes=body.get("minutes"),
            end=body.get("end", True),
            record=body.get("record"),
            recording_bytes=body.get("recording_bytes"),
            pace=float(body.get("pace") or 0),
        )
        response = jsonify(summary)
        response.status_code = 201
        return response

    @bp.get("/_sandbox/deliveries")
    def admin_deliveries() -> Response:
        since = int(request.args.get("since") or 0)
        return jsonify(delivery.deliveries(sandbox, since_id=since))

    @bp.get("/_sandbox/deliveries/<int:delivery_id>")
    def admin_delivery(delivery_id: int) -> Response:
        try:
            return jsonify(delivery.delivery(sandbox, delivery_id))
        except KeyError:
            raise ZoomApiError(404, 404, f"No delivery {delivery_id}.") from None

    @bp.post("/_sandbox/deliveries/<int:delivery_id>/redeliver")
    def admin_redeliver(delivery_id: int) -> Response:
        try:
            return jsonify(delivery.redeliver(sandbox, delivery_id))
        except KeyError:
            raise ZoomApiError(404, 404, f"No delivery {delivery_id}.") from None

    @bp.post("/_sandbox/deliver")
    def admin_deliver() -> Response:
        attempted = delivery.deliver_due(sandbox, force=bool_arg("force"))
        return jsonify({"attempted": attempted})

    @bp.post("/_sandbox/validate-endpoint")
    def admin_validate() -> Response:
        return jsonify(delivery.validate_endpoint(sandbox))

    @bp.post("/_sandbox/tokens/revoke")
    def admin_revoke() -> Response:
        return jsonify({"revoked": sandbox.revoke_access_tokens()})

    return bp


def _first_participants(sandbox: Sandbox, meeting_id: Any, count: int) -> list[Any]:
    """``count`` participants: approved registrants first, then guests to make up the number."""
    doc = sandbox.meeting_doc(meeting_id)
    regs = [r["id"] for r in sandbox.registrants_of(doc["id"], "approved")][:count]
    guests = [{"name": f"Guest {n + 1}"} for n in range(count - len(regs))]
    return [*regs, *guests]
