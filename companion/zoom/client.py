"""A typed client for the part of Zoom's Meetings API that companion uses.

One method per Zoom operation; each sends exactly one kind of request and returns Zoom's JSON (or
``None`` for 204s). Underneath, every request:

* carries a Server-to-Server OAuth token from a shared cache, and is sent once more with a fresh
  token if Zoom answers 401 (a second 401 raises :class:`ZoomAuthError`);
* takes a token from the :class:`RequestBudget` for its rate-limit category first;
* has a timeout;
* is retried with capped, jittered backoff on no answer, 429 (honouring ``Retry-After``) and 5xx,
  but only when sending it twice is harmless (never a POST);
* fails with a :class:`ZoomError` subclass that keeps Zoom's code, message and tracking id.

Base URLs are parameters so the same code talks to Zoom, the sandbox, Prism or a proxy.

The module runs past 600 lines and is kept whole: every operation goes through the same request,
retry and error-mapping code, which is easier to trust read in one place.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast, get_args
from urllib.parse import quote, urlsplit

import requests
import requests.auth

from .. import metrics
from . import retry
from .api import (
    AddedRegistrant,
    Meeting,
    MeetingListType,
    MeetingRecordings,
    MeetingStatusAction,
    MeetingSummary,
    RecordingDeleteAction,
    RecordingTrashType,
    Registrant,
    RegistrantRef,
    RegistrantStatus,
    RegistrantStatusAction,
)
from .auth import AccessToken, FileTokenCache, TokenCache, cache_key, fetch_token
from .budget import LIGHT, MEDIUM, RequestBudget
from .errors import (
    ZoomAuthError,
    ZoomConnectionError,
    ZoomError,
    ZoomRateLimited,
    error_from_response,
)

log = logging.getLogger(__name__)

API_URL = "https://api.zoom.us/v2"
OAUTH_URL = "https://zoom.us/oauth/token"
USER_AGENT = "companion-zoom-client/1"

# Zoom's limits: list pages hold at most 300 records, a user-recordings query spans at most a
# month, a registrant-status request names at most 30 registrants.
MAX_PAGE_SIZE = 300
RECORDING_WINDOW_DAYS = 30
REGISTRANT_STATUS_BATCH = 30

MEETING_STATUS_ACTIONS: tuple[str, ...] = get_args(MeetingStatusAction)
RECORDING_TRASH_TYPES: tuple[str, ...] = get_args(RecordingTrashType)
REGISTRANT_STATUS_ACTIONS: tuple[str, ...] = get_args(RegistrantStatusAction)
REGISTRANT_STATUSES: tuple[str, ...] = get_args(RegistrantStatus)
RECORDING_DELETE_ACTIONS: tuple[str, ...] = get_args(RecordingDeleteAction)

# Hosts that may receive a token with a download (besides the API host itself).
ZOOM_DOWNLOAD_DOMAINS = ("zoom.us", "zoomgov.com")

# Failures of the transport that mean "no answer"; anything else from requests is our bug.
_NO_ANSWER = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

_DOWNLOAD_TEMPLATE = "<recording download>"


class _BearerAuth(requests.auth.AuthBase):
    """Puts the token in the Authorization header, and only there.

    Passing it as ``auth=`` (rather than a header) also stops requests from swapping in ~/.netrc
    credentials, and requests drops the header itself when a redirect leaves the host.
    """

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class ZoomClient:
    """Zoom Meetings API over Server-to-Server OAuth (companion's :class:`~.api.ZoomApi`).

    Answers are Zoom's JSON, typed as the shapes in :mod:`.api` and not validated: callers
    check the values they act on.

    :param http: the ``requests.Session`` to send with (tests and proxies inject one).
    :param token_cache: where tokens are shared; by default one cache for this client only.
    :param budget: the rate-limit budget; by default Zoom's Pro-plan rates for this client only.
    :param max_retries: retries after the first attempt for calls that are safe to repeat.
    :param sleep: how to wait (backoff, ``Retry-After``, budget); tests pass a fake.
    :param clock: epoch seconds, for token expiry and HTTP-date ``Retry-After``.
    :param rng: the randomness behind backoff jitter.
    :param max_retry_wait: a 429 asking to wait longer than this is raised, not slept through, so
        a request never hangs for minutes; jobs can look at ``retry_after`` and reschedule.
    :param download_hosts: extra hosts :meth:`open_download` may send a token to.
    """

    def __init__(
        self,
        *,
        account_id: str,
        client_id: str,
        client_secret: str,
        api_url: str = API_URL,
        oauth_url: str = OAUTH_URL,
        timeout: float = 15,
        http: requests.Session | None = None,
        token_cache: TokenCache | None = None,
        budget: RequestBudget | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        retry_base: float = retry.DEFAULT_BASE,
        retry_cap: float = retry.DEFAULT_CAP,
        max_retry_wait: float = 60.0,
        download_hosts: Iterable[str] = (),
    ):
        missing = [
            name
            for name, value in (
                ("account_id", account_id),
                ("client_id", client_id),
                ("client_secret", client_secret),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"Zoom credentials missing: {', '.join(missing)}")
        if timeout <= 0:
            raise ValueError("timeout must be positive: every Zoom request needs one")
        if max_retries < 0:
            raise ValueError("max_retries cannot be negative")
        self.account_id = account_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.api_url = api_url.rstrip("/")
        self.oauth_url = oauth_url
        self.timeout = timeout
        self.http = http if http is not None else requests.Session()
        self.token_cache = token_cache if token_cache is not None else TokenCache()
        self.budget = budget if budget is not None else RequestBudget(clock=clock, sleep=sleep)
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._cache_key = cache_key(oauth_url, account_id, client_id)
        api_host = urlsplit(self.api_url).hostname or ""
        self._download_hosts = {api_host, *(h.lower() for h in download_hosts)}
        #: HTTP requests sent per operation name, retries included; token fetches are
        #: "oauth_token". The benchmark reports it.
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ZoomClient(api_url={self.api_url!r}, account_id={self.account_id!r})"

    def close(self) -> None:
        self.http.close()

    # -- meetings -------------------------------------------------------------------------------

    def create_meeting(self, user_id: str, body: Mapping[str, Any]) -> Meeting:
        """Create a meeting hosted by ``user_id`` (POST /users/{userId}/meetings, 201).

        Never retried automatically: a lost answer may mean the meeting exists. Callers that
        retry must first look for the meeting they may have made.
        """
        response = self._api(
            "create_meeting",
            "POST",
            "/users/{userId}/meetings",
            f"/users/{_user(user_id)}/meetings",
            category=MEDIUM,
            json=body,
            idempotent=False,
        )
        return cast(Meeting, _json_object(response, "create_meeting"))

    def get_meeting(
        self,
        meeting_id: int | str,
        *,
        occurrence_id: str | None = None,
        show_previous_occurrences: bool = False,
    ) -> Meeting:
        """Read a meeting, including a fresh host ``start_url`` (GET /meetings/{meetingId})."""
        params: dict[str, str] = {}
        if occurrence_id is not None:
            params["occurrence_id"] = occurrence_id
        if show_previous_occurrences:
            params["show_previous_occurrences"] = "true"
        response = self._api(
            "get_meeting",
            "GET",
            "/meetings/{meetingId}",
            f"/meetings/{_meeting(meeting_id)}",
            category=LIGHT,
            params=params,
        )
        return cast(Meeting, _json_object(response, "get_meeting"))

    def update_meeting(
        self, meeting_id: int | str, body: Mapping[str, Any], *, occurrence_id: str | None = None
    ) -> None:
        """Change a meeting, or one occurrence of it (PATCH /meetings/{meetingId}, 204).

        Retried like a PUT: companion always sends absolute values, so repeating it is harmless.
        """
        params = {"occurrence_id": occurrence_id} if occurrence_id is not None else {}
        self._api(
            "update_meeting",
            "PATCH",
            "/meetings/{meetingId}",
            f"/meetings/{_meeting(meeting_id)}",
            category=LIGHT,
            params=params,
            json=body,
        ).close()

    def delete_meeting(
        self,
        meeting_id: int | str,
        *,
        occurrence_id: str | None = None,
        schedule_for_reminder: bool = False,
        cancel_meeting_reminder: bool = False,
    ) -> None:
        """Delete a meeting, or one occurrence (DELETE /meetings/{meetingId}, 204).

        A retried delete whose first attempt reached Zoom answers 404 (:class:`ZoomNotFound`);
        callers deleting something should treat that as done.
        """
        params: dict[str, str] = {}
        if occurrence_id is not None:
            params["occurrence_id"] = occurrence_id
        if schedule_for_reminder:
            params["schedule_for_reminder"] = "true"
        if cancel_meeting_reminder:
            params["cancel_meeting_reminder"] = "true"
        self._api(
            "delete_meeting",
            "DELETE",
            "/meetings/{meetingId}",
            f"/meetings/{_meeting(meeting_id)}",
            category=LIGHT,
            params=params,
        ).close()

    def update_meeting_status(self, meeting_id: int | str, action: MeetingStatusAction) -> None:
        """End a running meeting or recover a deleted one (PUT /meetings/{meetingId}/status)."""
        _check_choice("action", action, MEETING_STATUS_ACTIONS)
        self._api(
            "update_meeting_status",
            "PUT",
            "/meetings/{meetingId}/status",
            f"/meetings/{_meeting(meeting_id)}/status",
            category=LIGHT,
            json={"action": action},
        ).close()

    def iter_meetings(
        self, user_id: str, *, type: MeetingListType = "scheduled", page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[MeetingSummary]:
        """Yield the user's meetings across all pages (GET /users/{userId}/meetings)."""
        meetings = self._paginate(
            "list_meetings",
            "/users/{userId}/meetings",
            f"/users/{_user(user_id)}/meetings",
            "meetings",
            category=MEDIUM,
            params={"type": type},
            page_size=page_size,
        )
        yield from cast(Iterator[MeetingSummary], meetings)

    # -- registrants ----------------------------------------------------------------------------

    def add_registrant(
        self,
        meeting_id: int | str,
        body: Mapping[str, Any],
        *,
        occurrence_ids: list[str] | None = None,
    ) -> AddedRegistrant:
        """Register someone (POST /meetings/{meetingId}/registrants, 201).

        Never retried automatically, and Zoom allows only 3 a day per registrant: a caller that
        lost the answer should look the registrant up before posting again.
        """
        params = {"occurrence_ids": ",".join(occurrence_ids)} if occurrence_ids else {}
        response = self._api(
            "add_registrant",
            "POST",
            "/meetings/{meetingId}/registrants",
            f"/meetings/{_meeting(meeting_id)}/registrants",
            category=LIGHT,
            params=params,
            json=body,
            idempotent=False,
        )
        return cast(AddedRegistrant, _json_object(response, "add_registrant"))

    def get_registrant(self, meeting_id: int | str, registrant_id: str) -> Registrant:
        """Read one registrant with their status and join URL."""
        response = self._api(
            "get_registrant",
            "GET",
            "/meetings/{meetingId}/registrants/{registrantId}",
            f"/meetings/{_meeting(meeting_id)}/registrants/{_segment(registrant_id)}",
            category=LIGHT,
        )
        return cast(Registrant, _json_object(response, "get_registrant"))

    def iter_registrants(
        self,
        meeting_id: int | str,
        *,
        status: RegistrantStatus = "approved",
        page_size: int = MAX_PAGE_SIZE,
        occurrence_id: str | None = None,
    ) -> Iterator[Registrant]:
        """Yield a meeting's registrants with ``status`` across all pages."""
        _check_choice("status", status, REGISTRANT_STATUSES)
        params: dict[str, str] = {"status": status}
        if occurrence_id is not None:
            params["occurrence_id"] = occurrence_id
        registrants = self._paginate(
            "list_registrants",
            "/meetings/{meetingId}/registrants",
            f"/meetings/{_meeting(meeting_id)}/registrants",
            "registrants",
            category=MEDIUM,
            params=params,
            page_size=page_size,
        )
        yield from cast(Iterator[Registrant], registrants)

    def update_registrant_status(
        self,
        meeting_id: int | str,
        action: RegistrantStatusAction,
        registrants: Sequence[RegistrantRef],
        *,
        occurrence_id: str | None = None,
    ) -> None:
        """Approve, cancel or deny registrants (PUT /meetings/{meetingId}/registrants/status).

        Zoom takes at most 30 per request, so longer lists are sent in batches of 30.

        :param registrants: ``[{"id": registrant_id, "email": ...}, ...]``
        """
        _check_choice("action", action, REGISTRANT_STATUS_ACTIONS)
        params = {"occurrence_id": occurrence_id} if occurrence_id is not None else {}
        for start in range(0, len(registrants), REGISTRANT_STATUS_BATCH):
            batch = list(registrants[start : start + REGISTRANT_STATUS_BATCH])
            self._api(
                "update_registrant_status",
                "PUT",
                "/meetings/{meetingId}/registrants/status",
                f"/meetings/{_meeting(meeting_id)}/registrants/status",
                category=MEDIUM,
                params=params,
                json={"action": action, "registrants": batch},
            ).close()

    def delete_registrant(
        self, meeting_id: int | str, registrant_id: str, *, occurrence_id: str | None = None
    ) -> None:
        """Remove a registrant (DELETE /meetings/{meetingId}/registrants/{registrantId})."""
        params = {"occurrence_id": occurrence_id} if occurrence_id is not None else {}
        self._api(
            "delete_registrant",
            "DELETE",
            "/meetings/{meetingId}/registrants/{registrantId}",
            f"/meetings/{_meeting(meeting_id)}/registrants/{_segment(registrant_id)}",
            category=LIGHT,
            params=params,
        ).close()

    # -- recordings -----------------------------------------------------------------------------

    def get_meeting_recordings(
        self,
        meeting_id_or_uuid: int | str,
        *,
        include_download_token: bool = False,
        ttl: int | None = None,
    ) -> MeetingRecordings:
        """Read a meeting instance's recording files (GET /meetings/{meetingId}/recordings).

        :param include_download_token: also ask for ``download_access_token``, a JWT that
            :meth:`open_download` can use; ``ttl`` sets its lifetime in seconds (Zoom: <= 7 days).
        """
        params: dict[str, str] = {}
        if include_download_token:
            params["include_fields"] = "download_access_token"
            if ttl is not None:
                params["ttl"] = str(ttl)
        response = self._api(
            "get_meeting_recordings",
            "GET",
            "/meetings/{meetingId}/recordings",
            f"/meetings/{_recording_meeting(meeting_id_or_uuid)}/recordings",
            category=LIGHT,
            params=params,
        )
        return cast(MeetingRecordings, _json_object(response, "get_meeting_recordings"))

    def iter_user_recordings(
        self,
        user_id: str,
        *,
        from_date: dt.date,
        to_date: dt.date,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[MeetingRecordings]:
        """Yield the user's recorded meetings (each with ``recording_files``) between two dates,
        inclusive (GET /users/{userId}/recordings).

        Zoom answers at most a month per query, so the range is walked in 30-day windows, oldest
        first; a meeting instance that shows up in two windows is yielded once.
        """
        seen: set[str] = set()
        for start, end in recording_windows(from_date, to_date):
            for meeting in self._paginate(
                "list_user_recordings",
                "/users/{userId}/recordings",
                f"/users/{_user(user_id)}/recordings",
                "meetings",
                category=MEDIUM,
                params={"from": start.isoformat(), "to": end.isoformat()},
                page_size=page_size,
            ):
                uuid = meeting.get("uuid")
                if isinstance(uuid, str):
                    if uuid in seen:
                        continue
                    seen.add(uuid)
                yield cast(MeetingRecordings, meeting)

    def iter_trashed_recordings(
        self,
        user_id: str,
        *,
        meeting_id: int | None = None,
        trash_type: RecordingTrashType = "meeting_recordings",
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[MeetingRecordings]:
        """Yield what the user's cloud-recording trash holds (GET /users/{userId}/recordings with
        ``trash=true``): whole meetings trashed (``meeting_recordings``) or single files
        (``recording_file``). The spec says the trash is not filtered by ``from``/``to``, so
        none is sent; ``meeting_id`` narrows it to one meeting's instances."""
        _check_choice("trash_type", trash_type, RECORDING_TRASH_TYPES)
        params = {"trash": "true", "trash_type": trash_type}
        if meeting_id is not None:
            params["meeting_id"] = str(int(meeting_id))
        for meeting in self._paginate(
            "list_trashed_recordings",
            "/users/{userId}/recordings",
            f"/users/{_user(user_id)}/recordings",
            "meetings",
            category=MEDIUM,
            params=params,
            page_size=page_size,
        ):
            yield cast(MeetingRecordings, meeting)

    def recover_meeting_recordings(self, meeting_uuid: str) -> None:
        """Take a meeting instance's recordings out of the trash
        (PUT /meetings/{meetingUUID}/recordings/status ``{"action": "recover"}``)."""
        self._api(
            "recover_meeting_recordings",
            "PUT",
            "/meetings/{meetingUUID}/recordings/status",
            f"/meetings/{_recording_meeting(meeting_uuid)}/recordings/status",
            category=LIGHT,
            json={"action": "recover"},
        ).close()

    def delete_meeting_recordings(
        self, meeting_id_or_uuid: int | str, *, action: RecordingDeleteAction = "trash"
    ) -> None:
        """Trash (or with ``action="delete"``, permanently delete) all of a meeting's recordings."""
        _check_choice("action", action, RECORDING_DELETE_ACTIONS)
        self._api(
            "delete_meeting_recordings",
            "DELETE",
            "/meetings/{meetingId}/recordings",
            f"/meetings/{_recording_meeting(meeting_id_or_uuid)}/recordings",
            category=LIGHT,
            params={"action": action},
        ).close()

    def delete_recording_file(
        self,
        meeting_id_or_uuid: int | str,
        recording_id: str,
        *,
        action: RecordingDeleteAction = "trash",
    ) -> None:
        """Trash (or permanently delete) one recording file."""
        _check_choice("action", action, RECORDING_DELETE_ACTIONS)
        self._api(
            "delete_recording_file",
            "DELETE",
            "/meetings/{meetingId}/recordings/{recordingId}",
            f"/meetings/{_recording_meeting(meeting_id_or_uuid)}/recordings/"
            f"{_segment(recording_id)}",
            category=LIGHT,
            params={"action": action},
        ).close()

    def open_download(self, url: str, *, download_token: str | None = None) -> requests.Response:
        """Start downloading a recording file; the caller streams and closes the response.

        The token (``download_token`` from a webhook or ``download_access_token``, else our OAuth
        token) goes only in the Authorization header, and only to Zoom's hosts or the API host;
        requests drops it if a redirect leaves that host. Redirects are followed.

        :raises ValueError: ``url`` is not on a host allowed to receive a Zoom token.
        :raises ZoomAuthError: the token was refused, including Zoom's "200 with an HTML page"
            way of refusing a download.
        """
        self._check_download_url(url)
        response = self._send(
            "download",
            "GET",
            url,
            _DOWNLOAD_TEMPLATE,
            category=None,
            stream=True,
            token=download_token,
        )
        content_type = response.headers.get("Content-Type", "").lower()
        if content_type.startswith("text/html"):
            response.close()
            raise ZoomAuthError(
                "Zoom answered the download with an HTML page instead of the file "
                "(the token was probably refused)",
                http_status=response.status_code,
                headers=response.headers,
                request_id=response.headers.get("x-zm-trackingid"),
                operation="download",
            )
        return response

    def _check_download_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        api_scheme = urlsplit(self.api_url).scheme
        on_zoom = any(host == d or host.endswith("." + d) for d in ZOOM_DOWNLOAD_DOMAINS)
        if on_zoom and parts.scheme == "https":
            return
        if host in self._download_hosts and parts.scheme in {"https", api_scheme}:
            return
        raise ValueError(f"refusing to send a Zoom token to {parts.scheme}://{host}")

    # -- transport ------------------------------------------------------------------------------

    def _api(
        self,
        operation: str,
        method: str,
        template: str,
        path: str,
        *,
        category: str,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        return self._send(
            operation,
            method,
            self.api_url + path,
            template,
            category=category,
            params=params,
            json=json,
            idempotent=idempotent,
        )

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        template: str,
        *,
        category: str | None,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        idempotent: bool = True,
        stream: bool = False,
        token: str | None = None,
    ) -> requests.Response:
        """Send one request with auth, budget, timeout and retries; return a 2xx response."""
        # A recording download is a media file, not the API's JSON.
        accept = "*/*" if stream else "application/json"
        attempt = 0
        stale: str | None = None
        refreshed = False
        while True:
            attempt += 1
            if token is not None:
                bearer = token
            else:
                try:
                    bearer = self._access_token(stale)
                except ZoomError as err:
                    # The API request was not sent, so even a POST can safely wait and try again.
                    self._pause_or_raise(err, attempt, idempotent=True)
                    continue
            if category is not None:
                self.budget.acquire(category)
            started = time.perf_counter()
            try:
                response = self.http.request(
                    method,
                    url,
                    params=params or None,
                    json=json,
                    auth=_BearerAuth(bearer),
                    headers={"Accept": accept, "User-Agent": USER_AGENT},
                    timeout=self.timeout,
                    stream=stream,
                    allow_redirects=True,
                )
            except requests.RequestException as exc:
                self._count(operation)
                self._pause_or_raise(
                    self._transport_error(exc, operation, method, template, attempt),
                    attempt,
                    idempotent=idempotent,
                )
                continue
            self._count(operation)
            if response.ok:
                _log_response(operation, method, template, response, None, attempt, started)
                return response
            error = error_from_response(response, operation=operation, now=self._clock())
            metrics.zoom_error(operation, str(response.status_code))
            response.close()
            _log_response(operation, method, template, response, error, attempt, started)
            if response.status_code == 401 and token is None and not refreshed:
                # Zoom may have invalidated our token by issuing another; fetch one and try once
                # more. This does not count as a retry: the request was never processed.
                refreshed = True
                stale = bearer
                attempt -= 1
                continue
            self._pause_or_raise(error, attempt, idempotent=idempotent)

    def _transport_error(
        self,
        exc: requests.RequestException,
        operation: str,
        method: str,
        template: str,
        attempt: int,
    ) -> ZoomError:
        log.warning(
            "zoom %s %s %s -> no answer (%s) attempt=%d",
            operation,
            method,
            template,
            type(exc).__name__,
            attempt,
        )
        metrics.zoom_error(operation, "no_answer")
        cls = ZoomConnectionError if isinstance(exc, _NO_ANSWER) else ZoomError
        error = cls(f"no answer from Zoom: {type(exc).__name__}", operation=operation)
        error.__cause__ = exc
        return error

    def _pause_or_raise(self, error: ZoomError, attempt: int, *, idempotent: bool) -> None:
        """Sleep before the next attempt if ``error`` deserves one; otherwise raise it."""
        if isinstance(error, ZoomConnectionError):
            kind: str | None = retry.CONNECTION
        elif isinstance(error, ZoomRateLimited) and error.daily:
            kind = retry.DAILY_LIMIT
        else:
            kind = None
        if not retry.should_retry(
            idempotent, error.http_status, kind, attempt, self.max_retries + 1
        ):
            raise error
        if isinstance(error, ZoomRateLimited) and error.retry_after is not None:
            delay = error.retry_after
        else:
            delay = retry.backoff_seconds(attempt, self.retry_base, self.retry_cap, self._rng)
        if delay > self.max_retry_wait:
            raise error
        log.warning(
            "zoom %s: retrying in %.2fs after attempt %d (%s)",
            error.operation,
            delay,
            attempt,
            type(error).__name__,
        )
        self._sleep(delay)

    def _access_token(self, stale: str | None) -> str:
        return self.token_cache.get(
            self._cache_key, self._fetch_token, clock=self._clock, stale=stale
        ).value

    def _fetch_token(self) -> AccessToken:
        self._count("oauth_token")
        token = fetch_token(
            self.http,
            oauth_url=self.oauth_url,
            account_id=self.account_id,
            client_id=self.client_id,
            client_secret=self._client_secret,
            timeout=self.timeout,
            now=self._clock(),
        )
        log.info(
            "zoom oauth_token: new access token, expires in %.0fs", token.expires_at - self._clock()
        )
        return token

    def _count(self, operation: str) -> None:
        with self._calls_lock:
            self.calls[operation] += 1
        metrics.zoom_call(operation)

    def _paginate(
        self,
        operation: str,
        template: str,
        path: str,
        key: str,
        *,
        category: str,
        params: Mapping[str, str],
        page_size: int,
    ) -> Iterator[dict[str, Any]]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        page_token = ""
        seen_tokens: set[str] = set()
        while True:
            query = {**params, "page_size": str(page_size)}
            if page_token:
                query["next_page_token"] = page_token
            response = self._api(operation, "GET", template, path, category=category, params=query)
            page = _json_object(response, operation)
            items = page.get(key) or []
            if not isinstance(items, list):
                raise ZoomError(f"Zoom's {key!r} is not a list", operation=operation, body=page)
            yield from items
            page_token = page.get("next_page_token") or ""
            if not page_token:
                return
            if page_token in seen_tokens:
                raise ZoomError("Zoom repeated a next_page_token", operation=operation)
            seen_tokens.add(page_token)


def recording_windows(from_date: dt.date, to_date: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Split an inclusive date range into consecutive windows of at most 30 days."""
    if from_date > to_date:
        raise ValueError(f"from_date {from_date} is after to_date {to_date}")
    windows = []
    start = from_date
    while start <= to_date:
        end = min(start + dt.timedelta(days=RECORDING_WINDOW_DAYS - 1), to_date)
        windows.append((start, end))
        start = end + dt.timedelta(days=1)
    return windows


def _log_response(
    operation: str,
    method: str,
    template: str,
    response: requests.Response,
    error: ZoomError | None,
    attempt: int,
    started: float,
) -> None:
    level = logging.INFO if error is None else logging.WARNING
    log.log(
        level,
        "zoom %s %s %s -> %s code=%s tracking_id=%s attempt=%d %.0fms",
        operation,
        method,
        template,
        response.status_code,
        error.zoom_code if error is not None else None,
        response.headers.get("x-zm-trackingid"),
        attempt,
        (time.perf_counter() - started) * 1000,
    )


def _json_object(response: requests.Response, operation: str) -> dict[str, Any]:
    with response:
        try:
            data = response.json()
        except ValueError:
            data = None
    if not isinstance(data, dict):
        raise ZoomError(
            "Zoom answered without a JSON object",
            http_status=response.status_code,
            headers=response.headers,
            request_id=response.headers.get("x-zm-trackingid"),
            operation=operation,
        )
    return data


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _segment(value: str) -> str:
    text = str(value)
    if not text:
        raise ValueError("an id in a Zoom URL cannot be empty")
    return quote(text, safe="")


def _user(user_id: str) -> str:
    # "me", a Zoom user id, or an email address.
    return quote(_nonempty(user_id, "user_id"), safe="@")


def _nonempty(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _meeting(meeting_id: int | str) -> str:
    """A meeting id for the URL. Zoom ids exceed 32 bits (11 digits): ints yes, floats no."""
    if isinstance(meeting_id, bool) or not isinstance(meeting_id, int | str):
        raise TypeError(f"meeting id must be an int or a string of digits, got {meeting_id!r}")
    text = str(meeting_id).strip()
    if not text.isdigit() or not text.isascii() or int(text) <= 0:
        raise ValueError(f"meeting id must be a positive number, got {meeting_id!r}")
    return text


def _recording_meeting(meeting_id_or_uuid: int | str) -> str:
    """A meeting id or instance UUID for the recordings URLs.

    Zoom decodes the path once before routing, so a UUID starting with "/" or containing "//"
    would become a different path: Zoom asks for those to be URL-encoded twice.
    """
    if isinstance(meeting_id_or_uuid, int) and not isinstance(meeting_id_or_uuid, bool):
        return _meeting(meeting_id_or_uuid)
    text = _nonempty(meeting_id_or_uuid, "meeting_id_or_uuid")  # type: ignore[arg-type]
    once = quote(text, safe="")
    if text.startswith("/") or "//" in text:
        return quote(once, safe="")
    return once


# -- one client per configuration, sharing tokens and budget within the process -------------------

_shared_lock = threading.Lock()
_shared_token_cache = TokenCache()
_shared_file_caches: dict[str, FileTokenCache] = {}
_shared_budgets: dict[str, RequestBudget] = {}


def client_from_config(config: Mapping[str, Any], **overrides: Any) -> ZoomClient:
    """Build the client for the app's configuration (``app.config``).

    In sandbox mode (``ZOOM_MODE == "sandbox"``) it talks to ``SANDBOX_URL`` with the sandbox's
    fixed credentials. All clients of one process share one token cache (keyed by token URL,
    account and client) and one budget per API URL and account, because Zoom's token churn and
    rate limits are per account, not per client object. The token cache is the file
    ``ZOOM_TOKEN_CACHE_FILE`` (by default in the instance folder, see companion/config.py), shared
    with the other processes on the host; a configuration without it (a test's) keeps tokens in
    this process only.

    :param overrides: any :class:`ZoomClient` keyword, e.g. ``http=`` or ``sleep=`` in tests.
    """
    if config.get("ZOOM_MODE") == "sandbox":
        from . import SANDBOX_ACCOUNT_ID, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

        base = str(config["SANDBOX_URL"]).rstrip("/")
        api_url, oauth_url = base + "/v2", base + "/oauth/token"
        account_id, client_id = SANDBOX_ACCOUNT_ID, SANDBOX_CLIENT_ID
        client_secret = SANDBOX_CLIENT_SECRET
    else:
        api_url = str(config.get("ZOOM_API_URL") or API_URL)
        oauth_url = str(config.get("ZOOM_OAUTH_URL") or OAUTH_URL)
        account_id = str(config.get("ZOOM_ACCOUNT_ID") or "")
        client_id = str(config.get("ZOOM_CLIENT_ID") or "")
        client_secret = str(config.get("ZOOM_CLIENT_SECRET") or "")
    kwargs: dict[str, Any] = {
        "account_id": account_id,
        "client_id": client_id,
        "client_secret": client_secret,
        "api_url": api_url,
        "oauth_url": oauth_url,
        "timeout": float(config.get("ZOOM_TIMEOUT_SECONDS") or 15),
    }
    kwargs.update(overrides)
    if "token_cache" not in kwargs:
        kwargs["token_cache"] = shared_token_cache(config.get("ZOOM_TOKEN_CACHE_FILE"))
    if "budget" not in kwargs and "sleep" not in kwargs and "clock" not in kwargs:
        # A caller with a fake clock gets a budget on that clock (the client builds it).
        kwargs["budget"] = shared_budget(kwargs["api_url"], kwargs["account_id"])
    return ZoomClient(**kwargs)


def shared_token_cache(path: str | None = None) -> TokenCache:
    """The process's token cache, or the file-backed one at ``path``."""
    if not path:
        return _shared_token_cache
    with _shared_lock:
        cache = _shared_file_caches.get(path)
        if cache is None:
            cache = _shared_file_caches[path] = FileTokenCache(path)
        return cache


def shared_budget(api_url: str, account_id: str) -> RequestBudget:
    """The process's rate-limit budget for one Zoom account."""
    key = f"{api_url} {account_id}"
    with _shared_lock:
        budget = _shared_budgets.get(key)
        if budget is None:
            budget = _shared_budgets[key] = RequestBudget()
        return budget


def clear_shared_state() -> None:
    """Forget shared tokens and budgets (tests that swap servers between runs)."""
    with _shared_lock:
        _shared_token_cache.clear()
        _shared_file_caches.clear()
        _shared_budgets.clear()


__all__ = [
    "API_URL",
    "OAUTH_URL",
    "ZoomClient",
    "client_from_config",
    "clear_shared_state",
    "recording_windows",
    "shared_budget",
    "shared_token_cache",
]
