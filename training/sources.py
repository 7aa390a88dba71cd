"""Where an image's bytes come from: a local path, or an object in S3 (``s3://bucket/key``).

One small module that ingest (``pipeline.ingest``), training and prediction
(``training.images.open_image``, so the torch DataLoader and Ray workers too) and the model
backend (``pipeline.task_images``) all read through, so an object accepted at ingest is read the
same way by everything after it.

The endpoint and credentials come from boto3's standard chain only (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/config`` and
``~/.aws/credentials``, instance roles), never from labelloop's config or command line: a worker
process (a DataLoader worker, a Ray actor on another machine) then finds them the way any AWS
tool there does, and no secret passes through labelloop's files or logs.

Errors are of two kinds. An object that cannot be read (missing, access denied) raises an
``OSError`` (``FileNotFoundError``, ``PermissionError``), as a local file would, so callers
quarantine it. A store that cannot be used at all (bucket missing, no credentials, endpoint
down) raises ``RemoteUnavailable`` with one line naming what to fix: that is no property of
one image and must stop the caller.

boto3 is imported on first use, never at import time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

S3_SCHEME = "s3://"
_FIX_ENDPOINT = ("set AWS_ENDPOINT_URL (or endpoint_url in ~/.aws/config) to a reachable S3 "
                 "endpoint, or unset it for AWS itself")
_FIX_CREDENTIALS = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with "
                    "~/.aws/credentials")


class RemoteUnavailable(RuntimeError):
    """The object store cannot be used at all; ``str(err)`` says what to fix."""


class RemoteObject(NamedTuple):
    """One object a listing found: its ``s3://`` path, size and what says it changed."""

    path: str
    size_bytes: int
    last_modified: datetime
    etag: str


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` names an object in S3 (``s3://bucket/key``) rather than a local file."""
    return isinstance(path, str) and path.startswith(S3_SCHEME)


def split_s3(path: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key). Raises ``ValueError`` without a bucket."""
    if not is_remote(path):
        raise ValueError(f"not an s3:// path: {path!r}")
    bucket, _, key = path[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"{path!r} names no bucket; write s3://BUCKET/PREFIX")
    return bucket, key


def read_bytes(path: str | Path) -> bytes:
    """All bytes of a local file or an S3 object. Raises ``OSError`` for one that cannot be
    read, ``RemoteUnavailable`` when S3 cannot be used at all."""
    if not is_remote(path):
        return Path(path).read_bytes()
    bucket, key = split_s3(path)
    with _translated(bucket, key):
        response = _client().get_object(Bucket=bucket, Key=key)
        return response["Body"].read()


def list_objects(prefix: str) -> Iterator[RemoteObject]:
    """Every object under the ``s3://bucket/prefix`` (as a folder: ``prefix/``), in key order.
    Keys ending in ``/`` (folder markers) are left out."""
    bucket, key_prefix = split_s3(prefix)
    key_prefix = key_prefix.strip("/")
    key_prefix = key_prefix + "/" if key_prefix else ""
    with _translated(bucket, None):
        pages = _client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=key_prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    yield RemoteObject(f"{S3_SCHEME}{bucket}/{obj['Key']}", int(obj["Size"]),
                                       obj["LastModified"], obj.get("ETag", "").strip('"'))


def presigned_url(path: str, *, expires_s: int) -> str:
    """An http(s) URL that GETs the object for ``expires_s`` seconds (S3 allows 7 days at most),
    signed with this machine's credentials; no request is made."""
    bucket, key = split_s3(path)
    with _translated(bucket, key):
        return _client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires_s))


def check_reachable(prefix: str) -> None:
    """Raise ``RemoteUnavailable`` unless the bucket of ``prefix`` can be listed (one request)."""
    bucket, _ = split_s3(prefix)
    with _translated(bucket, None):
        _client().list_objects_v2(Bucket=bucket, MaxKeys=1)


# One client per process: boto3 clients are thread-safe, but not to be shared across a fork
# (DataLoader workers fork), and making one costs about 50 ms.
_clients: dict[int, Any] = {}
_lock = threading.Lock()


def _client():
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        with _lock:
            client = _clients.get(pid)
            if client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError:
                    raise RemoteUnavailable("reading s3:// paths needs boto3: pip install "
                                            "boto3 (labelloop's dependencies include it)"
                                            ) from None

                # Few, quick retries: an endpoint that is down should say so in seconds.
                # SigV4: every AWS region takes it (some take nothing else), and presigned
                # URLs then last up to the 7 days S3 allows.
                config = Config(retries={"max_attempts": 2, "mode": "standard"},
                                connect_timeout=5, read_timeout=60, signature_version="s3v4")
                client = boto3.session.Session().client("s3", config=config)
                _clients.clear()
                _clients[pid] = client
    return client


class _translated:
    """Turns botocore's errors into ``OSError`` (this object) or ``RemoteUnavailable`` (the
    store)."""

    def __init__(self, bucket: str, key: str | None) -> None:
        self.bucket, self.key = bucket, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, _tb) -> bool:
        if err is None:
            return False
        from botocore import exceptions as bx

        where = f"s3://{self.bucket}/{self.key}" if self.key is not None else \
            f"bucket {self.bucket!r}"
        if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
            raise RemoteUnavailable(f"no AWS credentials found for {where}: "
                                    f"{_FIX_CREDENTIALS}") from None
        if isinstance(err, bx.EndpointConnectionError | bx.ConnectTimeoutError):
            raise RemoteUnavailable(f"the S3 endpoint cannot be reached ({err}): "
                                    f"{_FIX_ENDPOINT}") from None
        if isinstance(err, bx.ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise RemoteUnavailable(f"S3 bucket {self.bucket!r} does not exist at this "
                                        f"endpoint: create it, or fix the s3:// path "
                                        f"([project] images)") from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                raise RemoteUnavailable(f"S3 refused the credentials for {where} ({code}): "
                                        f"{_FIX_CREDENTIALS}") from None
            if self.key is None and (code in ("AccessDenied", "403") or status == 403):
                raise RemoteUnavailable(f"S3 denies listing {where} (AccessDenied): grant "
                                        f"s3:ListBucket to these credentials") from None
            if code in ("NoSuchKey", "404") or status == 404:
                raise FileNotFoundError(f"no such object: {where}") from None
            if code in ("AccessDenied", "403") or status == 403:
                raise PermissionError(f"access denied to {where}") from None
            raise OSError(f"S3 error for {where}: {code or status}") from None
        if isinstance(err, bx.BotoCoreError):
            raise OSError(f"reading {where} failed: {err}") from None
        return False
