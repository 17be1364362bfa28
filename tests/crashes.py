"""Stopping a step of the work engine dead at one point, as a killed worker would.

``crash_at = crash_fixture(QUEUE.name)`` in a test module gives it a fixture: ``crash_at(point)``
("after_claim", "before_call" or "after_call", see ``companion.work.Hooks``) makes the next step
of that queue raise :class:`Crash` there, once (``crash_fixture()``: ``crash_at(queue, point)``).
The hooks are removed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from companion import work


class Crash(BaseException):
    """The worker dying (not an Exception: nothing may catch it and record it as a failure)."""


def crash_fixture(queue_name: str | None = None) -> Any:
    """The ``crash_at`` fixture for one queue (``crash_at(point)``), or for any
    (``crash_at(queue_name, point)``) when no queue is given."""

    @pytest.fixture
    def crash_at() -> Iterator[Callable[..., None]]:
        added: list[tuple[list[Any], Any]] = []

        def arm(queue_name: str, point: str) -> None:
            seam: list[Any] = getattr(work.hooks, point)
            fired: list[bool] = []

            def hook(queue: str, _item: Any) -> None:
                if queue == queue_name and not fired:
                    fired.append(True)
                    raise Crash(point)

            seam.append(hook)
            added.append((seam, hook))

        if queue_name is None:
            yield arm
        else:
            yield lambda point: arm(queue_name, point)
        for seam, hook in added:
            seam.remove(hook)

    return crash_at
