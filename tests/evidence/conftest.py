"""Every evidence test runs inside the app (mail, audit and URLs need it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask


@pytest.fixture(autouse=True)
def _in_app(app: Flask) -> Iterator[Flask]:
    yield app
