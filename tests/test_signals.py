"""companion.signals: receivers are connected by create_app (each package's init_app), never by
importing a module, and every signal declared has a receiver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from companion import ROOT, signals
from companion.evidence import attendance

from .conftest import SECRET, TEST_KEYS

# Imports every module of companion (as a process might, in any order), then builds the app.
IMPORT_THEN_CREATE = """
import importlib, json, pkgutil, sys
import companion
from companion import signals

for found in pkgutil.walk_packages(companion.__path__, "companion."):
    if found.name.endswith(("__main__", "migrations.env")):  # a command line, alembic's script
        continue
    importlib.import_module(found.name)

def counts():
    return {name: len(signal.receivers) for name, signal in signals.declared().items()}

after_imports = counts()
config = json.loads(sys.argv[1])
companion.create_app(config, instance_path=sys.argv[2], environ={})
after_one_app = counts()
companion.create_app(config, instance_path=sys.argv[2], environ={})
print(json.dumps({"imports": after_imports, "one": after_one_app, "two": counts()}))
"""


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_importing_connects_nothing_and_create_app_connects_every_signal_once(
    tmp_path: Path,
) -> None:
    config = {
        "SECRET_KEY": SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "TESTING": True,
        "STORAGE_DIR": str(tmp_path / "recordings"),
        **TEST_KEYS,
    }
    counts = json.loads(run_python(IMPORT_THEN_CREATE, json.dumps(config), str(tmp_path)))
    assert set(counts["imports"]) == set(signals.declared())
    assert all(n == 0 for n in counts["imports"].values()), counts["imports"]
    assert all(n >= 1 for n in counts["one"].values()), counts["one"]
    # A second app (a test run builds hundreds) connects nothing more.
    assert counts["two"] == counts["one"]


def test_every_signal_has_a_receiver_after_create_app(app: Flask) -> None:
    for name, signal in signals.declared().items():
        assert signal.receivers, f"nothing receives {name}"


def test_every_kind_of_zoom_event_companion_handles_has_its_receiver(app: Flask) -> None:
    for name in [*attendance.ZOOM_EVENTS, "recording.completed"]:
        receivers = list(signals.zoom_event.receivers_for(name))
        assert len(receivers) == 1, name
    assert not list(signals.zoom_event.receivers_for("meeting.chat_message_sent"))


def test_every_course_event_names_a_declared_signal_or_none() -> None:
    declared = set(signals.declared().values())
    assert all(s is None or s in declared for s in signals.COURSE_EVENTS.values())


def test_a_closure_cannot_be_connected() -> None:
    def made_per_call(_sender: Any) -> None:
        pass

    with pytest.raises(TypeError):
        signals.connect(signals.admit_columns, made_per_call)
    assert made_per_call not in signals.admit_columns.receivers.values()
