"""Configuration: one table of settings, layered defaults -> instance file -> environment.

Every setting is named ``COMPANION_<NAME>`` in the environment and ``<name>`` (lower case) in the
instance file ``instance/companion.toml``. ``load()`` coerces and validates all of them at once and
raises :class:`ConfigError` naming every problem, so a misconfigured service never starts.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ENV_PREFIX = "COMPANION_"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def coerce(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError(f"must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return coerce


def _bool(raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _url(raw: str) -> str:
    text = str(raw).strip()
    parsed = urlparse(text)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError(f"must be an http(s) URL, got {raw!r}")
    return text.rstrip("/")


def _optional_url(raw: str) -> str:
    return _url(raw) if str(raw).strip() else ""


def _database_url(raw: str) -> str:
    text = str(raw).strip()
    scheme = text.split(":", 1)[0]
    if not (scheme.startswith("sqlite") or scheme.startswith("postgres")):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        # psycopg 3 is the driver we ship; the bare scheme would look for psycopg2.
        text = "postgresql+psycopg" + text[len(scheme) :]
    return text


def _secret(raw: str) -> str:
    text = str(raw)
    if len(text) < 32:
        raise ValueError("must be at least 32 characters (generate one with `companion secret`)")
    return text


def _optional_secret(raw: str) -> str:
    text = str(raw)
    return _secret(text) if text else ""


def _timezone(raw: str) -> str:
    try:
        zoneinfo.ZoneInfo(str(raw))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the zone database such as "Europe" is not a zone.
        raise ValueError(f"is not a known time zone: {raw!r}") from None
    return str(raw)


def _choice(*options: str) -> Callable[[str], str]:
    def coerce(raw: str) -> str:
        text = str(raw).strip().lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return text

    return coerce


def _text(raw: str) -> str:
    return str(raw).strip()


# S3's rules for a bucket name (lower case, 3 to 63 characters, no "..", not an IP address).
_BUCKET = re.compile(r"(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _storage_url(raw: str) -> str:
    """``s3://bucket[/prefix]``, normalised to no trailing slash."""
    text = str(raw).strip()
    if not text:
        return ""
    parsed = urlparse(text)
    if parsed.scheme != "s3":
        raise ValueError(f"must be an s3://bucket/prefix URL, got {raw!r}")
    if "@" in parsed.netloc or parsed.query or parsed.fragment:
        # Credentials in the URL would end up in logs; they have settings of their own.
        raise ValueError(
            "must be s3://bucket/prefix only: give credentials with COMPANION_S3_ACCESS_KEY_ID "
            "and COMPANION_S3_SECRET_ACCESS_KEY"
        )
    if not _BUCKET.fullmatch(parsed.netloc):
        raise ValueError(
            f"names a bucket S3 does not allow ({parsed.netloc!r}): 3 to 63 lower-case letters, "
            "digits, dots and hyphens"
        )
    parts = [p for p in parsed.path.split("/") if p]
    bad = [p for p in parts if not _PREFIX_PART.fullmatch(p)]
    if bad or len(parsed.path) > 512:
        raise ValueError(
            f"has a prefix with unusual characters ({bad[0] if bad else parsed.path!r}): use "
            "letters, digits, '.', '_', '-' and '/'"
        )
    return "s3://" + "/".join([parsed.netloc, *parts])


def _readable_file(raw: str) -> str:
    text = str(raw).strip()
    if not text:
        return ""
    if not os.access(text, os.R_OK) or not Path(text).is_file():
        raise ValueError(f"must be a readable file, got {raw!r}")
    return text


def _email(raw: str) -> str:
    text = str(raw).strip()
    if "@" not in text or text.startswith("@") or text.endswith("@"):
        raise ValueError(f"must be an email address, got {raw!r}")
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    coerce: Callable[[Any], Any]
    default: Any
    doc: str
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name


