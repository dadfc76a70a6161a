"""One experiment's objects in an S3-compatible bucket, through boto3.

Credentials, region and endpoint come from the standard AWS chain: the
environment (``AWS_ACCESS_KEY_ID``…, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``
for MinIO and the like), the config and credentials files, instance roles.
Writes of parts are create-only (``If-None-Match: *``): a name is never
overwritten, so a retried upload is harmless and two writers never replace each
other's part. Every request is counted (``requests``), for tests and benchmarks.
boto3 loads only here, never into a kernel.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlt_kernel.core.locations import Remote

#: Seconds to connect, and to wait for a response, before a request fails.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30


@dataclass(frozen=True)
class Listed:
    size: int
    etag: str
    modified: float  #: POSIX seconds


class ObjectStoreError(OSError):
    """The bucket could not be reached or refused a request (one line)."""


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Bucket:
    """The objects under one experiment's prefix."""

    def __init__(self, remote: Remote, *, attempts: int = 3) -> None:
        import boto3
        from botocore.config import Config

        self.remote = remote
        self.requests: collections.Counter[str] = collections.Counter()
        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"max_attempts": attempts, "mode": "standard"},
            s3={"addressing_style": "path"}
            if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            else None,
        )
        self._client = boto3.session.Session().client("s3", config=config)
        self._client.meta.events.register("before-send.s3.*", self._count)

    def _count(self, request: Any = None, **kwargs: Any) -> None:
        method = getattr(request, "method", "?")
        self.requests[str(method)] += 1

    def _call(self, what: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, what)(Bucket=self.remote.bucket, **kwargs)
        except ClientError as exc:
            raise ObjectStoreError(f"{self.remote.url}: {_reason(exc)}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"{self.remote.url}: {_reason(exc)}") from exc

    # -- reading --------------------------------------------------------------------------
    def list(self, under: str = "") -> dict[str, Listed]:
        """Every object under the experiment (or its sub-folder *under*), by path relative to it."""
        base = self.remote.key(under) if under else self.remote.prefix
        prefix = f"{base}/" if base else ""
        out: dict[str, Listed] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            cut = len(f"{self.remote.prefix}/") if self.remote.prefix else 0
            for obj in page.get("Contents", []):
                out[obj["Key"][cut:]] = Listed(
                    int(obj.get("Size", 0)), str(obj.get("ETag", "")), obj["LastModified"].timestamp()
                )
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    def download(self, relative: str, target: Path) -> None:
        """Fetch one object into *target*, appearing there whole or not at all."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            body = self._call("get_object", Key=self.remote.key(relative))["Body"]
            with open(tmp, "wb") as f:
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    f.write(chunk)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def read(self, relative: str, limit: int = 1 << 20) -> bytes:
        """A small object's bytes (at most *limit*: ``ValueError`` beyond)."""
        data = self._call("get_object", Key=self.remote.key(relative))["Body"].read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{self.remote.url}/{relative}: over {limit} bytes")
        return bytes(data)

    # -- writing --------------------------------------------------------------------------
    def put(self, relative: str, data: bytes | Path, *, create_only: bool = True) -> bool:
        """Upload *data* (bytes or a file); with *create_only*, False when the name is taken already."""
        body = data.read_bytes() if isinstance(data, Path) else data
        kwargs: dict[str, Any] = {"Key": self.remote.key(relative), "Body": body}
        if create_only:
            kwargs["IfNoneMatch"] = "*"
        try:
            self._call("put_object", **kwargs)
        except ObjectStoreError as exc:
            if create_only and "PreconditionFailed" in str(exc):
                return False
            raise
        return True

    def delete(self, relative: str) -> None:
        self._call("delete_object", Key=self.remote.key(relative))


__all__ = ["Bucket", "Listed", "ObjectStoreError"]
