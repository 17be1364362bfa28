"""The sandbox's behaviour: what Zoom would do for each API call, over the sandbox's store.

Everything here is plain Python (no Flask), so tests and the simulation can drive it directly;
``app.py`` only maps HTTP requests onto these methods. Errors are :class:`ZoomApiError` with
Zoom's status, code and message.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import fnmatch
import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import schedule, validation
from .errors import (
    ZoomApiError,
    bad_request,
    invalid_token,
    meeting_not_found,
    no_recording,
    user_not_found,
    validation_failed,
)
from .store import Store, dumps, loads

try:  # the client package defines them too; keep one source when it is importable
    from companion.zoom import (  # type: ignore[attr-defined]
        SANDBOX_ACCOUNT_ID,
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
    )
except ImportError:  # pragma: no cover - only while the client package is incomplete
    SANDBOX_ACCOUNT_ID = "sandbox-account"
    SANDBOX_CLIENT_ID = "sandbox-client"
    SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - a fixed, public test credential

UTC = dt.UTC
HOST_USER_ID = "sAnDb0xH0stUser000001Q"
HOST_EMAIL = "host@zoom-sandbox.invalid"
HOST_TIMEZONE = "UTC"
ACCESS_TOKEN_TTL = 3600
START_URL_TTL = 2 * 3600  # "The start_url value's expiration time is two hours"
WEBHOOK_DOWNLOAD_TOKEN_TTL = 24 * 3600
DEFAULT_DOWNLOAD_ACCESS_TTL = 24 * 3600
MAX_DOWNLOAD_ACCESS_TTL = 604800
FILE_LINK_TTL = 120  # the signed file URL a download redirects to
RECOVER_WINDOW = 7 * 24 * 3600  # deleted meetings can be recovered for 7 days
MAX_REGISTRANTS = 4999
REGISTRANT_DAILY_LIMIT = 3
RETRY_DELAYS = (5 * 60, 20 * 60, 60 * 60)  # Zoom: +5 min, then +20, then +60
DELIVERY_TIMEOUT = 3.0
SCOPES = (
    "meeting:read:meeting:admin meeting:write:meeting:admin meeting:update:meeting:admin "
    "meeting:delete:meeting:admin meeting:update:status:admin meeting:write:registrant:admin "
    "meeting:read:list_registrants:admin meeting:read:registrant:admin "
    "meeting:update:registrant_status:admin meeting:delete:registrant:admin "
    "meeting:read:list_meetings:admin cloud_recording:read:list_recording_files:admin "
    "cloud_recording:read:list_user_recordings:admin "
    "cloud_recording:delete:meeting_recording:admin cloud_recording:delete:recording_file:admin"
)

# A new sandbox account's meeting defaults. The safety settings start OFF so that companion has
# to ask for each of them (and its verification notices when it did not).
DEFAULT_SETTINGS: dict[str, Any] = {
    "host_video": False,
    "participant_video": False,
    "cn_meeting": False,
    "in_meeting": False,
    "join_before_host": False,
    "jbh_time": 0,
    "mute_upon_entry": False,
    "watermark": False,
    "use_pmi": False,
    "approval_type": 2,
    "audio": "voip",
    "auto_recording": "none",
    "enforce_login": False,
    "enforce_login_domains": "",
    "alternative_hosts": "",
    "alternative_hosts_email_notification": True,
    "alternative_host_update_polls": False,
    "close_registration": False,
    "show_share_button": False,
    "allow_multiple_devices": False,
    "registrants_confirmation_email": True,
    "registrants_email_notification": True,
    "waiting_room": False,
    "waiting_room_options": {"mode": "follow_setting"},
    "meeting_authentication": False,
    "encryption_type": "enhanced_encryption",
    "approved_or_denied_countries_or_regions": {"enable": False},
    "breakout_room": {"enable": False},
    "internal_meeting": False,
    "continuous_meeting_chat": {
        "enable": False,
        "auto_add_invited_external_users": False,
        "auto_add_meeting_participants": False,
    },
    "participant_focused_meeting": False,
    "push_change_to_calendar": False,
    "resources": [],
    "device_testing": False,
    "focus_mode": False,
    "meeting_invitees": [],
    "private_meeting": False,
    "email_notification": True,
    "host_save_video_order": False,
    "sign_language_interpretation": {"enable": False},
    "language_interpretation": {"enable": False},
    "email_in_attendee_report": False,
    "auto_start_meeting_summary": False,
    "auto_start_ai_companion_questions": False,
    "allow_host_control_participant_mute_state": False,
    "disable_participant_video": False,
}


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Sandbox method as one transaction: concurrent requests cannot interleave their
    read-modify-write, and an error leaves nothing half-done."""

    @functools.wraps(method)
    def wrapper(self: Sandbox, *args: Any, **kwargs: Any) -> Any:
        with self.store.transaction():
            return method(self, *args, **kwargs)

    return wrapper


def _token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def _zoom_uuid() -> str:
    # Zoom's meeting-instance UUIDs are base64 of 16 bytes and may contain "/" and "+".
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            target[part] = nxt
        target = nxt
    target[parts[-1]] = copy.deepcopy(value)


