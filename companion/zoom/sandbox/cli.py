"""`companion sandbox ...`: run the Zoom sandbox and drive simulated classes on it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click


def _config() -> dict[str, Any]:
    from companion import ROOT
    from companion import config as config_module

    instance = Path(os.environ.get("COMPANION_INSTANCE_PATH") or ROOT / "instance").resolve()
    try:
        settings = config_module.load(instance)
    except config_module.ConfigError as exc:
        click.echo(f"companion sandbox cannot start: {exc}", err=True)
        sys.exit(2)
    settings["INSTANCE_PATH"] = str(instance)
    return settings


@click.group("sandbox")
def sandbox_group() -> None:
    """The Zoom sandbox: a local stand-in for Zoom (it is NOT Zoom)."""


@sandbox_group.command("serve")
@click.option("--host", default=None, help="Default: the host of COMPANION_SANDBOX_URL.")
@click.option("--port", type=int, default=None, help="Default: the port of COMPANION_SANDBOX_URL.")
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file of the state. Default: zoom-sandbox.sqlite3 in the instance folder.",
)
@click.option(
    "--webhook-url",
    default=None,
    help="Where webhooks go. Default: COMPANION_BASE_URL + /zoom/webhook.",
)
@click.option("--no-webhooks", is_flag=True, help="Queue events but send none.")
@click.option("--threads", type=int, default=8)
def serve_command(
    host: str | None,
    port: int | None,
    store: Path | None,
    webhook_url: str | None,
    no_webhooks: bool,
    threads: int,
) -> None:
    """Serve the sandbox (Zoom API, OAuth, recording downloads) and send its webhooks."""
    import waitress

    from companion.zoom.webhooks import sandbox_webhook_secret

    from . import DeliveryWorker, create_sandbox_app

    config = _config()
    public_url = config["SANDBOX_URL"]
    parsed = urlparse(public_url)
    host = host or parsed.hostname or "127.0.0.1"
    port = port or parsed.port or (443 if parsed.scheme == "https" else 80)
    store = store or Path(config["INSTANCE_PATH"]) / "zoom-sandbox.sqlite3"
    url = None if no_webhooks else (webhook_url or config["BASE_URL"] + "/zoom/webhook")
    app = create_sandbox_app(
        str(store),
        webhook_url=url,
        webhook_secret=sandbox_webhook_secret(config),
        public_url=public_url,
    )
    worker = DeliveryWorker(app.extensions["zoom_sandbox"])
    worker.start()
    click.echo(
        f"companion Zoom sandbox (NOT Zoom) on http://{host}:{port}; "
        f"webhooks to {url or 'nowhere'}; state in {store}"
    )
    try:
        waitress.serve(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="zoom-sandbox",
            # Recording downloads stream 1 MiB pieces; waitress's default spills anything over
            # 1 MB of pending output to a temporary file, which halves a large download's speed.
            outbuf_overflow=64 * 1024 * 1024,
        )
    finally:
        worker.stop()


@sandbox_group.command("simulate-class")
@click.argument("meeting_id")
@click.option("--occurrence", "occurrence_id", default=None, help="Zoom occurrence id.")
@click.option(
    "--participants",
    type=int,
    default=None,
    help="How many join: approved registrants first, then guests. Default: every registrant.",
)
@click.option("--registrant", "registrants", multiple=True, help="A registrant id who joins.")
@click.option("--guest", "guests", multiple=True, help="A guest's display name (no registrant).")
@click.option("--teacher", default="Teacher", show_default=True)
@click.option("--start-at", default=None, help="UTC start, e.g. 2026-01-07T16:00:00Z.")
@click.option("--minutes", type=int, default=None, help="Length. Default: the scheduled one.")
@click.option("--no-end", is_flag=True, help="Leave the class live (end it with Zoom's API).")
@click.option("--record/--no-record", default=None, help="Default: the meeting's setting.")
@click.option("--recording-bytes", type=int, default=None, help="Synthetic MP4 of N bytes.")
@click.option("--pace", type=float, default=0.0, help="Seconds between webhook deliveries.")
@click.option("--url", "sandbox_url", default=None, help="Default: COMPANION_SANDBOX_URL.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate_command(
    meeting_id: str,
    occurrence_id: str | None,
    participants: int | None,
    registrants: tuple[str, ...],
    guests: tuple[str, ...],
    teacher: str,
    start_at: str | None,
    minutes: int | None,
    no_end: bool,
    record: bool | None,
    recording_bytes: int | None,
    pace: float,
    sandbox_url: str | None,
    as_json: bool,
) -> None:
    """Run a simulated class of MEETING_ID on the running sandbox; it sends the webhooks."""
    import requests

    base = (sandbox_url or _config()["SANDBOX_URL"]).rstrip("/")
    body: dict[str, Any] = {
        "meeting_id": meeting_id,
        "occurrence_id": occurrence_id,
        "teacher": teacher,
        "start_at": start_at,
        "minutes": minutes,
        "end": not no_end,
        "record": record,
        "recording_bytes": recording_bytes,
        "pace": pace,
    }
    if registrants or guests:
        body["participants"] = [*registrants, *({"name": g} for g in guests)]
    elif participants is not None:
        body["participant_count"] = participants
    try:
        response = requests.post(f"{base}/_sandbox/simulate", json=body, timeout=60)
    except requests.RequestException as exc:
        raise click.ClickException(f"the sandbox at {base} is not reachable: {exc}") from None
    try:
        result = response.json()
    except ValueError:
        raise click.ClickException(
            f"unexpected answer from {base}: {response.text[:200]}"
        ) from None
    if response.status_code >= 400:
        raise click.ClickException(f"{response.status_code}: {result.get('message', result)}")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"Class of meeting {result['meeting_id']} (instance {result['uuid']}) "
        f"{'is live' if result['live'] else 'ran'} from {result['start_time']}"
        + ("" if result["live"] else f" to {result['end_time']}")
    )
    for person in result["participants"]:
        who = f"registrant {person['registrant_id']}" if person["registrant_id"] else "guest"
        click.echo(f"  {person['name']} ({who})")
    for item in result["events"]:
        click.echo(f"  queued #{item['delivery_id']} {item['event']} at {item['at']}")
    for file in result["recording_files"]:
        click.echo(f"  recording {file['file_type']} {file['file_size']} bytes: {file['id']}")
