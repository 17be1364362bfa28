"""Zoom's Meetings API OpenAPI document, kept in the repository so that a clone alone can run the
contract tests (see SOURCE.md for where it came from).

``zoom-openapi.json`` is the document as published; :func:`patched_path` writes, once per test
run, the copy the tests use: the same document with the two fixes :func:`patch` makes.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PUBLISHED = HERE / "zoom-openapi.json"
PUBLISHED_SHA256 = "4887782e4de4889e5d2313689c198ead5d5abeff2e54c7caa263b46fe47dc61b"


def patch(node: Any) -> None:
    """Make the document agree with Zoom's own prose, in place.

    Zoom's spec lists ``recurrence.weekly_days`` with an enum of single days ("1".."7"), while its
    description (and the live API) accept comma-separated days such as "2,4"; without this a
    class that meets twice a week is refused by any validator.

    A recording file's ``file_type`` enum lacks ``TIMELINE``, while the same schema's
    ``recording_type`` enum has ``timeline`` and Zoom's ``recording.completed`` event reference
    lists the speakers' timeline as ``file_type`` ``TIMELINE`` (``file_extension`` ``JSON``);
    the value is added to the enums that list ``TRANSCRIPT`` and ``CC``.
    """
    if isinstance(node, dict):
        days = node.get("weekly_days")
        if isinstance(days, dict) and days.get("enum"):
            days.pop("enum")
            days["pattern"] = "^[1-7](,[1-7])*$"
        kinds = node.get("file_type")
        listed = set(kinds.get("enum") or ()) if isinstance(kinds, dict) else set()
        if {"TRANSCRIPT", "CC"} <= listed and "TIMELINE" not in listed:
            kinds["enum"].append("TIMELINE")
        for value in node.values():
            patch(value)
    elif isinstance(node, list):
        for value in node:
            patch(value)


@cache
def patched() -> dict[str, Any]:
    """The patched document, checked against the published file's hash first."""
    raw = PUBLISHED.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != PUBLISHED_SHA256:
        raise RuntimeError(f"{PUBLISHED.name} changed (sha256 {digest}); see SOURCE.md")
    spec = json.loads(raw)
    patch(spec)
    return spec


def write_patched(folder: Path) -> Path:
    """Write the patched document into ``folder`` (for Prism, which reads a file)."""
    path = folder / "zoom-openapi.patched.json"
    path.write_text(json.dumps(patched(), indent=1), encoding="utf-8")
    return path
