"""Who may read what back from the landing bucket through a `file` source.

The reach of a reader follows the API's own source lookups, in the workspace the
lake key names:
- a user-scope source (and a caller's test-connection) reads the uploads of its
  organization, the synced data of its owner's own user-scope sources and of the
  organization's sources;
- an organization-scope source reads the uploads and the organization's synced data
  only: what it syncs is visible to the whole organization, so nobody's private data
  may flow into it, not even its creator's.

Synced data is readable only through the folder of one source
(`org=<org>/workspace=<ws>/source=<id>/`): a broader prefix or a pattern across sources
is refused, so nobody can enumerate the lake. The source must still exist and be
visible each time the reader runs, at test-connection, connect, schema and sync alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasources.config import get_settings
from datasources.dal import sources as sources_dal
from datasources.dal.keys import Tenant
from datasources.lake import (
    LakeAllowance,
    confine,
    is_landing_bucket,
    named_source,
    s3_key,
    source_prefix,
    uploads_prefix,
)
from datasources.models.common import Scope

if TYPE_CHECKING:
    from datasources.auth import Principal
    from datasources.models.connection import ConfigModel


@dataclass(frozen=True)
class Reader:
    """Whose reach a file source has: `owner` is None for an organization-scope source."""

    organization: str
    owner: str | None

    @classmethod
    def of_caller(cls, principal: Principal) -> Reader:
        return cls(principal.organization, principal.sub)

    @classmethod
    def of_source(cls, tenant: Tenant) -> Reader:
        """A stored source reads with its owner's reach, or the organization's."""
        return cls(tenant.organization, tenant.owner if tenant.scope is Scope.USER else None)

    def can_see(self, workspace_id: str, source_id: str) -> bool:
        """The same lookups the API makes: own user-scope sources, then the organization's."""
        tenants = [Tenant(self.organization, workspace_id, Scope.ORGANIZATION, "-")]
        if self.owner is not None:
            tenants.insert(0, Tenant(self.organization, workspace_id, Scope.USER, self.owner))
        return any(sources_dal.get_source(t, source_id) is not None for t in tenants)


def _s3_location(config: ConfigModel) -> tuple[str, str] | None:
    from datasources.models.connection import FileConfig

    if not isinstance(config, FileConfig) or not config.plain_url.startswith("s3://"):
        return None
    bucket, key, _ = s3_key(config.plain_url, config.pattern)
    return bucket, key


def lake_allowance(reader: Reader, config: ConfigModel) -> LakeAllowance:
    """The prefixes of the landing bucket that a file config may read for this reader."""
    prefixes = [uploads_prefix(reader.organization)]
    location = _s3_location(config)
    if location is not None:
        bucket, key = location
        named = named_source(key)
        if (
            is_landing_bucket(bucket, get_settings().bucket_name)
            and named is not None
            and named[0] == reader.organization
            and reader.can_see(named[1], named[2])
        ):
            prefixes.append(source_prefix(*named))
    return LakeAllowance(tuple(prefixes))


def check_file_config(reader: Reader, config: ConfigModel) -> None:
    """Refuse, before saving, a file config that reaches outside the reader's allowance."""
    location = _s3_location(config)
    if location is None:
        return
    bucket, key = location
    confine(lake_allowance(reader, config), get_settings().bucket_name, bucket, key)
