"""The key file (``COMPANION_KEK_FILE``): create it for a new instance, rewrite it atomically.

The file holds key lines ``kek_id:base64key``, primary first (FORMAT.md, "Configuring KEKs"). It
is only ever replaced whole: written to a private temporary file beside it, synced, renamed over
it, and the folder synced, so a crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..keysets import write_private_file
from . import keys

KEY_FILE_NAME = "recording-keys"
HEADER = (
    "# companion: key-encryption keys of the recordings vault, one `kek_id:base64key` per line.\n"
    "# The first line wraps new file keys. Losing this file loses every recording: back it up\n"
    "# apart from the database. Readable only by the service's user (mode 0600).\n"
)


def write_key_file(path: str | os.PathLike[str], lines: Sequence[str]) -> None:
    """Replace the key file with ``lines`` (validated first), atomically and durably."""
    keys.parse_kek_lines(lines, "the new key file")  # never write a file the service refuses
    write_private_file(path, HEADER + "".join(f"{line}\n" for line in lines))


def kek_configured(toml_path: Path, environ: Mapping[str, str]) -> bool:
    """Whether a KEK is already configured by the environment or the instance file."""
    if environ.get("COMPANION_KEK") or environ.get("COMPANION_KEK_FILE"):
        return True
    if not toml_path.exists():
        return False
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return True  # not ours to repair; config loading will name the problem
    return bool(data.get("kek") or data.get("kek_file"))


def ensure_instance_key(folder: Path, toml_path: Path, environ: Mapping[str, str]) -> Path | None:
    """Give a local instance its own key file (used by ``companion init`` / ``make run``).

    When no KEK is configured, writes ``recording-keys`` (mode 0600) with one new key in the
    instance folder and adds ``kek_file`` to the instance file. Returns the key file's path, or
    None when a key was configured already. An existing key file is never overwritten.
    """
    if kek_configured(toml_path, environ):
        return None
    path = (folder / KEY_FILE_NAME).resolve()
    if not path.exists():
        write_key_file(path, [keys.generate_kek_line()])
    text = toml_path.read_text(encoding="utf-8") if toml_path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    # json.dumps would escape the same way; a TOML basic string needs \ and " escaped.
    quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')
    text += f'kek_file = "{quoted}"\n'
    toml_path.write_text(text, encoding="utf-8")
    toml_path.chmod(0o600)
    return path
