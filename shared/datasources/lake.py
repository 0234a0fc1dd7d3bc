"""The landing bucket's layout, and which parts of it a file source may read back.

The landing bucket holds every tenant's uploads and synced data, and the service's own
role can read all of it, so a `file` source pointed at it is confined here rather than
by IAM. Scope and owner are not in the lake's keys: the services layer looks up the
source a synced-data key belongs to and hands the connector a `LakeAllowance` naming
the prefixes it may read. This module is pure (no AWS, no DynamoDB) so the connector,
the sync writer and the services can all share the one rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from datasources.errors import ConnectionFailed

# org=<org>/workspace=<ws>/source=<source_id>/ opens every synced key; ids are checked
# against their documented patterns before they are used in a lookup.
_SOURCE_FOLDER = re.compile(
    r"\Aorg=(?P<org>[^/]+)/workspace=(?P<ws>[A-Za-z0-9][A-Za-z0-9_-]{0,63})"
    r"/source=(?P<source>src_[a-f0-9]{20})/"
)


def uploads_prefix(organization: str) -> str:
    """Where an organization's members put files for file sources."""
    return f"uploads/{organization}/"


def source_prefix(organization: str, workspace_id: str, source_id: str) -> str:
    """The folder holding everything one source has synced (every stream and job)."""
    return f"org={organization}/workspace={workspace_id}/source={source_id}/"


def s3_key(url: str, pattern: str | None) -> tuple[str, str, bool]:
    """(bucket, key, is_prefix) of an `s3://` url, as the file connector reads it.

    A url ending in '/' or given with a `pattern` is a prefix, and its key ends in '/'.
    """
    parts = urlsplit(url)
    key = unquote(parts.path.lstrip("/"))
    is_prefix = key == "" or key.endswith("/") or pattern is not None
    if is_prefix and key and not key.endswith("/"):
        key += "/"
    return parts.netloc, key, is_prefix


def named_source(key: str) -> tuple[str, str, str] | None:
    """(organization, workspace_id, source_id) of the synced-data folder `key` lies in."""
    match = _SOURCE_FOLDER.match(key)
    if match is None:
        return None
    return match["org"], match["ws"], match["source"]


@dataclass(frozen=True)
class LakeAllowance:
    """What a file source may read in the landing bucket: keys under `prefixes` only."""

    prefixes: tuple[str, ...] = ()

    def permits(self, key: str) -> bool:
        # S3 keys are literal, but a '..' or '.' segment could still be resolved by some
        # HTTP layer on the way; this service never writes such keys anyway.
        if "//" in key or any(s in (".", "..") for s in key.split("/")):
            return False
        return any(key.startswith(prefix) for prefix in self.prefixes)


def is_landing_bucket(bucket: str, landing_bucket: str) -> bool:
    return bool(landing_bucket) and bucket.lower() == landing_bucket.lower()


def confine(allowance: LakeAllowance | None, landing_bucket: str, bucket: str, key: str) -> None:
    """Refuse (stage `permission`) a key of the landing bucket the allowance does not cover.

    Other buckets are governed by their own keys. The rule depends on the bucket only,
    never on whether the source brings credentials. Without an allowance nothing in the
    landing bucket is readable: a caller that did not resolve one fails closed.
    """
    if not is_landing_bucket(bucket, landing_bucket):
        return
    if allowance is not None and allowance.permits(key):
        return
    raise ConnectionFailed(
        "files in the service's landing bucket can be read only under "
        "uploads/<your organization>/ or inside the folder of one synced source you can "
        "see (s3://<bucket>/org=<org>/workspace=<workspace>/source=<source id>/)",
        stage="permission",
    )
