"""Key sets kept apart from the cookie-signing ``SECRET_KEY``: reading them from configuration,
generating them, and writing their key files.

A key set is an ordered list of *key lines* ``key_id:base64key`` (32 bytes each). The first line
is the *current* key, which seals or signs anything new; the lines after it are kept only to open
or verify what older keys made, until nothing needs them (``companion keys status`` tells). This is
the format of the recordings' key-encryption keys (recordings/FORMAT.md, "Configuring KEKs"), so
every key is handled the same way: inline in ``COMPANION_<NAME>`` (comma-separated) or in the file
``COMPANION_<NAME>_FILE`` names (one line each, readable only by its owner).

A key line placed second is known to every reader but used for nothing new, so on several hosts a
new key is added second everywhere first and moved to the front once all of them know it.

Nothing here ever puts key material into a message, a ``repr`` or a log line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import os
import secrets
import stat
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from flask import Flask, current_app

from .config import ENV_PREFIX, ConfigError
from .recordings.crypto import check_kek_id as check_key_id

KEY_SIZE = 32


@dataclass(frozen=True)
class KeyKind:
    """One kind of key: the setting that holds it, and how it is named to people."""

    name: str
    setting: str
    what: str
    id_prefix: str
    file_name: str
    file_header: str

    @property
    def file_setting(self) -> str:
        return f"{self.setting}_FILE"

    @property
    def hint(self) -> str:
        return (
            f"`companion init` writes one for an instance folder; "
            f"`companion keys generate --kind {self.name}` prints a new one"
        )


SEALING = KeyKind(
    "sealing",
    "SEALING_KEYS",
    "data-sealing key",
    "seal",
    "sealing-keys",
    "# companion: data-sealing keys (course passcodes, families' join links, two-factor secrets),\n"
    "# one `key_id:base64key` per line. The first line seals new values; the others only open\n"
    "# older ones until `companion keys reseal` has moved them. Losing a key loses what it\n"
    "# sealed: back this file up apart from the database. Readable only by its user (0600).\n",
)
SIGNING = KeyKind(
    "signing",
    "SIGNING_KEYS",
    "evidence-pack signing key",
    "sign",
    "signing-keys",
    "# companion: evidence-pack signing keys, one `key_id:base64seed` per line. The first line\n"
    "# signs new packs. Earlier packs verify with the public keys companion records in its\n"
    "# database, so an old line may be removed once it is no longer first. Back this file up\n"
    "# apart from the database. Readable only by the service's user (mode 0600).\n",
)


class UnknownKey(LookupError):
    """A stored value names a key id that is not configured."""

    def __init__(self, kind: KeyKind, key_id: str):
        super().__init__(f"{kind.what} {key_id!r} is not configured")
        self.kind = kind
        self.key_id = key_id


class KeySet:
    """The configured keys of one kind by id, current first. Immutable."""

    def __init__(self, kind: KeyKind, keys: Iterable[tuple[str, bytes]]):
        entries: dict[str, bytes] = {}
        for key_id, key in keys:
            check_key_id(key_id)
            if len(key) != KEY_SIZE:
                raise ValueError(f"{kind.what} {key_id!r} must be {KEY_SIZE} bytes")
            if key_id in entries:
                raise ValueError(f"key id {key_id!r} appears twice")
            entries[key_id] = bytes(key)
        if not entries:
            raise ValueError(f"a key set needs at least one {kind.what}")
        self.kind = kind
        self._keys = entries

    @property
    def current_id(self) -> str:
        return next(iter(self._keys))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKey(self.kind, key_id) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({self.kind.setting}, current={self.current_id!r}, ids={list(self._keys)!r})"

    def to_lines(self) -> list[str]:
        return [f"{k}:{base64.b64encode(v).decode('ascii')}" for k, v in self._keys.items()]


def generate_line(kind: KeyKind, key_id: str | None = None) -> str:
    """A new key line ``key_id:base64key`` with 32 fresh random bytes."""
    if key_id is None:
        key_id = f"{kind.id_prefix}-{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(3)}"
    check_key_id(key_id)
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode('ascii')}"


def fresh_settings() -> dict[str, str]:
    """A new data-sealing and signing key as settings, for a throwaway instance (benches)."""
    return {kind.setting: generate_line(kind) for kind in (SEALING, SIGNING)}


def parse_lines(kind: KeyKind, entries: Iterable[str], source: str) -> KeySet:
    """Build a key set from key lines, naming every bad one (by position and id) at once."""
    keys = parse_key_entries(
        entries, source, key_size=KEY_SIZE, empty=f"{source} holds no {kind.what} ({kind.hint})"
    )
    return KeySet(kind, keys)


def parse_key_entries(
    entries: Iterable[str], source: str, *, key_size: int, empty: str, id_name: str = "key_id"
) -> list[tuple[str, bytes]]:
    """The (key id, key) pairs of ``id:base64key`` lines, for every kind of key file; raises
    ConfigError naming every bad entry at once (by position and id, never key material), or
    ``empty`` when there is none."""
    problems: list[str] = []
    keys: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        key_id, colon, encoded = entry.strip().partition(":")
        key_id = key_id.strip()
        where = f"{source} entry {number}"
        if not colon:
            problems.append(f"{where} is not of the form {id_name}:base64key")
            continue
        try:
            check_key_id(key_id)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        where = f"{where} ({key_id!r})"
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{where}: the key is not valid base64")
            continue
        if len(key) != key_size:
            problems.append(f"{where}: the key must be {key_size} bytes, it is {len(key)}")
            continue
        if key_id in seen:
            problems.append(f"{where}: the key id appears more than once")
            continue
        seen.add(key_id)
        keys.append((key_id, key))
    if not keys and not problems:
        problems.append(empty)
    if problems:
        raise ConfigError(problems)
    return keys


def read_key_file(kind: KeyKind, path: str | os.PathLike[str]) -> list[str]:
    """The key lines of a key file, refusing one that group or others may access."""
    return read_private_lines(path, ENV_PREFIX + kind.file_setting)


def read_private_lines(path: str | os.PathLike[str], setting: str) -> list[str]:
    """The lines of a private key file (blank lines and ``#`` comments left out), refusing one
    that group or others may access; ``setting`` names it in the messages. Every kind of key
    file is read here, the recordings' key-encryption keys too."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError([f"{setting} {path} cannot be read: {exc.strerror}"]) from None
    try:
        # Checked on the open descriptor, so the file cannot be swapped between check and read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{setting} {path} is not a regular file"])
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise ConfigError(
                [
                    f"{setting} {path} may be accessed by group or others (mode {mode:04o}); it "
                    f"must be readable only by its owner: chmod 600 {path}"
                ]
            )
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ConfigError([f"{setting} {path} is not UTF-8 text"]) from None
    finally:
        os.close(fd)
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def inline(kind: KeyKind, config: Mapping[str, Any]) -> str:
    return str(config.get(kind.setting) or "").strip()


def file_path(kind: KeyKind, config: Mapping[str, Any]) -> str:
    return str(config.get(kind.file_setting) or "").strip()


def load(kind: KeyKind, config: Mapping[str, Any]) -> KeySet:
    """The key set configured by ``<SETTING>`` or ``<SETTING>_FILE``; ConfigError otherwise."""
    text, path = inline(kind, config), file_path(kind, config)
    setting, file_setting = ENV_PREFIX + kind.setting, ENV_PREFIX + kind.file_setting
    if text and path:
        raise ConfigError([f"set {setting} or {file_setting}, not both"])
    if text:
        return parse_lines(kind, [e for e in text.split(",") if e.strip()], setting)
    if path:
        return parse_lines(kind, read_key_file(kind, path), f"{file_setting} {path}")
    raise ConfigError(
        [f"no {kind.what} is configured: set {setting} or {file_setting} ({kind.hint})"]
    )


def file_stamp(kind: KeyKind, config: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of the key file, to notice a rotation; None when set inline."""
    path = file_path(kind, config)
    if not path or inline(kind, config):
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


T = TypeVar("T")


class AppKeys(Generic[T]):
    """What an app built from one kind of key (a sealer, the signing keys), kept in
    ``app.extensions`` and built again when the key file changed since it was read, so that
    ``companion keys rotate`` needs no restart for running processes to know the new key."""

    def __init__(self, kind: KeyKind, extension: str, build: Callable[[Mapping[str, Any]], T]):
        self.kind = kind
        self.extension = extension
        self.build = build
        self._lock = threading.Lock()

    def init_app(self, app: Flask) -> T:
        built = self.build(app.config)
        app.extensions[self.extension] = (built, file_stamp(self.kind, app.config))
        return built

    def get(self, app: Flask | None = None, *, reload: bool = False) -> T:
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        stamp = file_stamp(self.kind, app.config)
        loaded: tuple[T, Any] | None = app.extensions.get(self.extension)
        if loaded is not None and not reload and loaded[1] == stamp:
            return loaded[0]
        with self._lock:
            loaded = app.extensions.get(self.extension)
            if loaded is None or reload or loaded[1] != stamp:
                loaded = (self.build(app.config), stamp)
                app.extensions[self.extension] = loaded
            return loaded[0]


def write_key_file(kind: KeyKind, path: str | os.PathLike[str], lines: Sequence[str]) -> None:
    """Replace a key file with ``lines`` (validated first), atomically and durably: a private
    temporary file beside it, synced, renamed over it, the folder synced. A crash leaves the old
    file or the new one, never half of one."""
    parse_lines(kind, lines, "the new key file")  # never write a file the service refuses
    write_private_file(path, kind.file_header + "".join(f"{line}\n" for line in lines))


def write_private_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace a private file with ``text``, atomically and durably: a temporary file readable
    only by its owner beside it, synced, renamed over it, the folder synced. A crash leaves the
    old file or the new one, never half of one."""
    path = Path(path)
    folder = path.parent
    temporary = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


def _instance_settings(toml_path: Path) -> dict[str, Any] | None:
    if not toml_path.exists():
        return {}
    try:
        return tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None  # not ours to repair; loading the configuration will name the problem


def _toml_string(value: str) -> str:
    # A TOML basic string needs \ and " escaped (json.dumps would do the same).
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ensure_instance_keys(
    folder: Path, toml_path: Path, environ: Mapping[str, str], *, existing_instance: bool
) -> list[str]:
    """Give an instance folder its own sealing and signing keys (``companion init``).

    For each kind not configured by the environment or the instance file, writes its key file
    (mode 0600, one new key; an existing file is kept) and names it in the instance file. On an
    instance that existed before its keys were separated from ``SECRET_KEY``, the secret is also
    kept as ``legacy_secret_key`` so what it sealed stays readable until ``companion keys
    reseal``. Returns what was done, one line each, for the person running it.
    """
    data = _instance_settings(toml_path)
    if data is None:
        return []
    added: list[str] = []
    done: list[str] = []
    sealing_added = False
    for kind in (SEALING, SIGNING):
        env_names = (ENV_PREFIX + kind.setting, ENV_PREFIX + kind.file_setting)
        if any(environ.get(n) for n in env_names) or any(
            data.get(n.lower()) for n in (kind.setting, kind.file_setting)
        ):
            continue
        path = (folder / kind.file_name).resolve()
        if not path.exists():
            write_key_file(kind, path, [generate_line(kind)])
        added.append(f"{kind.file_setting.lower()} = {_toml_string(str(path))}")
        done.append(f"Wrote {path.name} with a new {kind.what} (back it up) and set it.")
        sealing_added = sealing_added or kind is SEALING
    # Only when this instance had no sealing key yet: it then sealed with SECRET_KEY before.
    legacy = (
        existing_instance
        and sealing_added
        and data.get("secret_key")
        and not data.get("legacy_secret_key")
        and not environ.get(ENV_PREFIX + "LEGACY_SECRET_KEY")
    )
    if legacy:
        added.append(f"legacy_secret_key = {_toml_string(str(data['secret_key']))}")
        done.append(
            "Kept the secret key as legacy_secret_key: what it sealed stays readable; run "
            "`companion keys reseal`, then remove that line."
        )
    if added:
        text = toml_path.read_text(encoding="utf-8") if toml_path.exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        toml_path.write_text(text + "".join(f"{line}\n" for line in added), encoding="utf-8")
        toml_path.chmod(0o600)
    return done
