"""Servers for the tests that need a socket: a free loopback port, waiting for one to listen, and
a WSGI app served by werkzeug in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from werkzeug.serving import make_server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, process: Any = None, what: str = "server") -> None:
    """Wait until something accepts connections on 127.0.0.1:port (fail early if it died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def _placeholder_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


class WsgiServer:
    """A WSGI app served by werkzeug in a thread on a free loopback port."""

    def __init__(self, app: Any = None):
        # Bind first so the URL is known before the app is built (it goes into BASE_URL).
        self.server = make_server("127.0.0.1", 0, app or _placeholder_wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self, app: Any = None) -> str:
        if app is not None:
            self.server.app = app
        self.thread.start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