def _get_dotted(source: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(source, dict) or part not in source:
            return None
        source = source[part]
    return source


def encode_page(offset: int, kind: str) -> str:
    raw = json.dumps({"o": offset, "k": kind}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page(token: str | None, kind: str) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data.get("k") != kind or not isinstance(data.get("o"), int) or data["o"] < 0:
            raise ValueError
        return int(data["o"])
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("Invalid next_page_token.") from None


def page_size_of(raw: str | None, default: int = 30, maximum: int = 300) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_failed([("page_size", "Invalid field: must be a number.")]) from None
    if value < 1:
        raise validation_failed([("page_size", "Invalid field: must be at least 1.")])
    return min(value, maximum)


class Sandbox:
    """One sandbox account with one host user, its meetings, registrants and recordings."""

    def __init__(
        self,
        store_path: str,
        *,
        webhook_url: str | None,
        webhook_secret: str,
        public_url: str,
        clock: Callable[[], float] = time.time,
        retry_delays: Iterable[float] = RETRY_DELAYS,
        delivery_timeout: float = DELIVERY_TIMEOUT,
        account_id: str = SANDBOX_ACCOUNT_ID,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
    ):
        self.store = Store(store_path)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.delivery_timeout = float(delivery_timeout)
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.delivery_wakeup = threading.Event()
        self.delivery_lock = threading.Lock()
        # Tests may deliver webhooks into a WSGI test client instead of over HTTP:
        # (url, body, headers, timeout) -> status. None means a real HTTP POST.
        self.webhook_transport: Callable[[str, bytes, dict[str, str], float], int] | None = None
        key = self.store.get_meta("signing_key")
        if key is None:
            key = secrets.token_hex(32)
            self.store.set_meta("signing_key", key)
        self._signing_key = bytes.fromhex(key)

    def close(self) -> None:
        self.store.close()

    # --- time -------------------------------------------------------------------------------

    def now(self) -> float:
        return float(self.clock())

    def now_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), tz=UTC).replace(microsecond=0)

    # --- tokens ------------------------------------------------------------------------------

    def _issue(self, kind: str, ttl: float, scope: str = "") -> str:
        token = _token(32)
        now = self.now()
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 3600,))
            conn.execute(
                "INSERT INTO tokens (token, kind, scope, expires_at) VALUES (?, ?, ?, ?)",
                (token, kind, scope, now + ttl),
            )
        return token

    def _token_row(self, token: str | None) -> Any:
        if not token:
            return None
        return self.store.one("SELECT * FROM tokens WHERE token = ?", (token,))

    def oauth_token(
        self,
        *,
        grant_type: str | None,
        account_id: str | None,
        client_id: str | None,
        client_secret: str | None,
    ) -> dict[str, Any]:
        """POST /oauth/token with ``grant_type=account_credentials``."""
        good_client = hmac.compare_digest(
            f"{client_id}:{client_secret}".encode(),
            f"{self.client_id}:{self.client_secret}".encode(),
        )
        if not client_id or not good_client:
            raise ZoomApiError(401, 0, "Invalid client_id or client_secret")
        if grant_type != "account_credentials":
            raise ZoomApiError(400, 0, "unsupported grant type")
        if not account_id or account_id != self.account_id:
            raise ZoomApiError(400, 0, "Invalid account_id")
        token = self._issue("access", ACCESS_TOKEN_TTL)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": SCOPES,
            "api_url": self.public_url,
        }

    def check_access_token(self, token: str | None) -> None:
        row = self._token_row(token)
        if row is None or row["kind"] != "access":
            raise invalid_token()
        if row["expires_at"] <= self.now():
            raise invalid_token("Access token is expired.")

    def revoke_access_tokens(self) -> int:
        return self.store.execute("DELETE FROM tokens WHERE kind = 'access'").rowcount

    def download_token_valid(self, token: str | None, instance_uuid: str) -> bool:
        row = self._token_row(token)
        if row is None or row["expires_at"] <= self.now():
            return False
        if row["kind"] == "access":
            return True
        return row["kind"] == "download" and row["scope"] == instance_uuid

    def start_token_valid(self, token: str | None, meeting_id: int) -> bool:
        row = self._token_row(token)
        return (
            row is not None
            and row["kind"] == "zak"
            and row["scope"] == str(meeting_id)
            and row["expires_at"] > self.now()
        )

    # --- users --------------------------------------------------------------------------------

    def check_user(self, user_id: str) -> None:
        if user_id not in ("me", HOST_USER_ID, HOST_EMAIL):
            raise user_not_found(user_id)

    # --- locks, faults, tampering (admin) -----------------------------------------------------

    def locks(self) -> dict[str, Any]:
        return dict(self.store.get_meta("locks", {}))

    @_atomic
    def set_locks(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Lock account-level settings: Zoom then applies these values whatever is asked.

        Keys are setting names, dotted for nested ones (``waiting_room_options.mode``); a null
        value removes that lock.
        """
        if not isinstance(changes, dict):
            raise bad_request("Locks must be a JSON object of setting: value.")
        locks = self.locks()
        for key, value in changes.items():
            if value is None:
                locks.pop(key, None)
            else:
                locks[key] = value
        self.store.set_meta("locks", locks)
        return locks

    def clear_locks(self) -> None:
        self.store.set_meta("locks", {})

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Fail the next ``count`` requests whose path matches ``path`` (a glob).

        Spec keys: ``path`` (required), ``method``, ``count`` (default 1, -1 for always),
        ``status`` (e.g. 429, 500, 503; omit for a slow but successful answer), ``retry_after``
        (header value: seconds or an HTTP date), ``delay`` (seconds to wait first), ``body``
        (JSON to answer instead of Zoom's), ``truncate_after`` (file downloads: stop after so
        many bytes), ``html`` (answer 200 with Zoom's HTML error page).
        """
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise bad_request('A fault needs at least {"path": "/v2/meetings/*"}.')
        count = spec.get("count", 1)
        if not isinstance(count, int) or count == 0 or count < -1:
            raise bad_request("count must be a positive number, or -1 for every request.")
        status = spec.get("status")
        if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
            raise bad_request("status must be an HTTP error status (400-599).")
        delay = spec.get("delay", 0)
        if not isinstance(delay, int | float) or not 0 <= delay <= 120:
            raise bad_request("delay must be 0..120 seconds.")
        clean = {
            k: spec[k]
            for k in (
                "path",
                "method",
                "status",
                "retry_after",
                "delay",
                "body",
                "truncate_after",
                "html",
            )
            if k in spec
        }
        if clean.get("method"):
            clean["method"] = str(clean["method"]).upper()
        cur = self.store.execute(
            "INSERT INTO faults (spec, remaining) VALUES (?, ?)", (dumps(clean), count)
        )
        return {"id": cur.lastrowid, "remaining": count, **clean}

    def faults(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM faults ORDER BY id")
        return [{"id": r["id"], "remaining": r["remaining"], **loads(r["spec"])} for r in rows]

    def clear_faults(self) -> None:
        self.store.execute("DELETE FROM faults")

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The first fault matching this request, consumed once (None if none applies)."""
        with self.store.transaction() as conn:
            for row in conn.execute("SELECT * FROM faults ORDER BY id").fetchall():
                spec = loads(row["spec"])
                if spec.get("method") and spec["method"] != method.upper():
                    continue
                if not fnmatch.fnmatchcase(path, spec["path"]):
                    continue
                if row["remaining"] == 1:
                    conn.execute("DELETE FROM faults WHERE id = ?", (row["id"],))
                elif row["remaining"] > 1:
                    conn.execute(
                        "UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],)
                    )
                return spec
        return None

    @_atomic
    def tamper_settings(self, meeting_id: int, settings: dict[str, Any]) -> dict[str, Any]:
        """Change a meeting's settings as a person in Zoom's web portal would: no API rules."""
        if not isinstance(settings, dict):
            raise bad_request("settings must be a JSON object.")
        doc = self._meeting(meeting_id)
        doc["settings"] = _deep_merge(doc["settings"], settings)
        self._save_meeting(doc)
        return self._effective_settings(doc)

    def count_call(self, method: str, route: str, status: int) -> None:
        self.store.bump(f"api|{method} {route}|{status}")

    def stats(self) -> dict[str, Any]:
        rows = self.store.query("SELECT key, value FROM counters WHERE key LIKE 'api|%'")
        calls: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for row in rows:
            _, route, status = row["key"].split("|")
            calls[route] = calls.get(route, 0) + row["value"]
            by_status[f"{route} {status}"] = row["value"]
        return {"total": sum(calls.values()), "calls": calls, "by_status": by_status}

    def reset_stats(self) -> None:
        self.store.execute("DELETE FROM counters WHERE key LIKE 'api|%'")

    def reset(self) -> None:
        self.store.reset()

    # --- meetings: storage ---------------------------------------------------------------------

    def _meeting(self, meeting_id: Any, *, include_deleted: bool = False) -> dict[str, Any]:
        try:
            key = int(str(meeting_id))
        except ValueError:
            raise meeting_not_found(meeting_id) from None
        row = self.store.one("SELECT doc, deleted_at FROM meetings WHERE id = ?", (key,))
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise meeting_not_found(meeting_id)
        doc = loads(row["doc"])
        doc["_deleted_at"] = row["deleted_at"]
        return doc

    def _save_meeting(self, doc: dict[str, Any]) -> None:
        clean = {k: v for k, v in doc.items() if not k.startswith("_")}
        self.store.execute(
            "UPDATE meetings SET doc = ? WHERE id = ?", (dumps(clean), int(clean["id"]))
        )

    def meeting_doc(self, meeting_id: Any) -> dict[str, Any]:
        """The stored meeting (for the simulation and admin views)."""
        return self._meeting(meeting_id)

    def _new_meeting_id(self) -> int:
        rng = secrets.SystemRandom()
        while True:
            candidate = rng.randint(10**10, 10**11 - 1)
            if self.store.one("SELECT 1 FROM meetings WHERE id = ?", (candidate,)) is None:
                return candidate

    def _apply_rules(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Zoom's own interactions between settings, then the account's locks."""
        result = copy.deepcopy(settings)
        for key, value in self.locks().items():
            _set_dotted(result, key, value)
        if result.get("waiting_room"):
            # "If this value is true, this disables the join_before_host setting."
            result["join_before_host"] = False
        if result.get("encryption_type") == "e2ee" and result.get("auto_recording") == "cloud":
            # End-to-end encryption disables cloud recording.
            result["auto_recording"] = "none"
        return result

    def _effective_settings(
        self, doc: dict[str, Any], occurrence: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        settings = doc["settings"]
        if occurrence and occurrence.get("settings"):
            settings = _deep_merge(settings, occurrence["settings"])
        effective = self._apply_rules(settings)
        if doc["type"] != 8:
            effective.pop("registration_type", None)
        return effective

    def effective_settings(self, meeting_id: Any) -> dict[str, Any]:
        return self._effective_settings(self._meeting(meeting_id))

    # --- meetings: API --------------------------------------------------------------------------

    def _schedule(self, doc: dict[str, Any], start_text: str | None) -> None:
        """(Re)compute start_time and occurrences of ``doc`` from its fields."""
        tz = schedule.zone(doc["timezone"])
        if start_text:
            start = schedule.parse_start(start_text, tz)
        elif doc.get("start_local"):
            start = dt.datetime.fromisoformat(doc["start_local"]).replace(tzinfo=tz)
        else:
            start = self.now_dt().replace(second=0).astimezone(tz)
        doc["start_local"] = start.replace(tzinfo=None).isoformat()
        if doc["type"] == 8:
            recurrence = doc.get("recurrence")
            if not recurrence:
                raise validation_failed(
                    [("recurrence", "Required for a recurring meeting with a fixed time.")]
                )
            previous = {o["occurrence_id"]: o for o in doc.get("occurrences") or []}
            computed = schedule.occurrences(start, doc["duration"], recurrence, tz)
            doc["occurrences"] = [
                {
                    "occurrence_id": o.occurrence_id,
                    "start_time": schedule.zoom_time(o.start),
                    "duration": o.duration,
                    # A cancelled class stays cancelled when the series is edited.
                    "status": previous.get(o.occurrence_id, {}).get("status", "available"),
                }
                for o in computed
            ]
            doc["start_time"] = doc["occurrences"][0]["start_time"]
        else:
            doc["occurrences"] = []
            doc["recurrence"] = None
            doc["start_time"] = schedule.zoom_time(start)

    @_atomic
    def create_meeting(self, user_id: str, body: Any) -> dict[str, Any]:
        self.check_user(user_id)
        errors = validation.check_meeting(body, creating=True)
        if errors:
            raise validation_failed(errors)
        kind = body.get("type", 2)
        now = self.now_dt()
        password = body.get("password")
        if not password and body.get("default_password", True):
            password = "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(6))
        settings = _deep_merge(DEFAULT_SETTINGS, body.get("settings") or {})
        if kind == 8:
            settings.setdefault("registration_type", 1)
        doc: dict[str, Any] = {
            "id": self._new_meeting_id(),
            "uuid": _zoom_uuid(),
            "host_id": HOST_USER_ID,
            "host_email": HOST_EMAIL,
            "topic": body.get("topic", "Zoom Meeting"),
            "type": kind,
            "timezone": body.get("timezone") or HOST_TIMEZONE,
            "duration": body.get("duration", 60),
            "agenda": body.get("agenda", ""),
            "created_at": schedule.zoom_time(now),
            "password": password or "",
            "recurrence": copy.deepcopy(body.get("recurrence")) if kind == 8 else None,
            "settings": self._apply_rules(settings),
            "registration_token": _token(16),
            "pre_schedule": False,
            "status": "waiting",
            "live_instance": None,
            "seq": self.store.bump("meeting_seq"),
        }
        try:
            self._schedule(doc, body.get("start_time"))
        except schedule.ScheduleError as exc:
            raise validation_failed([(exc.field, exc.message)]) from None
        secret = hashlib.sha256(f"{doc['id']}:{doc['password']}".encode()).digest()
        doc["encrypted_password"] = base64.urlsafe_b64encode(secret).decode().rstrip("=")[:32]
        digits = str(int.from_bytes(secret[:8], "big"))
        doc["h323_password"] = digits[:6] if doc["password"] else ""
        doc["pstn_password"] = digits[:6] if doc["password"] else ""
        self.store.execute(
            "INSERT INTO meetings (id, doc, created_at) VALUES (?, ?, ?)",
            (doc["id"], dumps(doc), self.now()),
        )
        return self.meeting_response(doc, created=True)

    def _join_url(self, doc: dict[str, Any]) -> str:
        url = f"{self.public_url}/j/{doc['id']}"
        return f"{url}?pwd={doc['encrypted_password']}" if doc["password"] else url

    def meeting_response(
        self,
        doc: dict[str, Any],
        *,
        created: bool = False,
        occurrence_id: str | None = None,
        show_previous: bool = False,
    ) -> dict[str, Any]:
        occurrence = None
        if occurrence_id:
            occurrence = self._occurrence(doc, occurrence_id)
        settings = self._effective_settings(doc, occurrence)
        body: dict[str, Any] = {
            "uuid": doc["uuid"],
            "id": doc["id"],
            "host_id": doc["host_id"],
            "host_email": doc["host_email"],
            "topic": doc["topic"],
            "type": doc["type"],
            "status": doc.get("status", "waiting"),
            "start_time": doc["start_time"],
            "duration": doc["duration"],
            "timezone": doc["timezone"],
            "agenda": doc.get("agenda", ""),
            "created_at": doc["created_at"],
            "start_url": self._start_url(doc),
            "join_url": self._join_url(doc),
            "password": doc["password"],
            "h323_password": doc["h323_password"],
            "pstn_password": doc["pstn_password"],
            "encrypted_password": doc["encrypted_password"],
            "settings": settings,
            "pre_schedule": False,
            "creation_source": "open_api",
        }
        if doc["type"] == 8:
            now = self.now_dt()
            listed = []
            for occ in doc["occurrences"]:
                begins = schedule.parse_utc(occ["start_time"], "start_time")
                over = begins + dt.timedelta(minutes=occ["duration"]) < now
                if created or show_previous or not over or occ["occurrence_id"] == occurrence_id:
                    listed.append(
                        {k: occ[k] for k in ("occurrence_id", "start_time", "duration")}
                        | {"status": occ["status"]}
                    )
            body["occurrences"] = listed
            body["recurrence"] = copy.deepcopy(doc["recurrence"])
            upcoming = [o for o in listed if o["status"] == "available"]
            if occurrence is not None:
                body["start_time"] = occurrence["start_time"]
                body["duration"] = occurrence["duration"]
            elif upcoming:
                body["start_time"] = upcoming[0]["start_time"]
        if created:
            if settings.get("approval_type") in (0, 1):
                body["registration_url"] = (
                    f"{self.public_url}/meeting/register/{doc['registration_token']}"
                )
            # Zoom's spec documents no uuid, host_id or status in the create answer: leaving
            # them out keeps companion from depending on fields the contract does not promise.
            for key in ("uuid", "host_id", "status"):
                body.pop(key)
        return body

    def _start_url(self, doc: dict[str, Any]) -> str:
        zak = self._issue("zak", START_URL_TTL, str(doc["id"]))
        return f"{self.public_url}/s/{doc['id']}?zak={zak}"

    def _occurrence(self, doc: dict[str, Any], occurrence_id: str) -> dict[str, Any]:
        for occ in doc.get("occurrences") or []:
            if occ["occurrence_id"] == str(occurrence_id):
                return occ
        raise bad_request("Invalid parameter: occurrence_id.")

    def get_meeting(
        self, meeting_id: Any, *, occurrence_id: str | None = None, show_previous: bool = False
    ) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        return self.meeting_response(
            doc, occurrence_id=occurrence_id or None, show_previous=show_previous
        )

    @_atomic
    def update_meeting(
        self, meeting_id: Any, body: Any, *, occurrence_id: str | None = None
    ) -> None:
        doc = self._meeting(meeting_id)
        if occurrence_id:
            self._update_occurrence(doc, str(occurrence_id), body)
            return
        errors = validation.check_meeting(body, creating=False)
        if errors:
            raise validation_failed(errors)
        new_type = body.get("type", doc["type"])
        reschedule = any(k in body for k in ("start_time", "timezone", "recurrence", "type"))
        reschedule = reschedule or ("duration" in body and new_type == 8)
        for key in ("topic", "agenda", "duration", "password"):
            if key in body:
                doc[key] = body[key]
        if "password" in body:
            secret = hashlib.sha256(f"{doc['id']}:{doc['password']}".encode()).digest()
            doc["encrypted_password"] = base64.urlsafe_b64encode(secret).decode().rstrip("=")[:32]
            digits = str(int.from_bytes(secret[:8], "big"))
            doc["h323_password"] = doc["pstn_password"] = digits[:6] if doc["password"] else ""
        if "settings" in body:
            doc["settings"] = self._apply_rules(_deep_merge(doc["settings"], body["settings"]))
        if reschedule:
            previous_local = doc.get("start_local")
            doc["type"] = new_type
            if "timezone" in body:
                doc["timezone"] = body["timezone"]
            if "recurrence" in body and new_type == 8:
                doc["recurrence"] = copy.deepcopy(body["recurrence"])
            if new_type == 8:
                doc["settings"].setdefault("registration_type", 1)
            try:
                self._schedule(doc, body.get("start_time") or None)
            except schedule.ScheduleError as exc:
                doc["start_local"] = previous_local
                raise validation_failed([(exc.field, exc.message)]) from None
        self._save_meeting(doc)

    def _update_occurrence(self, doc: dict[str, Any], occurrence_id: str, body: Any) -> None:
        errors = validation.check_occurrence_update(body)
        if errors:
            raise validation_failed(errors)
        occ = self._occurrence(doc, occurrence_id)
        if occ["status"] == "deleted":
            raise bad_request("Invalid parameter: occurrence_id.")
        if "start_time" in body:
            try:
                begins = schedule.parse_start(
                    body["start_time"], schedule.zone(doc["timezone"])
                ).astimezone(UTC)
            except schedule.ScheduleError as exc:
                raise validation_failed([(exc.field, exc.message)]) from None
            if begins <= self.now_dt():
                raise bad_request("The occurrence start_time must be in the future.")
            occ["start_time"] = schedule.zoom_time(begins)
        if "duration" in body:
            occ["duration"] = body["duration"]
        if "agenda" in body:
            occ["agenda"] = body["agenda"]
        changed = {
            k: v
            for k, v in (body.get("settings") or {}).items()
            if k in validation.OCCURRENCE_SETTINGS
        }
        if changed:
            occ["settings"] = {**(occ.get("settings") or {}), **changed}
        doc["occurrences"].sort(key=lambda o: o["start_time"])
        self._save_meeting(doc)

    @_atomic
    def delete_meeting(self, meeting_id: Any, *, occurrence_id: str | None = None) -> None:
        doc = self._meeting(meeting_id)
        if occurrence_id:
            occ = self._occurrence(doc, str(occurrence_id))
            occ["status"] = "deleted"
            self._save_meeting(doc)
            return
        self.store.execute(
            "UPDATE meetings SET deleted_at = ? WHERE id = ?", (self.now(), doc["id"])
        )

    @_atomic
    def meeting_status(self, meeting_id: Any, body: Any) -> None:
        if not isinstance(body, dict) or body.get("action") not in ("end", "recover"):
            raise validation_failed([("action", "Invalid field: end or recover.")])
        if body["action"] == "recover":
            doc = self._meeting(meeting_id, include_deleted=True)
            deleted_at = doc["_deleted_at"]
            if deleted_at is None:
                return
            if self.now() - deleted_at > RECOVER_WINDOW:
                raise meeting_not_found(meeting_id)
            self.store.execute("UPDATE meetings SET deleted_at = NULL WHERE id = ?", (doc["id"],))
            return
        doc = self._meeting(meeting_id)
        if doc.get("live_instance"):
            from .simulate import end_instance

            end_instance(self, doc["live_instance"], reason="host ended the meeting")

    def list_meetings(
        self, user_id: str, *, kind: str | None, page_size: str | None, next_page_token: str | None
    ) -> dict[str, Any]:
        self.check_user(user_id)
        kind = kind or "scheduled"
        if kind not in ("scheduled", "live", "upcoming", "upcoming_meetings", "previous_meetings"):
            raise validation_failed([("type", "Invalid field.")])
        size = page_size_of(page_size)
        offset = decode_page(next_page_token, "meetings:" + kind)
        now = self.now_dt()
        items = []
        docs = [
            loads(row["doc"])
            for row in self.store.query("SELECT doc FROM meetings WHERE deleted_at IS NULL")
        ]
        for doc in sorted(docs, key=lambda d: (d["created_at"], d.get("seq", 0))):
            starts = [
                schedule.parse_utc(o["start_time"], "start_time")
                for o in (doc["occurrences"] or [{"start_time": doc["start_time"]}])
                if o.get("status", "available") == "available"
            ]
            future = [s for s in starts if s + dt.timedelta(minutes=doc["duration"]) >= now]
            if kind == "live" and doc.get("status") != "started":
                continue
            if kind in ("upcoming", "upcoming_meetings") and not future:
                continue
            if kind == "previous_meetings" and future:
                continue
            start = min(future) if future else (max(starts) if starts else None)
            item = {
                "uuid": doc["uuid"],
                "id": doc["id"],
                "host_id": doc["host_id"],
                "topic": doc["topic"],
                "type": doc["type"],
                "duration": doc["duration"],
                "timezone": doc["timezone"],
                "created_at": doc["created_at"],
                "join_url": self._join_url(doc),
            }
            if doc.get("agenda"):
                item["agenda"] = doc["agenda"]
            if start is not None:
                item["start_time"] = schedule.zoom_time(start)
            items.append(item)
        page = items[offset : offset + size]
        following = offset + size
        return {
            "page_size": size,
            "total_records": len(items),
            "next_page_token": encode_page(following, "meetings:" + kind)
            if following < len(items)
            else "",
            "meetings": page,
        }

    # --- registrants ----------------------------------------------------------------------------

    def _registration_open(self, doc: dict[str, Any]) -> dict[str, Any]:
        settings = self._effective_settings(doc)
        if settings.get("approval_type") not in (0, 1):
            raise bad_request(f"Registration has not been enabled for this meeting: {doc['id']}.")
        return settings

    def _registrant_join_url(self, doc: dict[str, Any], tk: str) -> str:
        return f"{self.public_url}/w/{doc['id']}?tk={tk}"

    @_atomic
    def add_registrant(
        self, meeting_id: Any, body: Any, *, occurrence_ids: str | None = None
    ) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        settings = self._registration_open(doc)
        validation.check_registrant(body)
        email = body["email"].strip()
        chosen: list[str] = []
        if occurrence_ids:
            for occ_id in occurrence_ids.split(","):
                self._occurrence(doc, occ_id.strip())
                chosen.append(occ_id.strip())
        day = self.now_dt().date().isoformat()
        if self.store.bump(f"reg|{doc['id']}|{email.lower()}|{day}") > REGISTRANT_DAILY_LIMIT:
            raise ZoomApiError(
                429,
                429,
                f"You have exceeded the daily rate limit ({REGISTRANT_DAILY_LIMIT}) of Add "
                f"Meeting Registrant API requests for the registrant ({email}). You can resume "
                "these requests at GMT 00:00:00.",
                headers={"X-RateLimit-Type": "Daily-limit", "X-RateLimit-Category": "Light"},
            )
        existing = self.store.one(
            "SELECT doc FROM registrants WHERE meeting_id = ? AND lower(email) = lower(?)",
            (doc["id"], email),
        )
        if existing is not None:
            # Zoom answers a second registration of the same email with the same registrant.
            reg = loads(existing["doc"])
        else:
            count = self.store.one(
                "SELECT count(*) AS n FROM registrants WHERE meeting_id = ?", (doc["id"],)
            )["n"]
            if count >= MAX_REGISTRANTS:
                raise bad_request("Meeting has reached maximum attendee capacity.", code=3043)
            approved = settings["approval_type"] == 0 or bool(body.get("auto_approve"))
            tk = _token(32)
            reg = {
                key: body[key]
                for key in (
                    "first_name",
                    "last_name",
                    "address",
                    "city",
                    "state",
                    "zip",
                    "country",
                    "phone",
                    "comments",
                    "industry",
                    "job_title",
                    "no_of_employees",
                    "org",
                    "purchasing_time_frame",
                    "role_in_purchase_process",
                    "language",
                )
                if body.get(key) is not None
            }
            reg.update(
                {
                    "id": _token(16)[:22],
                    "email": email,
                    "status": "approved" if approved else "pending",
                    "create_time": schedule.zoom_time(self.now_dt()),
                    "custom_questions": body.get("custom_questions") or [],
                    "participant_pin_code": secrets.SystemRandom().randint(100000, 999999),
                    "tk": tk,
                    "occurrence_ids": chosen,
                }
            )
            self.store.execute(
                "INSERT INTO registrants (id, meeting_id, email, status, tk, doc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (reg["id"], doc["id"], email, reg["status"], tk, dumps(reg)),
            )
        response: dict[str, Any] = {
            "id": doc["id"],
            "registrant_id": reg["id"],
            "topic": doc["topic"],
            "start_time": self.meeting_response(doc)["start_time"],
            "participant_pin_code": reg["participant_pin_code"],
        }
        if reg["status"] == "approved":
            response["join_url"] = self._registrant_join_url(doc, reg["tk"])
        if doc["type"] == 8:
            wanted = set(reg.get("occurrence_ids") or [])
            response["occurrences"] = [
                {k: o[k] for k in ("occurrence_id", "start_time", "duration", "status")}
                for o in doc["occurrences"]
                if not wanted or o["occurrence_id"] in wanted
            ]
        return response

    def _registrant_view(self, doc: dict[str, Any], reg: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in reg.items() if k not in ("tk", "occurrence_ids", "cancelled")}
        if reg["status"] == "approved":
            view["join_url"] = self._registrant_join_url(doc, reg["tk"])
        return view

    def list_registrants(
        self,
        meeting_id: Any,
        *,
        status: str | None,
        page_size: str | None,
        next_page_token: str | None,
        occurrence_id: str | None = None,
    ) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        status = status or "approved"
        if status not in ("pending", "approved", "denied"):
            raise validation_failed([("status", "Invalid field: pending, approved or denied.")])
        self._registration_open(doc)
        if occurrence_id:
            self._occurrence(doc, occurrence_id)
        size = page_size_of(page_size)
        offset = decode_page(next_page_token, f"registrants:{doc['id']}:{status}")
        regs = [
            loads(r["doc"])
            for r in self.store.query(
                "SELECT doc FROM registrants WHERE meeting_id = ? AND status = ? ORDER BY seq",
                (doc["id"], status),
            )
        ]
        if occurrence_id:
            regs = [
                r for r in regs if not r["occurrence_ids"] or occurrence_id in r["occurrence_ids"]
            ]
        page = regs[offset : offset + size]
        following = offset + size
        total_pages = max(1, -(-len(regs) // size))
        return {
            "page_count": total_pages,
            "page_number": offset // size + 1,
            "page_size": size,
            "total_records": len(regs),
            "next_page_token": encode_page(following, f"registrants:{doc['id']}:{status}")
            if following < len(regs)
            else "",
            "registrants": [self._registrant_view(doc, r) for r in page],
        }

    def _registrant(self, doc: dict[str, Any], registrant_id: str) -> dict[str, Any]:
        row = self.store.one(
            "SELECT doc FROM registrants WHERE meeting_id = ? AND id = ?",
            (doc["id"], registrant_id),
        )
        if row is None:
            raise bad_request(
                "The value that you entered for the Registrant ID field is invalid. "
                "Enter a valid value and try again."
            )
        return loads(row["doc"])

    def get_registrant(self, meeting_id: Any, registrant_id: str) -> dict[str, Any]:
        doc = self._meeting(meeting_id)
        return self._registrant_view(doc, self._registrant(doc, registrant_id))

    @_atomic
    def registrant_status(
        self, meeting_id: Any, body: Any, *, occurrence_id: str | None = None
    ) -> None:
        doc = self._meeting(meeting_id)
        self._registration_open(doc)
        if occurrence_id:
            self._occurrence(doc, occurrence_id)
        if not isinstance(body, dict):
            raise bad_request("Request Body should be a valid JSON object.")
        action = body.get("action")
        people = body.get("registrants") or []
        errors = []
        if action not in ("approve", "cancel", "deny"):
            errors.append(("action", "Invalid field: approve, cancel or deny."))
        if not isinstance(people, list) or not all(isinstance(p, dict) for p in people):
            errors.append(("registrants", "Invalid field: an array of {id, email}."))
        elif len(people) > 30:
            errors.append(("registrants", "Invalid field: at most 30 registrants at a time."))
        if errors:
            raise validation_failed(errors)
        new_status = {"approve": "approved", "cancel": "denied", "deny": "denied"}[action]
        with self.store.transaction() as conn:
            for person in people:
                if person.get("id"):
                    row = conn.execute(
                        "SELECT doc FROM registrants WHERE meeting_id = ? AND id = ?",
                        (doc["id"], person["id"]),
                    ).fetchone()
                else:
                    row = conn.execute(
                        "SELECT doc FROM registrants WHERE meeting_id = ? "
                        "AND lower(email) = lower(?)",
                        (doc["id"], person.get("email") or ""),
                    ).fetchone()
                if row is None:
                    continue  # Zoom skips people it does not know
                reg = loads(row["doc"])
                if action == "cancel" and reg["status"] != "approved":
                    continue
                reg["status"] = new_status
                conn.execute(
                    "UPDATE registrants SET status = ?, doc = ? WHERE id = ?",
                    (new_status, dumps(reg), reg["id"]),
                )

    @_atomic
    def delete_registrant(
        self, meeting_id: Any, registrant_id: str, *, occurrence_id: str | None = None
    ) -> None:
        doc = self._meeting(meeting_id)
        self._registration_open(doc)
        self._registrant(doc, registrant_id)
        self.store.execute(
            "DELETE FROM registrants WHERE meeting_id = ? AND id = ?", (doc["id"], registrant_id)
        )

    def registrant_by_token(self, meeting_id: int, tk: str) -> dict[str, Any] | None:
        row = self.store.one(
            "SELECT doc FROM registrants WHERE meeting_id = ? AND tk = ?", (meeting_id, tk)
        )
        return None if row is None else loads(row["doc"])

    def registrants_of(self, meeting_id: int, status: str = "approved") -> list[dict[str, Any]]:
        return [
            loads(r["doc"])
            for r in self.store.query(
                "SELECT doc FROM registrants WHERE meeting_id = ? AND status = ? ORDER BY seq",
                (meeting_id, status),
            )
        ]

    # --- recordings -------------------------------------------------------------------------------

    def _instance_for(self, ref: str, *, trash: bool = False) -> dict[str, Any]:
        """The meeting instance a recordings call names: a UUID, or the latest for an id."""
        wanted = ("trashed",) if trash else ("completed",)
        marks = ",".join("?" * len(wanted))
        if ref.isdigit():
            if self.store.one("SELECT 1 FROM meetings WHERE id = ?", (int(ref),)) is None:
                raise meeting_not_found(ref)
            row = self.store.one(
                f"SELECT i.doc FROM instances i WHERE i.meeting_id = ? AND EXISTS ("  # noqa: S608
                f"SELECT 1 FROM recording_files f WHERE f.instance_uuid = i.uuid "
                f"AND f.status IN ({marks})) ORDER BY i.started_at DESC LIMIT 1",
                (int(ref), *wanted),
            )
        else:
            row = self.store.one("SELECT doc FROM instances WHERE uuid = ?", (ref,))
        if row is None:
            raise no_recording()
        return loads(row["doc"])

    def _files(self, instance_uuid: str, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT doc FROM recording_files WHERE instance_uuid = ? "  # noqa: S608
            f"AND status IN ({marks}) ORDER BY rowid",
            (instance_uuid, *statuses),
        )
        return [loads(r["doc"]) for r in rows]

    def file_doc(self, file_id: str) -> dict[str, Any] | None:
        row = self.store.one("SELECT doc, status FROM recording_files WHERE id = ?", (file_id,))
        if row is None:
            return None
        doc = loads(row["doc"])
        doc["status"] = row["status"]
        return doc

    @staticmethod
    def public_file(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def recording_object(
        self, instance: dict[str, Any], files: list[dict[str, Any]], *, api: bool = True
    ) -> dict[str, Any]:
        body = {
            "uuid": instance["uuid"],
            "id": instance["meeting_id"],
            "account_id": self.account_id,
            "host_id": instance["host_id"],
            "topic": instance["topic"],
            # The API spec types this as a string enum; webhooks send a number.
            "type": str(instance["type"]) if api else instance["type"],
            "start_time": instance["start_time"],
            "timezone": instance["timezone"],
            "duration": instance["duration"],
            "total_size": sum(int(f.get("file_size") or 0) for f in files),
            "recording_count": len(files),
            "share_url": f"{self.public_url}/rec/share/{instance['share_token']}",
            "recording_files": [self.public_file(f) for f in files],
        }
        if api:
            # In the webhook payload, not in the API's documented answer.
            del body["timezone"], body["share_url"]
        return body

    @_atomic
    def get_recordings(
        self, ref: str, *, include_fields: str | None = None, ttl: str | None = None
    ) -> dict[str, Any]:
        instance = self._instance_for(ref)
        files = self._files(instance["uuid"], ("completed",))
        if not files:
            raise no_recording()
        body = self.recording_object(instance, files)
        body["password"] = ""
        body["recording_play_passcode"] = instance["play_passcode"]
        fields = {f.strip() for f in (include_fields or "").split(",") if f.strip()}
        if "download_access_token" in fields:
            lifetime = DEFAULT_DOWNLOAD_ACCESS_TTL
            if ttl not in (None, ""):
                try:
                    lifetime = int(ttl)
                except ValueError:
                    lifetime = -1
                if not 0 <= lifetime <= MAX_DOWNLOAD_ACCESS_TTL:
                    raise validation_failed([("ttl", "Invalid field: 0 to 604800 seconds.")])
            body["download_access_token"] = self._issue(
                "download", lifetime or DEFAULT_DOWNLOAD_ACCESS_TTL, instance["uuid"]
            )
        return body

    def list_user_recordings(
        self,
        user_id: str,
        *,
        from_: str | None,
        to: str | None,
        page_size: str | None,
        next_page_token: str | None,
        trash: str | None = None,
        meeting_id: str | None = None,
    ) -> dict[str, Any]:
        self.check_user(user_id)
        today = self.now_dt().date()
        try:
            end = dt.date.fromisoformat(to) if to else today
            begin = dt.date.fromisoformat(from_) if from_ else today
        except ValueError:
            raise validation_failed([("from", "Invalid date: use yyyy-mm-dd.")]) from None
        if begin > end:
            raise bad_request("The from date must be on or before the to date.")
        if (end - begin).days > 31:
            raise bad_request("The date range must be at most one month.")
        in_trash = str(trash).lower() == "true"
        size = page_size_of(page_size)
        token_kind = f"recordings:{begin}:{end}:{in_trash}:{meeting_id or ''}"
        offset = decode_page(next_page_token, token_kind)
        statuses = ("trashed",) if in_trash else ("completed",)
        meetings = []
        for row in self.store.query("SELECT doc FROM instances ORDER BY started_at DESC"):
            instance = loads(row["doc"])
            if meeting_id and str(instance["meeting_id"]) != str(meeting_id):
                continue
            started = schedule.parse_utc(instance["start_time"], "start_time").date()
            if not begin <= started <= end:
                continue
            files = self._files(instance["uuid"], statuses)
            if files:
                meetings.append(self.recording_object(instance, files))
        page = meetings[offset : offset + size]
        following = offset + size
        return {
            "from": begin.isoformat(),
            "to": end.isoformat(),
            "page_count": max(1, -(-len(meetings) // size)),
            "page_size": size,
            "total_records": len(meetings),
            "next_page_token": encode_page(following, token_kind)
            if following < len(meetings)
            else "",
            "meetings": page,
        }

    def _remove_files(self, file_ids: list[str], action: str) -> None:
        if action not in ("trash", "delete"):
            raise validation_failed([("action", "Invalid field: trash or delete.")])
        with self.store.transaction() as conn:
            for file_id in file_ids:
                if action == "delete":
                    conn.execute("DELETE FROM recording_files WHERE id = ?", (file_id,))
                else:
                    row = conn.execute(
                        "SELECT doc FROM recording_files WHERE id = ?", (file_id,)
                    ).fetchone()
                    doc = loads(row["doc"])
                    doc["deleted_time"] = schedule.zoom_time(self.now_dt())
                    conn.execute(
                        "UPDATE recording_files SET status = 'trashed', doc = ? WHERE id = ?",
                        (dumps(doc), file_id),
                    )

    @_atomic
    def delete_recordings(self, ref: str, *, action: str | None) -> None:
        instance = self._instance_for(ref)
        self._check_completed(instance)
        files = self._files(instance["uuid"], ("completed",))
        if not files:
            raise no_recording()
        self._remove_files([f["id"] for f in files], action or "trash")

    @_atomic
    def delete_recording_file(self, ref: str, recording_id: str, *, action: str | None) -> None:
        instance = self._instance_for(ref)
        self._check_completed(instance)
        files = [
            f for f in self._files(instance["uuid"], ("completed",)) if f["id"] == recording_id
        ]
        if not files:
            raise no_recording()
        self._remove_files([recording_id], action or "trash")

    @staticmethod
    def _check_completed(instance: dict[str, Any]) -> None:
        if not instance.get("end_time"):
            raise bad_request("You can not delete an uncompleted meeting.", code=3303)

    # --- file links -------------------------------------------------------------------------------

    def file_signature(self, file_id: str, expires: int) -> str:
        return hmac.new(
            self._signing_key, f"{file_id}:{expires}".encode(), hashlib.sha256
        ).hexdigest()

    def signed_file_path(self, doc: dict[str, Any]) -> str:
        expires = int(self.now()) + FILE_LINK_TTL
        name = doc.get("_file_name") or f"{doc['id']}.{doc['file_extension'].lower()}"
        return (
            f"/rec/files/{doc['id']}/{name}?exp={expires}"
            f"&sig={self.file_signature(doc['id'], expires)}"
        )

    def file_link_valid(self, file_id: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not expires.isdigit():
            return False
        if int(expires) < self.now():
            return False
        return hmac.compare_digest(self.file_signature(file_id, int(expires)), sig)

    # --- simulation ------------------------------------------------------------------------------

    def simulate_class(
        self,
        meeting_id: Any,
        occurrence_id: str | None = None,
        participants: list[Any] | None = None,
        teacher: str = "Teacher",
        **options: Any,
    ) -> dict[str, Any]:
        """Run a class and queue its webhooks; see :func:`simulate.simulate_class`."""
        from .simulate import simulate_class

        return simulate_class(self, meeting_id, occurrence_id, participants, teacher, **options)

    # --- state for humans and tests ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        meetings = []
        for row in self.store.query("SELECT doc, deleted_at FROM meetings ORDER BY created_at"):
            doc = loads(row["doc"])
            meetings.append(
                {
                    "id": doc["id"],
                    "topic": doc["topic"],
                    "type": doc["type"],
                    "timezone": doc["timezone"],
                    "start_time": doc["start_time"],
                    "status": doc.get("status"),
                    "deleted": row["deleted_at"] is not None,
                    "occurrences": len(doc.get("occurrences") or []),
                    "settings": self._effective_settings(doc),
                    "registrants": {
                        r["status"]: r["n"]
                        for r in self.store.query(
                            "SELECT status, count(*) AS n FROM registrants WHERE meeting_id = ? "
                            "GROUP BY status",
                            (doc["id"],),
                        )
                    },
                }
            )
        instances = [
            {k: v for k, v in loads(r["doc"]).items() if k != "share_token"}
            for r in self.store.query("SELECT doc FROM instances ORDER BY started_at")
        ]
        files = [
            {**self.public_file(loads(r["doc"])), "status": r["status"]}
            for r in self.store.query("SELECT doc, status FROM recording_files ORDER BY rowid")
        ]
        deliveries = [
            {
                "id": r["id"],
                "event": r["event"],
                "state": r["state"],
                "attempts": r["attempts"],
                "next_attempt_at": r["next_attempt_at"],
                "last_status": r["last_status"],
                "last_error": r["last_error"],
            }
            for r in self.store.query("SELECT * FROM deliveries ORDER BY id DESC LIMIT 200")
        ]
        return {
            "sandbox": True,
            "account_id": self.account_id,
            "host": {"id": HOST_USER_ID, "email": HOST_EMAIL},
            "public_url": self.public_url,
            "webhook_url": self.webhook_url,
            "now": schedule.zoom_time(self.now_dt()),
            "locks": self.locks(),
            "faults": self.faults(),
            "meetings": meetings,
            "instances": instances,
            "recording_files": files,
            "deliveries": deliveries,
            "stats": self.stats(),
        }
