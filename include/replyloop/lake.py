"""The object store that holds the landing zone, the curated snapshots and the quarantine.

A lake is either a local folder or an S3 prefix (`s3://bucket/prefix`, boto3; the endpoint, region and
credentials come from the standard AWS environment variables or from an Airflow connection passed in by
the DAG). Keys are always relative, '/'-separated paths such as `raw/twcs/dt=2026-11-20/a.csv`.
Reads are streams, so memory does not grow with file size.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


class LakeError(RuntimeError):
    """The lake cannot be reached or a key cannot be read; the message names the location."""


@dataclass(frozen=True)
class LakeObject:
    key: str
    size: int
    etag: str


class Lake(Protocol):
    uri: str

    def list(self, prefix: str) -> list[LakeObject]: ...
    def open(self, key: str) -> BinaryIO: ...
    def open_random(self, key: str) -> BinaryIO: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def write_new(self, key: str, data: bytes) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def url(self, key: str) -> str: ...


class LocalLake:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root != path and self.root not in path.parents:
            raise LakeError(f"key {key!r} escapes the lake root {self.root}")
        return path

    def list(self, prefix: str) -> list[LakeObject]:
        base = self._path(prefix)
        if base.is_file():
            files = [base]
        elif base.is_dir():
            files = sorted(p for p in base.rglob("*") if p.is_file())
        else:
            return []
        out = []
        for p in files:
            st = p.stat()
            out.append(LakeObject(p.relative_to(self.root).as_posix(), st.st_size, f"{st.st_size}-{st.st_mtime_ns}"))
        return out

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except OSError as exc:
            raise LakeError(f"cannot read {self.url(key)}: {exc.strerror or exc}") from exc

    def open_random(self, key: str) -> BinaryIO:
        return self.open(key)  # a file is seekable

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")  # never a leftover of a crashed run
        try:
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: readers never see half a file
        finally:
            tmp.unlink(missing_ok=True)

    def write_new(self, key: str, data: bytes) -> bool:
        """Create `key` only if it does not exist; False when it already exists. Atomic, and readers never
        see it half-written: the data goes to a temporary file that is then hard-linked into place."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            tmp.write_bytes(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def url(self, key: str) -> str:
        return str(self.root / key)


class _RawStream(io.RawIOBase):
    """Adapts a `read(n)` stream (botocore's StreamingBody) so io.BufferedReader can split lines."""

    def __init__(self, body):
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.body.close()
        super().close()


class _RangeReader(io.RawIOBase):
    """A seekable view of an S3 object: each read is one ranged GET."""

    def __init__(self, lake: S3Lake, key: str, size: int):
        self.lake, self.key, self.size, self.pos = lake, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        if self.pos >= self.size or not len(buffer):
            return 0
        end = min(self.size, self.pos + len(buffer)) - 1
        try:
            body = self.lake.client.get_object(Bucket=self.lake.bucket, Key=self.lake._key(self.key),
                                               Range=f"bytes={self.pos}-{end}")["Body"]
            data = body.read()
        except Exception as exc:
            raise self.lake._wrap(exc, self.key) from exc
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


class S3Lake:
    def __init__(self, uri: str, *, client=None, endpoint_url: str | None = None):
        import boto3

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise LakeError(f"lake URI {uri!r} names no bucket (expected s3://bucket/prefix)")
        self.uri = uri.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        # A lake built from a URI can be re-opened in a worker process (credentials come from the
        # environment there too); one built around a given client cannot.
        self.portable = client is None
        self.client = client or boto3.client("s3", endpoint_url=self.endpoint_url)

    def __reduce__(self):
        if not self.portable:
            raise TypeError(f"{self.uri}: an S3 lake built around a client object cannot be sent to another process")
        return _reopen_s3, (self.uri, self.endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _wrap(self, exc: Exception, key: str) -> LakeError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        hint = {
            "NoSuchBucket": "the bucket does not exist",
            "AccessDenied": "access denied: check the credentials and the bucket policy",
            "InvalidAccessKeyId": "access denied: check the credentials (unknown access key id)",
            "SignatureDoesNotMatch": "access denied: check the credentials (the secret key does not match)",
            "NoSuchKey": "no such object",
            "403": "access denied: check the credentials and the bucket policy",
            "404": "no such object",
        }.get(str(code), str(exc))
        return LakeError(f"cannot access {self.url(key)}: {hint} ({code})")

    def list(self, prefix: str) -> list[LakeObject]:
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) + 1 :] if self.prefix else obj["Key"]
                    out.append(LakeObject(key, obj["Size"], obj["ETag"].strip('"')))
        except Exception as exc:  # botocore ClientError / EndpointConnectionError
            raise self._wrap(exc, prefix) from exc
        return sorted(out, key=lambda o: o.key)

    def open(self, key: str) -> BinaryIO:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return io.BufferedReader(_RawStream(body), buffer_size=1 << 20)
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def read_bytes(self, key: str) -> bytes:
        body = self.open(key)
        try:
            return body.read()
        finally:
            body.close()

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=io.BytesIO(data))
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def write_new(self, key: str, data: bytes) -> bool:
        """Create `key` only if it does not exist (a conditional PUT, If-None-Match: *); False when it does."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=io.BytesIO(data), IfNoneMatch="*")
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("PreconditionFailed", "412",
                                                                             "ConditionalRequestConflict"):
                return False
            raise self._wrap(exc, key) from exc
        return True

    def open_random(self, key: str) -> BinaryIO:
        """A seekable handle that fetches only the byte ranges read (Parquet footers and column chunks)."""
        try:
            size = self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except Exception as exc:
            raise self._wrap(exc, key) from exc
        return io.BufferedReader(_RangeReader(self, key, size), buffer_size=1 << 20)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._wrap(exc, key) from exc

    def delete(self, key: str) -> None:
        for obj in self.list(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(obj.key))

    def url(self, key: str) -> str:
        return f"{self.uri}/{key}"


def _reopen_s3(uri: str, endpoint_url: str | None) -> S3Lake:
    return S3Lake(uri, endpoint_url=endpoint_url)


def lake_for(settings) -> Lake:
    """The lake the settings name (`REPLYLOOP_LAKE_URI`, with `AWS_ENDPOINT_URL` for S3)."""
    return open_lake(settings.lake, endpoint_url=settings.aws_endpoint_url)


def open_lake(uri: str, **kwargs) -> Lake:
    """A lake for a local path or an `s3://` URI."""
    if uri.startswith("s3://"):
        return S3Lake(uri, **kwargs)
    kwargs.pop("endpoint_url", None)
    if "://" in uri and not uri.startswith("file://"):
        raise LakeError(f"unsupported lake URI {uri!r}: use a local folder or s3://bucket/prefix")
    return LocalLake(uri.removeprefix("file://"))
