"""Single-table key layout.

pk = ORG#{org}#WS#{workspace}#SCOPE#{scope}#OWNER#{owner}   (owner: sub, or '-' in org scope)
sk = SOURCE#{source_id}                  a source
     NAME#{name}                         name-uniqueness guard, written with its source
     JOB#{job_id}                        a sync job
     JOB#{job_id}#UNIT#{unit_id}         one (source, stream) work unit of a job
     STATE#{source_id}#{stream}          committed incremental state of a stream
     TRIGGER#{key}                       a trigger already handled (idempotency, with TTL)
pk = ORG#{org}#UPLOADS, sk = SOURCE#{source_id}: the organization's on_upload sources,
     so an S3 event (which names only a key) finds them with one Query

Every read and write names the full pk, which starts with the caller's organization,
so no code path can address another tenant's items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasources.models.common import Scope

if TYPE_CHECKING:
    from datasources.auth import Principal


@dataclass(frozen=True)
class Tenant:
    """Where a caller's items live: organization, workspace, scope and owner."""

    organization: str
    workspace_id: str
    scope: Scope
    owner: str

    @property
    def pk(self) -> str:
        return (
            f"ORG#{self.organization}#WS#{self.workspace_id}"
            f"#SCOPE#{self.scope.value}#OWNER#{self.owner}"
        )

    @classmethod
    def from_pk(cls, pk: str) -> Tenant:
        parts = pk.split("#")
        if len(parts) != 8 or parts[0::2] != ["ORG", "WS", "SCOPE", "OWNER"]:
            raise ValueError("not a tenant key")
        return cls(parts[1], parts[3], Scope(parts[5]), parts[7])


def tenant_for(principal: Principal, workspace_id: str, scope: Scope) -> Tenant:
    """The caller's items in a workspace and scope: their own in `user` scope."""
    return Tenant(principal.organization, workspace_id, scope, principal.owner_for(scope))


def source_sk(source_id: str) -> str:
    return f"SOURCE#{source_id}"


def name_sk(name: str) -> str:
    # Names are unique case-insensitively: "Orders" and "orders" would confuse people.
    return f"NAME#{name.lower()}"


def job_sk(job_id: str) -> str:
    return f"JOB#{job_id}"


def unit_sk(job_id: str, unit_id: str) -> str:
    return f"JOB#{job_id}#UNIT#{unit_id}"


STATE_PREFIX = "STATE#"


def state_sk(source_id: str, stream: str) -> str:
    return f"{STATE_PREFIX}{source_id}#{stream}"


def uploads_pk(organization: str) -> str:
    return f"ORG#{organization}#UPLOADS"


def trigger_sk(key: str) -> str:
    return f"TRIGGER#{key}"
