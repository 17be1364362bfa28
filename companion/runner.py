"""`companion run`: start the web server and its helpers together, stop them together.

Each part is a child process running one `companion` command (so it uses the same venv and the
same configuration). Their output lines are prefixed with the part's name. Ctrl-C or SIGTERM is
forwarded to every child; when one child exits, the others are stopped and `companion run` exits
with that child's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import click

# How long children get to stop after the forwarded signal before they are killed.
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Part:
    name: str
    argv: tuple[str, ...]


def has_command(group: click.Group, *path: str) -> bool:
    """True when `companion <path...>` exists (other parts of the code add commands over time)."""
    command: click.Command | None = group
    for name in path:
        if not isinstance(command, click.Group):
            return False
        command = command.commands.get(name)
        if command is None:
            return False
    return True


def plan(config: Mapping[str, Any], group: click.Group) -> list[Part]:
    """Which children to start for this configuration."""
    companion = (sys.executable, "-m", "companion")
    parts = [Part("web", (*companion, "serve"))]
    if config.get("ZOOM_MODE") == "sandbox" and has_command(group, "sandbox", "serve"):
        parts.append(Part("sandbox", (*companion, "sandbox", "serve")))
    if has_command(group, "worker"):
        parts.append(Part("worker", (*companion, "worker")))
    return parts


def _child_setup() -> None:
    # Own process group, so that a terminal's Ctrl-C reaches only the supervisor, which then
    # stops the children in order; and die with the supervisor if it is killed outright.
    os.setpgid(0, 0)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's own cleanup still applies
        pass


@dataclass
class Supervisor:
    parts: Sequence[Part]
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    env: Mapping[str, str] | None = None
    grace: float = STOP_GRACE_SECONDS
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._signal = signal.SIGTERM
        self._readers: dict[str, threading.Thread] = {}
        self._width = max([3, *(len(p.name) for p in self.parts)])

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self._width}} | {line}\n")
            self.out.flush()

    def request_stop(self, signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        self._signal = signal.Signals(signum)
        self._stop.set()

    def start(self) -> None:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        # All children are started before any reader thread, so forking stays thread-safe.
        for part in self.parts:
            self.procs[part.name] = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                part.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_child_setup,
            )
        for name, proc in self.procs.items():
            reader = threading.Thread(target=self._pump, args=(name, proc), daemon=True)
            reader.start()
            self._readers[name] = reader

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self.say(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def wait(self, poll: float = 0.2) -> int:
        """Block until a signal or a child's exit; then stop everything. Returns the exit code."""
        code = 0
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                rc = proc.poll()
                if rc is not None:
                    # Let its last lines (often the reason) come out before the verdict.
                    self._readers[name].join(timeout=2)
                    self.say(name, f"exited with code {rc}; stopping the others")
                    code = rc if rc != 0 else 1
                    self._stop.set()
                    break
            else:
                self._stop.wait(poll)
        self.stop_all(self._signal)
        return code

    def stop_all(self, signum: int = signal.SIGTERM) -> None:
        running = [(n, p) for n, p in self.procs.items() if p.poll() is None]
        for _name, proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)
        deadline = time.monotonic() + self.grace
        for name, proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(name, f"did not stop within {self.grace:.0f} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for reader in self._readers.values():
            reader.join(timeout=2)

    def run(self) -> int:
        previous = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            return self.wait()
        finally:
            # Whatever happened (even an error while starting), leave no child behind.
            self.stop_all(signal.SIGTERM)
            for s, handler in previous.items():
                signal.signal(s, handler)


def main(config: Mapping[str, Any], group: click.Group) -> int:
    parts = plan(config, group)
    supervisor = Supervisor(parts)
    url = f"http://{config['HOST']}:{config['PORT']}"
    supervisor.say("run", f"starting {', '.join(p.name for p in parts)}; companion on {url}")
    supervisor.say("run", "press Ctrl-C to stop")
    code = supervisor.run()
    supervisor.say("run", "stopped")
    return code
