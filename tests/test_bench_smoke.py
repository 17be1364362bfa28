"""The load bench still runs: a quick webhook-only run exits 0 and prints its figure lines.

Timings are never asserted (the bench prints them); this only keeps ``bench/load_bench.py`` from
rotting as the app changes. It serves companion through ``serving.serve`` in a process of its
own with the Zoom sandbox in another, on the suite's database kind (SQLite, or a database of its
own on the suite's PostgreSQL server).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from companion import ROOT

pytestmark = pytest.mark.slow

FIGURE = re.compile(
    r"^\[(sqlite|postgresql)\] webhooks, +(\d+) senders?, (new connections|keep-alive) +"
    r"n=(\d+) +p50 +[\d.]+ ms +p99 +[\d.]+ ms +max .*over 3 s: (\d+) +errors: .*"
    r"\[p99 < 1 s [✓✗], none over 3 s [✓✗]\]$",
    re.MULTILINE,
)


def test_load_bench_quick_webhooks_runs_and_prints_its_figures() -> None:
    suite_url = os.environ.get("COMPANION_TEST_DATABASE_URL", "")
    database = suite_url if suite_url.startswith("postgres") else "sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPANION_")}
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            str(ROOT / "bench" / "load_bench.py"),
            "--quick",
            "--scenarios",
            "webhooks",
            "--database-url",
            database,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = FIGURE.findall(done.stdout)
    label = "postgresql" if database != "sqlite" else "sqlite"
    assert {(f[0], int(f[1]), f[2]) for f in figures} == {
        (label, senders, mode)
        for senders in (1, 50, 200)
        for mode in ("new connections", "keep-alive")
    }, done.stdout
    # Every window answered something: a signature the app refused would be a broken bench.
    assert all(int(f[3]) > 0 for f in figures), done.stdout
    assert re.search(r"^targets met: \d+ of 6", done.stdout, re.MULTILINE), done.stdout
