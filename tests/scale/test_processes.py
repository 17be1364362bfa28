"""Issue 14, item 2: `companion serve --processes N` runs several web processes (gunicorn), with
`/healthz` for liveness and `/readyz` for readiness, served for real in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from companion import ROOT

from ..conftest import own_database_url
from ..live_db import companion_env
from ..metrics_helpers import TOKEN, Scrape
from ..servers import free_port, wait_for_port

pytestmark = pytest.mark.slow


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def serve(folder: Path, database_url: str, *processes_args: str) -> Served:
    port = free_port()
    env = companion_env(database_url, folder, COMPANION_METRICS_TOKEN=TOKEN)
    log = folder / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "companion", "serve", "--port", str(port), *processes_args],
            env=env,
            cwd=str(ROOT),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for_port(port, timeout=90, process=process, what="companion serve")
    return Served(f"http://127.0.0.1:{port}", process, log)


def stop(served: Served) -> None:
    os.killpg(served.process.pid, signal.SIGTERM)
    try:
        served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(served.process.pid, signal.SIGKILL)
        served.process.wait()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("processes")
    served = serve(folder, own_database_url(folder, "processes", migrated=True), "--processes", "2")
    try:
        yield served
    finally:
        stop(served)


def test_liveness_and_readiness_answer_from_several_processes(two_processes: Served) -> None:
    live = requests.get(two_processes.url + "/healthz", timeout=10)
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert live.headers["Server"] == "gunicorn"

    def ready(_: int) -> int:
        # A connection of its own each time, so that any process may accept it.
        with requests.Session() as http:
            answer = http.get(two_processes.url + "/readyz", timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ready" and body["failed"] == []
        assert body["checks"] == {
            "database": {"ok": True},
            "storage": {"ok": True},
            "keys": {"ok": True},
        }
        return int(body["process"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        pids = set(pool.map(ready, range(200)))
    assert len(pids) == 2, f"answered by {pids}"
    assert two_processes.process.pid not in pids  # the master only supervises


def test_metrics_add_up_the_counts_of_every_process(two_processes: Served) -> None:
    def scrape() -> Scrape:
        answer = requests.get(
            two_processes.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert answer.status_code == 200
        return Scrape(answer.text)

    def webhook_answers(scraped: Scrape) -> float:
        return sum(
            value
            for (name, _labels), value in scraped.samples.items()
            if name == "companion_webhook_seconds_count"
        )

    before = webhook_answers(scrape())

    def deliver(_: int) -> int:
        # Unsigned: refused at once, and timed like any delivery.
        with requests.Session() as http:
            answer = http.post(two_processes.url + "/zoom/webhook", json={}, timeout=30)
        pid = requests.get(two_processes.url + "/readyz", timeout=30).json()["process"]
        assert answer.status_code in (400, 401)
        return int(pid)

    with ThreadPoolExecutor(max_workers=16) as pool:
        pids = set(pool.map(deliver, range(100)))
    assert len(pids) == 2
    # Whichever process answers the scrape counts all 100, from both processes.
    for _ in range(4):
        assert webhook_answers(scrape()) == before + 100


def test_a_killed_web_process_is_replaced(two_processes: Served) -> None:
    from ..polling import poll

    pid = requests.get(two_processes.url + "/readyz", timeout=10).json()["process"]
    os.kill(pid, signal.SIGKILL)

    def other_processes() -> bool:
        seen = {
            requests.get(two_processes.url + "/readyz", timeout=10).json()["process"]
            for _ in range(20)
        }
        return pid not in seen

    poll(other_processes, "the master to replace the killed process", timeout=60)
    assert two_processes.process.poll() is None


def test_readiness_names_the_unreachable_database(tmp_path: Path) -> None:
    # A PostgreSQL address nothing listens on: the processes start, and say they are not ready.
    unreachable = f"postgresql+psycopg://companion:companion@127.0.0.1:{free_port()}/companion"
    served = serve(tmp_path, unreachable, "--processes", "2")
    try:
        answer = requests.get(served.url + "/readyz", timeout=60)
        live = requests.get(served.url + "/healthz", timeout=10)
    finally:
        stop(served)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not ready"
    assert body["failed"] == ["database"]
    assert body["checks"]["database"] == {"ok": False, "error": "the database cannot be reached"}
    assert "127.0.0.1" not in answer.text and "companion:companion" not in answer.text
    # Liveness asks nothing of the database: the process is alive, and is not restarted for it.
    assert live.status_code == 200
