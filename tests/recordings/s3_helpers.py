"""A real S3 API on loopback for the object-storage tests: moto's server, in this process.

The server keeps its buckets in this process's memory, so a test can stop it (the store goes
down mid-upload: connections are refused), start it again on the same port and find what the
store kept, as a real store would after an outage. ``reset`` empties it between tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import requests

from companion.recordings.s3storage import MIN_PART_SIZE, S3EncryptedStorage

from ..servers import free_port

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "eu-west-2"


class S3Server:
    """moto's S3 server on 127.0.0.1; ``admin`` is a client for setting up and looking."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self.admin = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client(
            "s3",
            endpoint_url=self.url,
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
            ),
        )

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Take the store away: the port then refuses connections."""
        server, self._server = self._server, None
        server.stop()
        # ThreadedMotoServer.stop() leaves the socket listening (connections would queue and
        # hang, a slow store rather than a stopped one).
        server._server.server_close()

    def reset(self) -> None:
        """Forget every bucket, object and upload; turn credential checks off again."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        self.require_credentials(False)

    def require_credentials(self, on: bool = True) -> None:
        """Make the server check every request's signature against the access keys it knows
        (off by default: moto then takes any key)."""
        body = "0" if on else "inf"
        requests.post(f"{self.url}/moto-api/reset-auth", data=body, timeout=10).raise_for_status()

    def new_access_key(self) -> tuple[str, str]:
        """An IAM user allowed everything in S3, and its access key (for credential checks)."""
        iam = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client("iam", endpoint_url=self.url)
        iam.create_user(UserName="companion")
        iam.put_user_policy(
            UserName="companion",
            PolicyName="recordings",
            PolicyDocument=(
                '{"Version": "2012-10-17", "Statement": '
                '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
            ),
        )
        key = iam.create_access_key(UserName="companion")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def storage(
        self, bucket: str, prefix: str = "recordings", **options: Any
    ) -> S3EncryptedStorage:
        settings: dict[str, Any] = {
            "endpoint_url": self.url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "addressing_style": "path",
            "timeout": 5,
            "max_attempts": 1,
            "part_size": MIN_PART_SIZE,
        }
        settings.update(options)
        return S3EncryptedStorage(f"s3://{bucket}/{prefix}", **settings)

    # --- what the store holds ----------------------------------------------------------------

    def object_names(self, bucket: str) -> list[str]:
        pages = self.admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads(self, bucket: str) -> list[str]:
        """Keys of the unfinished multipart uploads."""
        answer = self.admin.list_multipart_uploads(Bucket=bucket)
        return sorted(u["Key"] for u in answer.get("Uploads", []))

    def versions(self, bucket: str) -> list[tuple[str, str]]:
        """(key, "version" or "delete marker") of everything a versioned bucket keeps."""
        answer = self.admin.list_object_versions(Bucket=bucket)
        return sorted(
            [(v["Key"], "version") for v in answer.get("Versions", [])]
            + [(m["Key"], "delete marker") for m in answer.get("DeleteMarkers", [])]
        )


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: a store that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """A loopback address where nothing listens: a store that is down."""
    return f"http://127.0.0.1:{free_port()}"


def isolated_aws_environment() -> dict[str, str]:
    """Variables that keep boto3 from reading this machine's AWS files or asking the cloud's
    metadata service for credentials (tests always pass their own)."""
    return {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
