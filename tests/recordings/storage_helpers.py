"""Looking inside either storage backend from a test, with the backend's own tools.

What a store "holds" is everything it keeps, not only what ``keys()`` admits to: the files of the
local folder (partial ones too), or the objects under the bucket's prefix and its unfinished
multipart uploads.
"""

from __future__ import annotations

import os
from typing import Any

from companion.recordings.s3storage import S3EncryptedStorage
from companion.recordings.storage import LocalEncryptedStorage, RecordingStorage

from .s3_helpers import ACCESS_KEY, SECRET_KEY

UNFINISHED = " (unfinished upload)"


def leftovers(store: RecordingStorage) -> list[str]:
    """Names of everything the store holds, relative to its folder or prefix."""
    if isinstance(store, LocalEncryptedStorage):
        return sorted(os.listdir(store.root))
    assert isinstance(store, S3EncryptedStorage)
    client, bucket, prefix = store.client, store.bucket, store.prefix
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    names = [item["Key"] for page in pages for item in page.get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    names += [u["Key"] + UNFINISHED for u in uploads]
    return sorted(name[len(prefix) :] for name in names)


def raw_bytes(store: RecordingStorage, key: str) -> bytes:
    """The stored bytes of a blob, read past the storage's interface."""
    if isinstance(store, LocalEncryptedStorage):
        return (store.root / key).read_bytes()
    assert isinstance(store, S3EncryptedStorage)
    return store.client.get_object(Bucket=store.bucket, Key=store.prefix + key)["Body"].read()


def add_clutter(store: RecordingStorage) -> None:
    """Things in the store that are not blobs: partial writes, other folders' contents."""
    if isinstance(store, LocalEncryptedStorage):
        (store.root / ".x.y.partial").write_bytes(b"")
        (store.root / "sub").mkdir()
        return
    assert isinstance(store, S3EncryptedStorage)
    put = store.client.put_object
    put(Bucket=store.bucket, Key="elsewhere/a-key", Body=b"not under the prefix")
    put(Bucket=store.bucket, Key=store.prefix + "sub/deeper", Body=b"a folder below")
    put(Bucket=store.bucket, Key=store.prefix + "not a key", Body=b"a name no key has")
    store.client.create_multipart_upload(Bucket=store.bucket, Key=store.prefix + "unfinished")


def source_of(store: RecordingStorage) -> str:
    """Python that builds the same store in another process (for the killed-writer tests;
    an S3 store made by :meth:`S3Server.storage`)."""
    if isinstance(store, LocalEncryptedStorage):
        return (
            "from companion.recordings.storage import LocalEncryptedStorage\n"
            f"store = LocalEncryptedStorage({str(store.root)!r})\n"
        )
    assert isinstance(store, S3EncryptedStorage)
    options: dict[str, Any] = {
        "endpoint_url": store.endpoint_url,
        "region": store.client.meta.region_name,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "addressing_style": "path",
        "part_size": store.part_size,
        "max_attempts": 1,
    }
    return (
        "from companion.recordings.s3storage import S3EncryptedStorage\n"
        f"store = S3EncryptedStorage({store.url!r}, **{options!r})\n"
    )


def part_size(store: RecordingStorage) -> int:
    """Bytes after which a write is under way in the store (a part sent, or a partial file)."""
    return store.part_size if isinstance(store, S3EncryptedStorage) else 1
