"""Sources and their name-uniqueness items."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from datasources import aws
from datasources.dal.keys import STATE_PREFIX, Tenant, name_sk, source_sk, state_sk, uploads_pk
from datasources.dal.table import table
from datasources.errors import BadRequest, NameConflict, StorageError
from datasources.models.common import SOURCE_ID_PATTERN, fullmatches
from datasources.tokens import (
    MAX_PAGE_TOKEN_CHARS,
    MAX_PAGE_TOKEN_DEPTH,
    TokenError,
    decode_segment,
    encode_segment,
)


class SourceRecord(BaseModel):
    """A source as stored: the masked config and the ARN of its secret, never a secret."""

    id: str
    name: str
    type: str
    scope: str
    connection_config: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    created_by: str
    secret_arn: str | None = None
    last_sync: dict[str, Any] | None = None
    lease_job: str | None = None
    lease_expires: int | None = None
    # The source's schedule (config) and its run state, kept on the source item so a
    # source and its schedule are read, listed and deleted together.
    schedule: dict[str, Any] | None = None
    schedule_failures: int = 0
    schedule_paused: str | None = None
    schedule_last_run: dict[str, Any] | None = None

    def to_item(self, tenant: Tenant) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": tenant.pk,
            "sk": source_sk(self.id),
            "kind": "source",
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "scope": self.scope,
            # JSON text: the resource API refuses floats, and configs are read whole anyway.
            "connection_config": json.dumps(self.connection_config),
            "metadata": json.dumps(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
        }
        if self.secret_arn:
            item["secret_arn"] = self.secret_arn
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> SourceRecord:
        return cls(
            id=item["id"],
            name=item["name"],
            type=item["type"],
            scope=item["scope"],
            connection_config=json.loads(item["connection_config"]),
            metadata=json.loads(item.get("metadata") or "{}"),
            created_at=item["created_at"],
            updated_at=item["updated_at"],
            created_by=item["created_by"],
            secret_arn=item.get("secret_arn"),
            last_sync=json.loads(item["last_sync"]) if item.get("last_sync") else None,
            lease_job=item.get("lease_job"),
            lease_expires=int(item["lease_expires"]) if item.get("lease_expires") else None,
            schedule=json.loads(item["schedule"]) if item.get("schedule") else None,
            schedule_failures=int(item.get("schedule_failures") or 0),
            schedule_paused=item.get("schedule_paused"),
            schedule_last_run=(
                json.loads(item["schedule_last_run"]) if item.get("schedule_last_run") else None
            ),
        )


def create_sources(tenant: Tenant, sources: list[SourceRecord]) -> None:
    """Write every source and its name item in one transaction: all or none.

    The name item's `attribute_not_exists` condition makes a duplicate name fail the
    whole transaction, so two concurrent connects cannot both take a name.
    """
    actions: list[dict[str, Any]] = []
    for source in sources:
        actions.append({"Put": {"Item": source.to_item(tenant)}})
        actions.append(
            {
                "Put": {
                    "Item": {
                        "pk": tenant.pk,
                        "sk": name_sk(source.name),
                        "kind": "name",
                        "source_id": source.id,
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        )
    try:
        table().transact_write_items(actions)
    except ClientError as exc:
        if aws.error_code(exc) == "TransactionCanceledException":
            reasons = exc.response.get("CancellationReasons", [])
            for index, reason in enumerate(reasons):
                if reason.get("Code") == "ConditionalCheckFailed":
                    name = sources[index // 2].name
                    raise NameConflict(
                        f"a data source named '{name}' already exists in this workspace and scope",
                        details={"name": name},
                    ) from None
        raise StorageError("could not save the data sources") from exc


def get_source(tenant: Tenant, source_id: str) -> SourceRecord | None:
    """One source of this tenant, or None (also for another tenant's id)."""
    item = table().get_item(Key={"pk": tenant.pk, "sk": source_sk(source_id)}).get("Item")
    return SourceRecord.from_item(item) if item else None


def get_sources(tenant: Tenant, source_ids: list[str]) -> dict[str, SourceRecord]:
    """The tenant's sources among `source_ids`, by id (BatchGetItem, 100 keys a call)."""
    found: dict[str, SourceRecord] = {}
    unique = list(dict.fromkeys(source_ids))
    for start in range(0, len(unique), 100):
        keys = [{"pk": tenant.pk, "sk": source_sk(sid)} for sid in unique[start : start + 100]]
        for item in table().batch_get(keys):
            record = SourceRecord.from_item(item)
            found[record.id] = record
    return found


def list_sources(
    tenant: Tenant, *, source_type: str | None, limit: int, next_token: str | None
) -> tuple[list[SourceRecord], str | None]:
    """One page of the tenant's sources (a Query, never a Scan) and the token for the next."""
    params: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": tenant.pk, ":prefix": "SOURCE#"},
        "Limit": limit,
    }
    if source_type:
        params["FilterExpression"] = "#type = :type"
        params["ExpressionAttributeNames"] = {"#type": "type"}
        params["ExpressionAttributeValues"][":type"] = source_type
    if next_token:
        params["ExclusiveStartKey"] = _decode_token(next_token, tenant)
    response = table().query(**params)
    items = [SourceRecord.from_item(i) for i in response.get("Items", [])]
    last = response.get("LastEvaluatedKey")
    return items, _encode_token(last) if last else None


