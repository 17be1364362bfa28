"""Issue 14, item 2: `/readyz` on the object store: ready with the bucket, 503 naming the store
(never its address or credentials) when the bucket is missing or the store is down."""

from __future__ import annotations

from typing import Any

from flask import Flask

from companion.recordings import vault


def test_readiness_follows_the_bucket(app: Flask, s3_server: Any, s3_bucket: str) -> None:
    app.config["STORAGE_URL"] = f"s3://{s3_bucket}/recordings"
    app.extensions[vault.STORAGE_EXTENSION] = s3_server.storage(s3_bucket)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    app.extensions[vault.STORAGE_EXTENSION] = s3_server.storage("no-such-bucket-here")
    missing = client.get("/readyz")
    assert missing.status_code == 503
    assert missing.json["failed"] == ["storage"]
    error = missing.json["checks"]["storage"]["error"]
    assert error.startswith("the recordings object store is not usable")
    raw = missing.get_data(as_text=True)
    assert s3_server.url not in raw and "no-such-bucket-here" not in raw
