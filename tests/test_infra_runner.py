"""`companion run` supervises its child processes; `make run`'s steps work end to end."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import click
import pytest

from companion import runner
from companion.runner import Part, Supervisor

from .servers import free_port, wait_for_port

PY = sys.executable


def group_with(*names: str) -> click.Group:
    group = click.Group("companion")
    group.add_command(click.Command("serve"), "serve")
    for name in names:
        if name == "sandbox":
            sandbox = click.Group("sandbox")
            sandbox.add_command(click.Command("serve"), "serve")
            group.add_command(sandbox, "sandbox")
        else:
            group.add_command(click.Command(name), name)
    return group


def names(parts: list[Part]) -> list[str]:
    return [p.name for p in parts]


def test_plan_runs_only_commands_that_exist() -> None:
    assert names(runner.plan({"ZOOM_MODE": "sandbox"}, group_with())) == ["web"]
    full = group_with("sandbox", "worker")
    assert names(runner.plan({"ZOOM_MODE": "sandbox"}, full)) == ["web", "sandbox", "worker"]
    # With real Zoom credentials the sandbox is not started.
    assert names(runner.plan({"ZOOM_MODE": "zoom"}, full)) == ["web", "worker"]
    web = runner.plan({}, full)[0]
    assert web.argv == (PY, "-m", "companion", "serve")


def test_plan_needs_sandbox_serve_not_just_a_sandbox_group() -> None:
    group = group_with()
    group.add_command(click.Group("sandbox"), "sandbox")
    assert names(runner.plan({"ZOOM_MODE": "sandbox"}, group)) == ["web"]


def child(code: str) -> tuple[str, ...]:
    return (PY, "-c", textwrap.dedent(code))


def test_output_is_prefixed_and_one_exit_stops_the_others() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [
            Part("web", child("import time; print('listening'); time.sleep(60)")),
            Part("worker", child("import sys; print('broken config'); sys.exit(3)")),
        ],
        out=out,
        grace=5,
    )
    started = time.monotonic()
    assert sup.run() == 3
    assert time.monotonic() - started < 15
    lines = out.getvalue().splitlines()
    assert "web    | listening" in lines
    assert "worker | broken config" in lines
    assert "worker | exited with code 3; stopping the others" in lines
    assert all(p.poll() is not None for p in sup.procs.values())


def test_a_clean_exit_of_one_child_still_stops_all_and_is_an_error() -> None:
    sup = Supervisor(
        [Part("a", child("pass")), Part("b", child("import time; time.sleep(60)"))],
        out=io.StringIO(),
        grace=5,
    )
    assert sup.run() == 1
    assert all(p.poll() is not None for p in sup.procs.values())


def test_a_child_that_ignores_the_signal_is_killed() -> None:
    out = io.StringIO()
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "print('up', flush=True); time.sleep(60)"
    sup = Supervisor([Part("slow", child(stubborn)), Part("quick", child("pass"))], out=out)
    sup.grace = 0.5
    assert sup.run() == 1
    assert "did not stop within" in out.getvalue()
    assert all(p.poll() is not None for p in sup.procs.values())


SUPERVISED = """
import sys
from companion.runner import Part, Supervisor
code = (
    "import os, signal, sys, time\\n"
    "def bye(signum, frame):\\n"
    "    print('got', signal.Signals(signum).name, flush=True); sys.exit(0)\\n"
    "signal.signal(signal.SIGINT, bye); signal.signal(signal.SIGTERM, bye)\\n"
    "print('pid', os.getpid(), flush=True); time.sleep(60)\\n"
)
parts = [Part("one", (sys.executable, "-c", code)), Part("two", (sys.executable, "-c", code))]
sys.exit(Supervisor(parts).run())
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_to_every_child(signum: int) -> None:
    proc = subprocess.Popen(
        [PY, "-c", SUPERVISED], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    pids = []
    while len(pids) < 2:
        line = proc.stdout.readline()
        assert line, "supervisor ended early"
        if " | pid " in line:
            pids.append(int(line.rsplit(" ", 1)[1]))
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    name = signal.Signals(signum).name
    assert f"one | got {name}" in rest
    assert f"two | got {name}" in rest
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_make_run_steps_serve_healthz_and_stop_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("COMPANION_")]:
        del env[key]
    env.update(
        COMPANION_INSTANCE_PATH=str(tmp_path / "instance"),
        COMPANION_PORT=str(port),
        COMPANION_SANDBOX_URL=f"http://127.0.0.1:{free_port()}",
    )
    companion = [PY, "-m", "companion"]

    def step(*args: str) -> str:
        done = subprocess.run(
            [*companion, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "new secret key" in step("init")
    assert "Database is up to date" in step("db", "upgrade")
    first = step("demo")
    assert "admin@example.org" in first and "shown only now" in first
    assert "no demo data added" in step("demo")

    proc = subprocess.Popen(
        [*companion, "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            wait_for_port(port, timeout=60, process=proc, what="companion run")
        except RuntimeError as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{exc}\n{proc.communicate()[0]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            health = json.load(r)
        assert health["status"] == "ok"
        assert health["database"] == "sqlite"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert re.search(r"^web +\| ", out, re.MULTILINE), out
    assert f"companion on http://127.0.0.1:{port}" in out
    with pytest.raises(RuntimeError, match="did not listen"):
        wait_for_port(port, timeout=1)