def iter_all_sources(tenant: Tenant) -> Iterator[SourceRecord]:
    """Every source of the tenant, page by page."""
    token: str | None = None
    while True:
        page, token = list_sources(tenant, source_type=None, limit=200, next_token=token)
        yield from page
        if not token:
            return


def state_keys_by_source(tenant: Tenant) -> dict[str, list[dict[str, str]]]:
    """The keys of every stream-state item of the tenant, by source id (one paged query).

    A cleanup of many sources reads them once instead of one query per source.
    """
    found: dict[str, list[dict[str, str]]] = {}
    for item in table().query_prefix(tenant.pk, STATE_PREFIX, keys_only=True):
        source_id = item["sk"].split("#", 2)[1]
        found.setdefault(source_id, []).append({"pk": item["pk"], "sk": item["sk"]})
    return found


def delete_sources(
    tenant: Tenant,
    sources: Iterable[SourceRecord],
    states: dict[str, list[dict[str, str]]] | None = None,
) -> None:
    """Delete sources, their name items and their stream state, in batches of 25.

    `states` (from `state_keys_by_source`) saves a query per source when given.
    """
    keys: list[dict[str, str]] = []
    items_table = table()
    for source in sources:
        keys.append({"pk": tenant.pk, "sk": source_sk(source.id)})
        keys.append({"pk": tenant.pk, "sk": name_sk(source.name)})
        if source.schedule and source.schedule.get("schedule") == "on_upload":
            keys.append({"pk": uploads_pk(tenant.organization), "sk": source_sk(source.id)})
        if states is not None:
            keys.extend(states.get(source.id, []))
            continue
        items = items_table.query_prefix(tenant.pk, state_sk(source.id, ""), keys_only=True)
        keys.extend({"pk": i["pk"], "sk": i["sk"]} for i in items)
    with items_table.batch_writer() as batch:
        for key in keys:
            batch.delete_item(Key=key)


def _encode_token(key: dict[str, Any]) -> str:
    return encode_segment({"pk": key["pk"], "sk": key["sk"]})


def _decode_token(token: str, tenant: Tenant) -> dict[str, Any]:
    try:
        key = decode_segment(token, max_chars=MAX_PAGE_TOKEN_CHARS, max_depth=MAX_PAGE_TOKEN_DEPTH)
    except TokenError:
        raise BadRequest("next_token is not valid") from None
    # A token is only a position: this tenant's partition and a source's sort key, both
    # strings (anything else would reach DynamoDB as a malformed ExclusiveStartKey).
    sk = key.get("sk")
    if (
        set(key) != {"pk", "sk"}
        or key["pk"] != tenant.pk
        or not isinstance(sk, str)
        or not sk.startswith("SOURCE#")
        or not fullmatches(SOURCE_ID_PATTERN, sk.removeprefix("SOURCE#"))
    ):
        raise BadRequest("next_token is not valid")
    return {"pk": tenant.pk, "sk": sk}
