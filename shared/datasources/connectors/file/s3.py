"""The S3 object source: one object or every selected object under a prefix.

Objects are read in full with one GET (pinned to the listed ETag), or, for Parquet,
through ranged GETs so only the footer and the row groups a reader asks for leave S3.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from datasources.config import Settings
from datasources.connectors.base import ConnectorContext
from datasources.connectors.file.objects import (
    FileRef,
    Location,
    format_of,
    glob_regex,
    literal_prefix,
)
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.lake import is_landing_bucket
from datasources.models.connection import FileConfig, reveal

_RANGE_CHUNK_BYTES = 8 << 20  # Parquet range reads fetch at least this much per request
_MAX_FILES = 100_000


class S3Objects:
    """The objects of an `s3://` source, listed and read with the source's credentials."""

    def __init__(self, config: FileConfig, context: ConnectorContext, location: Location) -> None:
        self._config = config
        self._context = context
        self._settings: Settings = context.settings
        self._location = location
        self._pattern = glob_regex(config.pattern) if config.pattern else None
        self._s3: Any = None

    def files(self) -> list[FileRef]:
        location = self._location
        client = self._client()
        if not location.is_prefix:
            try:
                head = client.head_object(Bucket=location.bucket, Key=location.key)
            except ClientError as exc:
                if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    self._probe_bucket()
                    raise ConnectionFailed(
                        f"object '{location.key}' does not exist in bucket "
                        f"'{location.bucket}' (end the url with '/' to read a folder)",
                        stage="read",
                    ) from None
                raise s3_error(exc, location.bucket, location.key) from None
            except BotoCoreError as exc:
                raise _connect_error(exc, location.bucket) from None
            return [
                FileRef(
                    key=location.key,
                    size=int(head.get("ContentLength", 0)),
                    etag=head.get("ETag"),
                )
            ]
        list_prefix = location.key + literal_prefix(self._config.pattern or "")
        files: list[FileRef] = []
        try:
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=list_prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if not self._may_read(key):
                        continue
                    if self._selected(key[len(location.key) :]):
                        files.append(
                            FileRef(key=key, size=int(item.get("Size", 0)), etag=item.get("ETag"))
                        )
                        if len(files) > _MAX_FILES:
                            raise ValidationFailed(
                                f"more than {_MAX_FILES} objects match: narrow the url or "
                                "the pattern"
                            )
        except ClientError as exc:
            raise s3_error(exc, location.bucket, location.key) from None
        except BotoCoreError as exc:
            raise _connect_error(exc, location.bucket) from None
        files.sort(key=lambda f: f.key)
        return files

    def open(self, ref: FileRef) -> tuple[Callable[[int], bytes], Callable[[], None]]:
        kwargs: dict[str, Any] = {"Bucket": self._location.bucket, "Key": ref.key}
        if ref.etag:
            kwargs["IfMatch"] = ref.etag  # read the version that was listed, or fail
        try:
            body = self._client().get_object(**kwargs)["Body"]
        except ClientError as exc:
            raise s3_error(exc, self._location.bucket, ref.key) from None
        return body.read, body.close

    def open_random(self, ref: FileRef) -> pa.NativeFile:
        reader = _S3RangeReader(
            self._client(), self._location.bucket, ref.key, ref.size or 0, ref.etag
        )
        return pa.PythonFile(reader, mode="r")

    def close(self) -> None:
        """Release the S3 client's connection pool."""
        client, self._s3 = self._s3, None
        closer = getattr(client, "close", None)
        if callable(closer):
            closer()

    def _may_read(self, key: str) -> bool:
        """A listed key stays within the reader's allowance (only the landing bucket has one)."""
        if not is_landing_bucket(self._location.bucket, self._settings.bucket_name):
            return True
        lake = self._context.lake
        return lake is not None and lake.permits(key)

    def _selected(self, relative: str) -> bool:
        if not relative or relative.endswith("/"):
            return False  # the prefix itself or a folder marker
        if self._pattern is not None:
            return bool(self._pattern.match(relative))
        base = relative.rsplit("/", 1)[-1]
        if base.startswith(("_", ".")):
            return False  # _SUCCESS, .crc and other job markers next to the data
        fmt = format_of(relative)
        if self._config.format is None:
            return fmt is not None
        return True

    def _probe_bucket(self) -> None:
        """Tell a missing bucket from a missing key (HEAD answers a bare 404 for both)."""
        try:
            self._client().list_objects_v2(Bucket=self._location.bucket, MaxKeys=1)
        except ClientError as exc:
            raise s3_error(exc, self._location.bucket, self._location.key) from None

    def _client(self) -> Any:
        if self._s3 is not None:
            return self._s3
        kwargs: dict[str, Any] = {}
        creds = self._config.credentials
        if creds is not None:
            kwargs["aws_access_key_id"] = creds.aws_access_key_id
            kwargs["aws_secret_access_key"] = reveal(creds.aws_secret_access_key)
            if creds.aws_session_token is not None:
                kwargs["aws_session_token"] = reveal(creds.aws_session_token)
            if creds.region:
                kwargs["region_name"] = creds.region
        factory = self._context.s3_client_factory
        if factory is not None:
            self._s3 = factory(**kwargs)
        else:
            import boto3  # the Lambda runtime ships it; imported where a client is needed

            kwargs.setdefault("region_name", self._settings.aws_region)
            self._s3 = boto3.client("s3", endpoint_url=self._settings.aws_endpoint_url, **kwargs)
        return self._s3


