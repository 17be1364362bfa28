"""Zoom: the API client (and, in ``sandbox/``, a stand-in for Zoom used when none is configured).

Import from here; the modules behind it are implementation detail::

    from companion.zoom import ZoomNotFound, zoom_for

    zoom = zoom_for(app)  # the app's one client (accessor.py), built by client_from_config
    meeting = zoom.get_meeting(meeting_id)

``api.py`` says what companion asks of Zoom: the ``ZoomApi`` protocol that services and work steps
take, and the typed shapes of Zoom's answers (``Meeting``, ``Registrant``, ``MeetingRecordings``).

``failures.py`` holds what a Zoom failure means to the rest of companion (the domain errors
``ZoomUnavailable`` and ``ZoomRefused``, and which client errors are ``TRANSIENT``).
"""

# The sandbox's fixed Server-to-Server credentials. The sandbox accepts exactly these and
# client_from_config() uses them in sandbox mode; they protect nothing and are not secrets.
SANDBOX_ACCOUNT_ID = "sandbox-account"
SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105

from .accessor import EXTENSION_KEY, zoom_for  # noqa: E402
from .api import ZoomApi  # noqa: E402
from .auth import AccessToken, FileTokenCache, TokenCache  # noqa: E402
from .budget import (  # noqa: E402
    HEAVY,
    LIGHT,
    MEDIUM,
    PLAN_RATES,
    RESOURCE_INTENSIVE,
    RequestBudget,
)
from .client import (  # noqa: E402
    API_URL,
    OAUTH_URL,
    ZoomClient,
    clear_shared_state,
    client_from_config,
    recording_windows,
)
from .errors import (  # noqa: E402
    ZoomAuthError,
    ZoomConflict,
    ZoomConnectionError,
    ZoomError,
    ZoomForbidden,
    ZoomNotFound,
    ZoomRateLimited,
    ZoomServerError,
    ZoomValidationError,
)
from .failures import TRANSIENT, ZoomRefused, ZoomUnavailable  # noqa: E402

__all__ = [
    "API_URL",
    "EXTENSION_KEY",
    "HEAVY",
    "LIGHT",
    "MEDIUM",
    "OAUTH_URL",
    "PLAN_RATES",
    "RESOURCE_INTENSIVE",
    "TRANSIENT",
    "SANDBOX_ACCOUNT_ID",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "AccessToken",
    "FileTokenCache",
    "RequestBudget",
    "TokenCache",
    "ZoomApi",
    "ZoomAuthError",
    "ZoomClient",
    "ZoomConflict",
    "ZoomConnectionError",
    "ZoomError",
    "ZoomForbidden",
    "ZoomNotFound",
    "ZoomRateLimited",
    "ZoomRefused",
    "ZoomServerError",
    "ZoomUnavailable",
    "ZoomValidationError",
    "clear_shared_state",
    "client_from_config",
    "recording_windows",
    "zoom_for",
]
