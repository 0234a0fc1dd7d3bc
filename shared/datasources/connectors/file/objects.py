"""What a file source reads: where it points, the objects it selects, and their names.

An object source (S3 in `s3.py`, one URL in `https.py`) lists `FileRef`s and opens them
as byte streams; the formats never know which one they read from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from datasources.connectors.base import ConnectorContext
from datasources.errors import ValidationFailed
from datasources.lake import confine, s3_key

EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
GZIP_EXTENSIONS = (".gz", ".gzip")


@dataclass(frozen=True)
class FileRef:
    """One object to read: its key (or URL path), size and version tag when known."""

    key: str
    size: int | None
    etag: str | None


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3", "https" or "http"
    bucket: str  # the bucket, or the host for a URL
    key: str  # object key, prefix, or URL path
    is_prefix: bool


class ObjectSource(Protocol):
    """Where the objects of a file source live: S3, or one https URL."""

    def files(self) -> list[FileRef]:
        """The selected objects in sorted key order (may be empty)."""
        ...

    def open(self, ref: FileRef) -> tuple[Callable[[int], bytes], Callable[[], None]]:
        """`read(n)` and `close()` of the object's raw (still compressed) bytes."""
        ...

    def open_random(self, ref: FileRef) -> pa.NativeFile:
        """A seekable view of the object (for Parquet footers and row groups)."""
        ...

    def close(self) -> None: ...


def confine_to_tenant(location: Location, context: ConnectorContext) -> None:
    """Keep a source inside what its reader may read of the service's landing bucket.

    The service's role can read the landing bucket, which holds every tenant's uploads
    and synced data; the services layer resolved which prefixes this reader may see
    (`context.lake`). The rule follows the bucket, never the credentials: keys supplied
    with the source do not lift it.
    """
    if location.scheme == "s3":
        confine(context.lake, context.settings.bucket_name, location.bucket, location.key)


def parse_location(url: str, pattern: str | None) -> Location:
    parts = urlsplit(url)
    if parts.scheme == "s3":
        bucket, key, is_prefix = s3_key(url, pattern)
        # 'keys@bucket' or 'bucket:port' is no bucket name, and must not slip past the
        # landing-bucket comparison either.
        if not bucket or "@" in bucket or ":" in bucket:
            raise ValidationFailed(
                "an s3 url names a bucket: s3://bucket/key or s3://bucket/prefix/ "
                "(keys for another bucket go in 'credentials')"
            )
        return Location("s3", bucket, key, is_prefix)
    if parts.scheme in ("https", "http"):
        if not parts.hostname:
            raise ValidationFailed("the url has no host")
        if pattern:
            raise ValidationFailed("'pattern' applies to s3 prefixes, not to https urls")
        return Location(parts.scheme, parts.hostname, unquote(parts.path) or "/", False)
    raise ValidationFailed("url must start with s3:// or https://")


def display_name(location: Location) -> str:
    if location.scheme == "s3":
        return f"s3://{location.bucket}/{location.key}"
    return f"{location.scheme}://{location.bucket}{location.key}"


def split_extension(name: str) -> tuple[str, str | None]:
    """(name without its data extensions, format or None)."""
    lowered = name.lower()
    for gz in GZIP_EXTENSIONS:
        if lowered.endswith(gz):
            name, lowered = name[: -len(gz)], lowered[: -len(gz)]
            break
    for extension, fmt in EXTENSIONS.items():
        if lowered.endswith(extension):
            return name[: -len(extension)], fmt
    return name, None


def format_of(key: str) -> str | None:
    return split_extension(key.rsplit("/", 1)[-1])[1]


def compression_of(key: str, configured: str | None) -> str:
    """`gzip` or `none`: as configured, else from the key's extension."""
    if configured is not None:
        return configured
    return "gzip" if key.lower().endswith(GZIP_EXTENSIONS) else "none"


def stream_name(location: Location) -> str:
    """The stream's name: the file name without extensions, or the prefix's last folder."""
    segments = [s for s in location.key.split("/") if s]
    if segments:
        raw = segments[-1] if location.is_prefix else split_extension(segments[-1])[0]
    else:
        raw = location.bucket
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", raw).strip(".") or "file"
    return name[:128]


def literal_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: listed with S3's Prefix."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head[: head.rfind("/") + 1]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over keys relative to the prefix (`*` stays in a segment)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)