class _S3RangeReader(io.RawIOBase):
    """A seekable file over one S3 object, fetched with ranged GETs (for Parquet footers and
    row groups) so only the parts a reader asks for ever leave S3."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str | None) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._etag = etag
        self._pos = 0
        self._cache = b""
        self._cache_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._size + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        offset = self._pos - self._cache_start
        if not (offset >= 0 and offset + want <= len(self._cache)):
            length = max(want, _RANGE_CHUNK_BYTES)
            self._cache = self._fetch(self._pos, min(self._size, self._pos + length) - 1)
            self._cache_start = self._pos
            offset = 0
        buffer[:want] = self._cache[offset : offset + want]
        self._pos += want
        return want

    def _fetch(self, first: int, last: int) -> bytes:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "Range": f"bytes={first}-{last}",
        }
        if self._etag:
            kwargs["IfMatch"] = self._etag
        body = self._client.get_object(**kwargs)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_error(exc: ClientError, bucket: str, key: str) -> ConnectionFailed | SourceReadError:
    """A ClientError as a domain error that says what to fix (never the raw response)."""
    code = error_code(exc)
    if code == "NoSuchBucket":
        return ConnectionFailed(f"bucket '{bucket}' does not exist", stage="read")
    if code in ("NoSuchKey", "404", "NotFound"):
        return ConnectionFailed(f"object '{key}' does not exist in bucket '{bucket}'", stage="read")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "AccountProblem"):
        return ConnectionFailed(
            f"access to s3://{bucket}/{key} was denied: grant s3:GetObject and s3:ListBucket "
            "to the credentials of this source",
            stage="permission",
        )
    if code in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
    ):
        return ConnectionFailed(
            f"S3 rejected the credentials of this source ({code})", stage="auth"
        )
    if code in ("PreconditionFailed", "412"):
        return SourceReadError(
            f"file '{key}' changed while this sync was reading it; run the sync again"
        )
    if code == "PermanentRedirect":
        return ConnectionFailed(
            f"bucket '{bucket}' is in another region: set credentials.region", stage="read"
        )
    return ConnectionFailed(
        f"S3 answered {code or 'an error'} for s3://{bucket}/{key}", stage="read"
    )


def _connect_error(exc: BotoCoreError, bucket: str) -> ConnectionFailed:
    return ConnectionFailed(
        f"could not reach S3 for bucket '{bucket}' ({type(exc).__name__})", stage="tcp"
    )
