"""Fixtures of the backup tests: the vault's (a course in the Zoom sandbox, its recordings)."""

from __future__ import annotations

from ..recordings.conftest import course_in_zoom, vault

__all__ = ["course_in_zoom", "vault"]
