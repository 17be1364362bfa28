"""Encrypted recording blobs in an S3-compatible object store (AWS S3, MinIO, Ceph, ...).

The same contract as the local folder (:class:`~.storage.RecordingStorage`), over the S3 API with
boto3; the store only ever receives ciphertext, because the caller hands the writer to
:class:`~.crypto.EncryptingWriter`.

- **Writing** streams: the blob goes up as a multipart upload in parts of ``part_size`` bytes, so
  one writer holds one part in memory and nothing on disk. S3 makes an object visible only when
  ``CompleteMultipartUpload`` succeeds, which happens when the writer's block ends cleanly; an
  exception aborts the upload. A blob smaller than one part is sent with one ``PutObject``, which is
  just as atomic.
- **An upload cut off** (the store went away, the process was killed) may leave an unfinished
  multipart upload: invisible to readers, but its parts are kept, and billed, until aborted.
  :meth:`S3EncryptedStorage.cleanup_partials` aborts those under the prefix (the worker calls it at
  start); a bucket lifecycle rule that aborts incomplete uploads after a day or two is the backstop
  (README, "Object storage").
- **Reading** is by HTTP range requests: the reader is seekable and fetches windows that grow while
  reads are sequential (a whole-file check or download) and stay small after a seek (a browser
  asking for one range of a video).
- **Deleting** removes the object and, on a versioned bucket, every version and delete marker of
  the key. The guarantee does not depend on it: retention first destroys the file key in the
  database (crypto-shredding), after which no copy of the ciphertext, in an old version, a replica
  or a backup of the bucket, can be decrypted (FORMAT.md, "Where blobs are kept").

Every failure of the store (down, slow, refusing the credentials, no such bucket) becomes a
:class:`~.storage.StorageError` with a message that says what to check.

The module runs past 600 lines and is kept whole: the multipart writer and the ranged reader are
one backend, with one error translation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions

from .storage import _KEY, BlobFile, BlobMissing, StorageError, check_key

if TYPE_CHECKING:
    # Only the types of boto3's S3 client (types-boto3-s3, a test tool): nothing at run time.
    from types_boto3_s3.type_defs import CompletedPartTypeDef, HeadObjectOutputTypeDef

log = logging.getLogger(__name__)

MIB = 1 << 20
# S3 refuses parts under 5 MiB (except the last) and more than 10,000 parts: 8 MiB parts allow
# recordings of up to 78 GiB while a writer holds 8 MiB.
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
# Range reads start small (a seek in a video wants one segment) and double while the reads run on
# from where the last window ended, up to the largest window a reader holds.
MIN_READ_AHEAD = 256 * 1024
MAX_READ_AHEAD = 8 * MIB
# Seconds the readiness check waits for the store to connect, and then to answer.
CHECK_TIMEOUT = 5

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# botocore's names for path-style (bucket in the path) and virtual-hosted (in the host) URLs.
AddressingStyle = Literal["auto", "virtual", "path"]


class S3EncryptedStorage:
    """Blobs as objects ``<prefix>/<key>`` in one bucket, written by multipart upload."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: AddressingStyle = "auto",
        timeout: float = 30,
        max_attempts: int = 3,
        part_size: int = DEFAULT_PART_SIZE,
    ):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes")
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.url = f"s3://{self.bucket}/{prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or None
        self.timeout = timeout
        self.part_size = part_size
        session = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region or None,
        )
        config = botocore.config.Config(
            signature_version="s3v4",
            connect_timeout=timeout,
            read_timeout=timeout,
            # "standard" retries throttling, 5xx answers and dropped connections with backoff;
            # a part's body is bytes, so a retried part is sent again whole.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            s3={"addressing_style": addressing_style},
            # Checksums only where the API demands them: several S3-compatible stores refuse the
            # newer default ones, and every blob is authenticated end to end anyway (each segment's
            # tag is checked when the ingest reads the stored copy back).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
            user_agent_extra="companion",
        )
        self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        # The readiness check answers within seconds, store down or not: one try, short waits.
        quick = botocore.config.Config(
            connect_timeout=min(timeout, CHECK_TIMEOUT),
            read_timeout=min(timeout, CHECK_TIMEOUT),
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        self._check_client = session.client(
            "s3", endpoint_url=self.endpoint_url, config=config.merge(quick)
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **options: Any) -> S3EncryptedStorage:
        """The store the ``COMPANION_STORAGE_URL`` and ``COMPANION_S3_*`` settings describe."""
        return cls(
            config["STORAGE_URL"],
            endpoint_url=config.get("S3_ENDPOINT_URL") or None,
            region=config.get("S3_REGION") or None,
            access_key_id=config.get("S3_ACCESS_KEY_ID") or None,
            secret_access_key=config.get("S3_SECRET_ACCESS_KEY") or None,
            addressing_style=config.get("S3_ADDRESSING_STYLE") or "auto",
            timeout=config.get("S3_TIMEOUT_SECONDS") or 30,
            **options,
        )

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3EncryptedStorage({self.url!r}{where})"

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _key_of(self, name: str) -> str | None:
        """The blob key of an object name under the prefix, None for anything else."""
        if not name.startswith(self.prefix):
            return None
        key = name[len(self.prefix) :]
        return key if _KEY.fullmatch(key) and not key.endswith(".partial") else None

    # --- the Protocol ----------------------------------------------------------------------

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[BlobFile]:
        upload = _Upload(self, key, self._name(key))
        try:
            yield upload
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    def open_reader(self, key: str) -> BlobFile:
        head = self._head(key, "open")
        if head is None:
            raise BlobMissing(f"stored recording file {key} is missing", key=key)
        return _RangeReader(self, key, self._name(key), int(head["ContentLength"]), head["ETag"])

    def size(self, key: str) -> int:
        head = self._head(key, "inspect")
        if head is None:
            raise BlobMissing(f"stored recording file {key} is missing", key=key)
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self._head(key, "inspect") is not None

    def delete(self, key: str) -> bool:
        """Delete the object and every older version of it; True if it was there to read."""
        name = self._name(key)
        existed = self.exists(key)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=name)
        # On a versioned (or once versioned) bucket the call above only hid the data behind a
        # delete marker: remove each version by id. The file key is already destroyed, so this
        # is about not keeping ciphertext for nothing; it is not what makes the deletion final.
        for version_id in self._versions(key, name):
            with self._errors("delete an older version of", key):
                self.client.delete_object(Bucket=self.bucket, Key=name, VersionId=version_id)
        return existed

    def keys(self) -> Iterator[str]:
        found = []
        with self._errors("list", None):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = self._key_of(item["Key"])
                    if key is not None:
                        found.append(key)
        yield from sorted(found)

    def cleanup_partials(self, older_than: float = 0.0) -> int:
        """Abort unfinished multipart uploads under the prefix; return how many.

        Like the local folder's, call it when no writer runs (the worker does at start), or pass
        ``older_than`` seconds to spare uploads still in progress.
        """
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
        aborted = 0
        with self._errors("clean up unfinished uploads in", self.url):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            stale = [
                (upload["Key"], upload["UploadId"])
                for page in pages
                for upload in page.get("Uploads", [])
                if self._key_of(upload["Key"]) is not None
                and (not older_than or upload["Initiated"] <= cutoff)
            ]
        for name, upload_id in stale:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "NoSuchUpload":  # finished or aborted meanwhile
                    raise self._error("abort the unfinished upload of", name, exc) from exc
                continue
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error("abort the unfinished upload of", name, exc) from exc
            aborted += 1
        if aborted:
            log.info("aborted %d unfinished upload(s) in %s", aborted, self.url)
        return aborted

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket is there and these credentials may list
        it: one small request, tried once, that gives up after :data:`CHECK_TIMEOUT` seconds."""
        try:
            self._check_client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(
                "reach", self.url, exc, timeout=min(self.timeout, CHECK_TIMEOUT)
            ) from exc

    # --- helpers ---------------------------------------------------------------------------

    def _head(self, key: str, action: str) -> HeadObjectOutputTypeDef | None:
        name = self._name(key)
        try:
            return self.client.head_object(Bucket=self.bucket, Key=name)
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if not code.isdigit():
                raise self._error(action, key, exc) from exc
            # An answer to HEAD has no body, so its error is a bare status: a missing bucket
            # looks like a missing blob, refused credentials like a refused object. A listing
            # names its error and tells them apart (one request, on these rare paths only).
            with self._errors(action, key):
                self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            if code in _MISSING_CODES:
                return None
            raise self._error(action, key, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(action, key, exc) from exc

    def _versions(self, key: str, name: str) -> list[str]:
        """Ids of every version and delete marker of exactly ``name`` (empty if unversioned)."""
        ids = []
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=name
            )
            for page in pages:
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if item["Key"] == name and item.get("VersionId") not in (None, "null"):
                        ids.append(item["VersionId"])
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("NotImplemented", "501"):
                return []  # a store without versions keeps none
            raise self._error("list the versions of", key, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("list the versions of", key, exc) from exc
        return ids

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        try:
            yield
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(action, key, exc) from exc

    def _error(
        self, action: str, key: str | None, exc: Exception, *, timeout: float | None = None
    ) -> StorageError:
        """A message that names what failed and what to check; never a credential."""
        what = f"could not {action}" + (f" {key}" if key else "")
        where = self.endpoint_url or "AWS S3"
        E = botocore.exceptions
        if isinstance(exc, E.ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StorageError(
                    f"{what}: the bucket {self.bucket!r} does not exist at {where} "
                    "(COMPANION_STORAGE_URL); create it or correct the name",
                    key=key,
                    code="storage_bucket_missing",
                )
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"):
                return StorageError(
                    f"{what}: the object store at {where} refused the credentials ({code}); "
                    "check COMPANION_S3_ACCESS_KEY_ID and COMPANION_S3_SECRET_ACCESS_KEY",
                    key=key,
                    code="storage_credentials",
                )
            if code in ("AccessDenied", "AllAccessDisabled", "403"):
                return StorageError(
                    f"{what}: the object store at {where} denied access to bucket "
                    f"{self.bucket!r} ({code}); check the credentials and the bucket's policy",
                    key=key,
                    code="storage_credentials",
                )
            if code == "NoSuchUpload":
                return StorageError(
                    f"{what}: the upload was cut off (the store no longer knows it); "
                    "nothing was stored",
                    key=key,
                )
            message = exc.response.get("Error", {}).get("Message") or ""
            return StorageError(
                f"{what}: the object store at {where} answered {code or status}"
                + (f" ({message})" if message else ""),
                key=key,
            )
        if isinstance(exc, E.ConnectTimeoutError | E.ReadTimeoutError):
            return StorageError(
                f"{what}: the object store at {where} did not answer within "
                f"{timeout or self.timeout:g} s",
                key=key,
                code="storage_unavailable",
            )
        if isinstance(exc, E.ConnectionError | E.HTTPClientError):
            return StorageError(
                f"{what}: the object store at {where} cannot be reached or dropped the "
                f"connection ({type(exc).__name__})",
                key=key,
                code="storage_unavailable",
            )
        if isinstance(exc, E.NoCredentialsError | E.PartialCredentialsError):
            return StorageError(
                f"{what}: there are no credentials for the object store; set "
                "COMPANION_S3_ACCESS_KEY_ID and COMPANION_S3_SECRET_ACCESS_KEY",
                key=key,
                code="storage_credentials",
            )
        return StorageError(f"{what}: {exc}", key=key)


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


class _Upload:
    """The file :meth:`S3EncryptedStorage.open_writer` yields: a multipart upload in the making.

    Parts are sent as they fill, from the thread that writes (the encrypting writer's helper
    thread), so encryption and upload overlap while memory stays at one part.
    """

    def __init__(self, store: S3EncryptedStorage, key: str, name: str):
        self._store = store
        self._key = key
        self._name = name
        self._buffer = bytearray(store.part_size)
        self._filled = 0
        self._position = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._done = False

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._done:
            raise ValueError(f"write to blob {self._key} after it was closed")
        view = memoryview(data).cast("B")
        total = len(view)
        size = len(self._buffer)
        while view:
            take = min(size - self._filled, len(view))
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == size:
                self._send_part()
        self._position += total
        return total

    def flush(self) -> None:
        """Nothing to do: a part goes up only once full (S3 refuses small parts but the last)."""

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        here = {os.SEEK_SET: offset, os.SEEK_CUR: self._position + offset}.get(whence)
        if here != self._position:
            raise io.UnsupportedOperation("an upload is written from start to end")
        return self._position

    def read(self, size: int = -1, /) -> bytes:
        raise io.UnsupportedOperation("an upload cannot be read back")

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """The storage finishes the upload when the writer's block ends; see the local file."""

    @property
    def closed(self) -> bool:
        return self._done

    def _send_part(self) -> None:
        store = self._store
        if len(self._parts) >= MAX_PARTS:
            raise StorageError(
                f"could not store {self._key}: it is larger than {MAX_PARTS} parts of "
                f"{store.part_size >> 20} MiB",
                key=self._key,
            )
        with store._errors("store", self._key):
            if self._upload_id is None:
                started = store.client.create_multipart_upload(
                    Bucket=store.bucket, Key=self._name, ContentType="application/octet-stream"
                )
                self._upload_id = started["UploadId"]
            number = len(self._parts) + 1
            sent = store.client.upload_part(
                Bucket=store.bucket,
                Key=self._name,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(memoryview(self._buffer)[: self._filled]),
            )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        self._filled = 0

    def complete(self) -> None:
        """Make the blob visible: the last part and CompleteMultipartUpload (or one PutObject)."""
        if self._done:
            return
        store = self._store
        if self._upload_id is None:
            with store._errors("store", self._key):
                store.client.put_object(
                    Bucket=store.bucket,
                    Key=self._name,
                    Body=bytes(memoryview(self._buffer)[: self._filled]),
                    ContentType="application/octet-stream",
                )
        else:
            if self._filled:
                self._send_part()
            with store._errors("store", self._key):
                # A lost answer here may leave the object complete although this raises: it is
                # then ciphertext whose file key was never kept (the key is wrapped and saved
                # only after this returns), unreadable by anyone.
                store.client.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=self._name,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        self._release()

    def abort(self) -> None:
        """Drop what was sent; if the store cannot be told now, ``cleanup_partials`` will."""
        store = self._store
        upload_id, self._upload_id = self._upload_id, None
        self._release()
        if upload_id is None:
            return
        try:
            store.client.abort_multipart_upload(
                Bucket=store.bucket, Key=self._name, UploadId=upload_id
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            log.warning(
                "could not abort the upload of %s (%s); the worker's next start aborts it",
                self._key,
                store._error("abort the upload of", self._key, exc).message,
            )

    def _release(self) -> None:
        self._done = True
        self._buffer = bytearray()
        self._filled = 0


class _RangeReader:
    """A seekable, read-only file over one object, read with HTTP range requests.

    Every request names the object's ETag (``If-Match``), so an object replaced while it is read
    is an error rather than a mix of two blobs.
    """

    def __init__(self, store: S3EncryptedStorage, key: str, name: str, size: int, etag: str):
        self._store = store
        self._key = key
        self._name = name
        self._size = size
        self._etag = etag
        self._position = 0
        self._window = b""
        self._window_start = 0
        self._ahead = MIN_READ_AHEAD
        self._closed = False

    def read(self, size: int = -1, /) -> bytes:
        if self._closed:
            raise ValueError(f"read from blob {self._key} after it was closed")
        left = max(self._size - self._position, 0)
        wanted = left if size is None or size < 0 else min(size, left)
        pieces = []
        while wanted:
            offset = self._position - self._window_start
            if not 0 <= offset < len(self._window):
                self._fetch(wanted)
                offset = 0
            piece = self._window[offset : offset + wanted]
            pieces.append(piece)
            self._position += len(piece)
            wanted -= len(piece)
        return b"".join(pieces)

    def _fetch(self, wanted: int) -> None:
        start = self._position
        if start == self._window_start + len(self._window) and self._window:
            self._ahead = min(max(self._ahead, len(self._window)) * 2, MAX_READ_AHEAD)
        else:
            self._ahead = MIN_READ_AHEAD
        end = min(start + max(wanted, self._ahead), self._size) - 1
        store = self._store
        self._window = b""
        try:
            answer = store.client.get_object(
                Bucket=store.bucket,
                Key=self._name,
                Range=f"bytes={start}-{end}",
                IfMatch=self._etag,
            )
            with contextlib.closing(answer["Body"]) as body:
                data = body.read()
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code in _MISSING_CODES:
                raise BlobMissing(
                    f"stored recording file {self._key} was deleted while it was read",
                    key=self._key,
                ) from exc
            if code in ("PreconditionFailed", "412"):
                raise StorageError(
                    f"stored recording file {self._key} was replaced while it was read",
                    key=self._key,
                ) from exc
            raise store._error("read", self._key, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise store._error("read", self._key, exc) from exc
        if len(data) != end - start + 1:
            raise StorageError(
                f"could not read {self._key}: the object store sent {len(data)} of the "
                f"{end - start + 1} bytes asked for",
                key=self._key,
            )
        self._window, self._window_start = data, start

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position in blob {self._key}")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        raise io.UnsupportedOperation("a stored blob is never changed in place")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._closed = True
        self._window = b""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> _RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_PART_SIZE", "S3EncryptedStorage"]
