"""Sealers for tests: the suite's own keys (for factories that run without an app), and keys
no test app has (for values this server cannot open)."""

from __future__ import annotations

from companion import keysets, sealing


def suite_sealer() -> sealing.Sealer:
    """The sealer of every test app's keys (conftest.TEST_KEYS)."""
    from .conftest import TEST_KEYS  # imported late: conftest imports the factories

    return sealing.sealer_from_config(TEST_KEYS)


def foreign_sealer(key_id: str = "seal-elsewhere") -> sealing.Sealer:
    """A sealer under a new random key, with an id no test app has configured."""
    line = keysets.generate_line(keysets.SEALING, key_id)
    return sealing.Sealer(keysets.parse_lines(keysets.SEALING, [line], "a test"))