# The README's configuration table is checked against this list by a test.
SETTINGS: tuple[Setting, ...] = (
    Setting("SECRET_KEY", _secret, None, "Signs session cookies and CSRF tokens. Required.", True),
    Setting(
        "DATABASE_URL",
        _database_url,
        None,
        "SQLAlchemy URL. Default: SQLite file `companion.db` in the instance folder.",
    ),
    Setting("HOST", _text, "127.0.0.1", "Address `companion serve` binds to."),
    Setting("PORT", _int_range(1, 65535), 5000, "Port `companion serve` listens on."),
    Setting(
        "BASE_URL",
        _url,
        None,
        "Public address used in emailed links. Default: `http://HOST:PORT`.",
    ),
    Setting(
        "SESSION_IDLE_MINUTES",
        _int_range(1, 24 * 60),
        30,
        "Staff session ends after this long without a request.",
    ),
    Setting(
        "SESSION_ABSOLUTE_HOURS",
        _int_range(1, 24 * 14),
        12,
        "Staff session ends this long after sign-in, whatever the activity.",
    ),
    Setting(
        "LOGIN_MAX_FAILURES",
        _int_range(1, 100),
        5,
        "Failed sign-ins for one email (or 4x this from one address) before throttling.",
    ),
    Setting(
        "LOGIN_WINDOW_MINUTES",
        _int_range(1, 24 * 60),
        15,
        "Window in which failed sign-ins are counted, and how long throttling lasts.",
    ),
    Setting("INVITE_TTL_HOURS", _int_range(1, 24 * 30), 72, "How long an invite link is valid."),
    Setting(
        "SECURE_COOKIES",
        _bool,
        None,
        "Mark cookies Secure. Default: on when BASE_URL is https.",
    ),
    Setting("MAIL_FROM", _email, "companion@example.org", "Sender address of every message."),
    Setting("SMTP_HOST", _text, "", "SMTP server. Empty: mail stays in the database outbox."),
    Setting("SMTP_PORT", _int_range(1, 65535), 587, "SMTP port."),
    Setting("SMTP_USERNAME", _text, "", "SMTP user name (optional)."),
    Setting("SMTP_PASSWORD", str, "", "SMTP password (optional).", True),
    Setting(
        "SMTP_SECURITY",
        _choice("starttls", "tls", "none"),
        "starttls",
        "`starttls`, `tls` (implicit TLS) or `none` (loopback test servers only).",
    ),
    Setting(
        "SMTP_CA_FILE",
        _readable_file,
        "",
        "PEM file of CA certificates the SMTP server's certificate must chain to. "
        "Default: the system's trusted CAs.",
    ),
    Setting("ZOOM_ACCOUNT_ID", _text, "", "Zoom Server-to-Server OAuth account id."),
    Setting("ZOOM_CLIENT_ID", _text, "", "Zoom Server-to-Server OAuth client id."),
    Setting("ZOOM_CLIENT_SECRET", str, "", "Zoom Server-to-Server OAuth client secret.", True),
    Setting("ZOOM_API_URL", _url, "https://api.zoom.us/v2", "Zoom REST API base URL."),
    Setting("ZOOM_OAUTH_URL", _url, "https://zoom.us/oauth/token", "Zoom OAuth token URL."),
    Setting(
        "ZOOM_WEBHOOK_SECRET",
        str,
        "",
        "Secret token of the Zoom webhook subscription (sandbox: generated).",
        True,
    ),
    Setting("ZOOM_USER_ID", _text, "me", "Zoom user who hosts course meetings."),
    Setting(
        "WEBHOOK_TOLERANCE_SECONDS",
        _int_range(30, 3600),
        300,
        "How far a Zoom webhook's signed timestamp may be from now before it is refused.",
    ),
    Setting(
        "WEBHOOK_MAX_BYTES",
        _int_range(1024, 10 * 1024 * 1024),
        256 * 1024,
        "Largest Zoom webhook body accepted; bigger ones are refused unread.",
    ),
    Setting(
        "ZOOM_TIMEOUT_SECONDS",
        _int_range(1, 300),
        15,
        "Timeout of every request to Zoom.",
    ),
    Setting(
        "ZOOM_TOKEN_CACHE_FILE",
        _text,
        None,
        "File in which every companion process on this machine (the web server and each worker) "
        "shares one Zoom access token, created owner-only; Zoom's tokens are per account, and "
        "processes that each fetch their own keep replacing each other's. Default: "
        "`zoom-token.json` in the instance folder.",
    ),
    Setting(
        "SANDBOX_URL",
        _url,
        "http://127.0.0.1:5001",
        "Where the built-in Zoom sandbox listens when Zoom credentials are not set.",
    ),
    Setting(
        "STORAGE_DIR",
        _text,
        None,
        "Folder of encrypted recordings. Default: `recordings/` in the instance folder.",
    ),
    Setting(
        "STORAGE_URL",
        _storage_url,
        "",
        "`s3://bucket/prefix`: keep the encrypted recordings in an S3-compatible object store "
        "instead of STORAGE_DIR. Empty: the local folder.",
    ),
    Setting(
        "S3_ENDPOINT_URL",
        _optional_url,
        "",
        "Address of the S3-compatible store (MinIO, Ceph, a cloud's S3 API). Empty: AWS S3.",
    ),
    Setting("S3_REGION", _text, "", "Region of the bucket. Empty: the SDK's default."),
    Setting(
        "S3_ACCESS_KEY_ID",
        _text,
        "",
        "Access key of the object store. Empty (with the secret): the SDK's own chain "
        "(`AWS_*` variables, instance role).",
    ),
    Setting("S3_SECRET_ACCESS_KEY", str, "", "Secret key belonging to S3_ACCESS_KEY_ID.", True),
    Setting(
        "S3_ADDRESSING_STYLE",
        _choice("auto", "path", "virtual"),
        "auto",
        "`path` for stores that want `endpoint/bucket/key` (most self-hosted ones), `virtual` for "
        "`bucket.endpoint/key`, `auto` lets the SDK choose.",
    ),
    Setting(
        "S3_TIMEOUT_SECONDS",
        _int_range(1, 300),
        30,
        "Connect and read timeout of every request to the object store.",
    ),
    Setting(
        "KEK",
        str,
        "",
        "Key-encryption key(s) of recordings: `kek_id:base64key[,kek_id2:base64key2]`, the first "
        "wraps new file keys. Or use KEK_FILE.",
        True,
    ),
    Setting(
        "KEK_FILE",
        _text,
        "",
        "File with the same key lines, one per line; must be readable only by its owner.",
    ),
    Setting(
        "SEALING_KEYS",
        str,
        "",
        "Data-sealing key(s) of course passcodes, join links and two-factor secrets: "
        "`key_id:base64key[,...]`, the first seals new values. Or use SEALING_KEYS_FILE.",
        True,
    ),
    Setting(
        "SEALING_KEYS_FILE",
        _text,
        "",
        "File with the same key lines, one per line; must be readable only by its owner.",
    ),
    Setting(
        "SIGNING_KEYS",
        str,
        "",
        "Evidence-pack signing key(s): `key_id:base64seed[,...]`, the first signs new packs. "
        "Or use SIGNING_KEYS_FILE.",
        True,
    ),
    Setting(
        "SIGNING_KEYS_FILE",
        _text,
        "",
        "File with the same key lines, one per line; must be readable only by its owner.",
    ),
    Setting(
        "BACKUP_KEYS",
        str,
        "",
        "Backup key(s) of `companion backup`: `key_id:base64key[,...]`, the first encrypts new "
        "archives, the others read older ones. Or use BACKUP_KEYS_FILE.",
        True,
    ),
    Setting(
        "BACKUP_KEYS_FILE",
        _text,
        "",
        "File with the same key lines, one per line; must be readable only by its owner.",
    ),
    Setting(
        "LEGACY_SECRET_KEY",
        _optional_secret,
        "",
        "The SECRET_KEY that sealed values and signed packs before keys were separated; read "
        "only, until `companion keys reseal` has moved them. Empty: none.",
        True,
    ),
    Setting(
        "DEFAULT_TIMEZONE",
        _timezone,
        "Europe/London",
        "Time zone of a new organisation and of demo data.",
    ),
    Setting("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "Log level."),
    Setting(
        "LOG_FORMAT",
        _choice("text", "json"),
        "text",
        "`json`: one JSON object per log line (time, level, logger, message, process), for a "
        "log collector. `text`: plain lines.",
    ),
    Setting(
        "METRICS_TOKEN",
        _optional_secret,
        "",
        "Bearer token that `GET /metrics` (Prometheus) requires. Empty: metrics are off.",
        True,
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def read_instance_file(path: Path, problems: list[str] | None = None) -> dict[str, Any]:
    """Read ``companion.toml`` from the instance folder; a missing file is an empty layer.

    With ``problems``, each problem is appended there and the usable settings are still
    returned (so one message can name every problem); without it, problems raise ConfigError.
    """
    found: list[str] = []
    data: dict[str, Any] = {}
    if path.exists():
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            found.append(f"{path.name}: not valid TOML ({exc})")
        except OSError as exc:
            found.append(f"{path.name}: cannot be read ({exc.strerror or exc})")
    found += [
        f"{path.name}: unknown setting {k!r}" for k in data if k.upper() not in SETTINGS_BY_NAME
    ]
    if found and problems is None:
        raise ConfigError(found)
    if problems is not None:
        problems.extend(found)
    return {k.upper(): v for k, v in data.items() if k.upper() in SETTINGS_BY_NAME}


def load(
    instance_path: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return validated settings, layering defaults, the instance file, environment, overrides."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    # Every layer adds to one list, so that one message names every problem.
    problems: list[str] = []
    raw.update(read_instance_file(instance_path / "companion.toml", problems))
    for s in SETTINGS:
        if s.env in environ:
            raw[s.name] = environ[s.env]
    extra: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key in SETTINGS_BY_NAME:
            raw[key] = value
        else:
            extra[key] = value

    values: dict[str, Any] = {}
    for s in SETTINGS:
        value = raw[s.name]
        if isinstance(value, str) and value == "" and s.default != "":
            # An empty variable means "not set", so the default applies.
            value = s.default
        if value is None:
            values[s.name] = None
            continue
        try:
            values[s.name] = s.coerce(value)
        except (ValueError, TypeError) as exc:
            problems.append(f"{s.env} {exc}")

    if values.get("SECRET_KEY") is None and not problems_mention(problems, "SECRET_KEY"):
        problems.append(
            f"{ENV_PREFIX}SECRET_KEY is required (set it, or run `make run` which writes one "
            "to the instance folder)"
        )
    zoom = [values.get(n) for n in ("ZOOM_ACCOUNT_ID", "ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET")]
    if any(zoom) and not all(zoom):
        problems.append(
            "Zoom credentials are incomplete: set all of COMPANION_ZOOM_ACCOUNT_ID, "
            "COMPANION_ZOOM_CLIENT_ID and COMPANION_ZOOM_CLIENT_SECRET, or none for the sandbox"
        )
    if all(zoom) and not values.get("ZOOM_WEBHOOK_SECRET"):
        problems.append("COMPANION_ZOOM_WEBHOOK_SECRET is required with real Zoom credentials")
    problems += _storage_problems(values)
    if problems:
        raise ConfigError(problems)

    if values["DATABASE_URL"] is None:
        values["DATABASE_URL"] = f"sqlite:///{instance_path / 'companion.db'}"
    if values["STORAGE_DIR"] is None and not values["STORAGE_URL"]:
        values["STORAGE_DIR"] = str(instance_path / "recordings")
    if values["ZOOM_TOKEN_CACHE_FILE"] is None:
        values["ZOOM_TOKEN_CACHE_FILE"] = str(instance_path / "zoom-token.json")
    if values["BASE_URL"] is None:
        values["BASE_URL"] = f"http://{values['HOST']}:{values['PORT']}"
    if values["SECURE_COOKIES"] is None:
        values["SECURE_COOKIES"] = values["BASE_URL"].startswith("https://")
    values["ZOOM_MODE"] = "zoom" if all(zoom) else "sandbox"
    values.update(extra)
    return values


def _storage_problems(values: Mapping[str, Any]) -> list[str]:
    """Object-storage settings that contradict each other (each one alone was checked)."""
    problems = []
    s3_settings = [
        s.env
        for s in SETTINGS
        if s.name.startswith("S3_") and values.get(s.name) not in (None, "", s.default)
    ]
    if values.get("STORAGE_URL"):
        if values.get("STORAGE_DIR") is not None:
            problems.append(
                "COMPANION_STORAGE_URL and COMPANION_STORAGE_DIR are both set: the recordings "
                "are kept in one place, so set one of them"
            )
    elif s3_settings:
        # Without this the recordings would quietly stay on the local disk.
        problems.append(
            f"{', '.join(s3_settings)} set without COMPANION_STORAGE_URL: set it to "
            "s3://bucket/prefix to use the object store, or remove the S3 settings"
        )
    if bool(values.get("S3_ACCESS_KEY_ID")) != bool(values.get("S3_SECRET_ACCESS_KEY")):
        problems.append(
            "object-store credentials are incomplete: set both COMPANION_S3_ACCESS_KEY_ID and "
            "COMPANION_S3_SECRET_ACCESS_KEY, or neither to use the SDK's own credentials"
        )
    return problems


def problems_mention(problems: list[str], name: str) -> bool:
    return any(ENV_PREFIX + name in p for p in problems)
