"""A small typed-value facade over the low-level DynamoDB client.

The DAL passes and receives plain Python values (str, int, Decimal, bool, lists,
dicts); this module marshals them. It stands in for boto3's resource API, which costs
~50-90 ms more at cold start than the client that every function creates anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from datasources import aws
from datasources.backoff import send_until_done
from datasources.config import get_settings
from datasources.errors import StorageError

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
_BATCH_WRITE_SIZE = 25  # DynamoDB's BatchWriteItem limit


def _wire(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _SERIALIZER.serialize(v) for k, v in values.items()}


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _DESERIALIZER.deserialize(v) for k, v in values.items()}


def _wire_action(action: dict[str, Any]) -> dict[str, Any]:
    """Marshal the typed parts of one transaction or request (Item, Key, values)."""
    out = dict(action)
    for field in ("Item", "Key", "ExpressionAttributeValues"):
        if field in out:
            out[field] = _wire(out[field])
    return out


def table() -> Table:
    """The service's DynamoDB table, with plain Python values in and out."""
    # Not cached itself: the client is, and a test's fresh emulated AWS gets a fresh one.
    return Table(aws.client("dynamodb"), get_settings().table_name)


class Table:
    """The operations the DAL uses, on one table, with plain values in and out."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def get_item(self, *, Key: dict[str, Any], ConsistentRead: bool = False) -> dict[str, Any]:
        response = self.client.get_item(
            TableName=self.name, Key=_wire(Key), ConsistentRead=ConsistentRead
        )
        return {"Item": _plain(response["Item"])} if "Item" in response else {}

    def put_item(self, **params: Any) -> None:
        self.client.put_item(TableName=self.name, **_wire_action(params))

    def update_item(self, **params: Any) -> dict[str, Any]:
        """The update's `Attributes` (with `ReturnValues`) as plain values, else {}."""
        response = self.client.update_item(TableName=self.name, **_wire_action(params))
        return _plain(response.get("Attributes") or {})

    def delete_item(self, **params: Any) -> None:
        self.client.delete_item(TableName=self.name, **_wire_action(params))

    def query(self, **params: Any) -> dict[str, Any]:
        if "ExclusiveStartKey" in params:
            params["ExclusiveStartKey"] = _wire(params["ExclusiveStartKey"])
        response = self.client.query(TableName=self.name, **_wire_action(params))
        result: dict[str, Any] = {"Items": [_plain(i) for i in response.get("Items", [])]}
        if "LastEvaluatedKey" in response:
            result["LastEvaluatedKey"] = _plain(response["LastEvaluatedKey"])
        return result

    def query_prefix(
        self, pk: str, sk_prefix: str, *, consistent: bool = False, keys_only: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every item of partition `pk` whose sort key starts with `sk_prefix`, page by page."""
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": pk, ":prefix": sk_prefix},
            "ConsistentRead": consistent,
        }
        if keys_only:
            params["ProjectionExpression"] = "pk, sk"
        while True:
            response = self.query(**params)
            yield from response["Items"]
            if "LastEvaluatedKey" not in response:
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def transact_write_items(
        self, actions: list[dict[str, Any]], *, token: str | None = None
    ) -> None:
        """Each action is {"Put"|"Update"|"Delete"|"ConditionCheck": {...}} without TableName.

        `token` is the ClientRequestToken that makes a retried transaction idempotent."""
        items = [
            {kind: {"TableName": self.name, **_wire_action(body)} for kind, body in a.items()}
            for a in actions
        ]
        params: dict[str, Any] = {"TransactItems": items}
        if token:
            params["ClientRequestToken"] = token
        self.client.transact_write_items(**params)

    def batch_get(
        self, keys: list[dict[str, Any]], *, consistent: bool = True
    ) -> list[dict[str, Any]]:
        """Items for up to 100 keys; unprocessed keys are asked again, with backoff."""
        found: list[dict[str, Any]] = []

        def send(request: dict[str, Any]) -> dict[str, Any]:
            response = self.client.batch_get_item(RequestItems=request)
            found.extend(_plain(i) for i in response["Responses"].get(self.name, []))
            return response.get("UnprocessedKeys") or {}

        request = {self.name: {"Keys": [_wire(k) for k in keys], "ConsistentRead": consistent}}
        if send_until_done(send, request):
            raise StorageError("the table kept refusing to read some items (throttled)")
        return found

    @contextmanager
    def batch_writer(self) -> Iterator[_BatchWriter]:
        writer = _BatchWriter(self)
        yield writer
        writer.flush()


class _BatchWriter:
    """Buffers puts and deletes; writes them 25 at a time, retrying unprocessed ones
    with backoff."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._requests: list[dict[str, Any]] = []

    def put_item(self, *, Item: dict[str, Any]) -> None:
        self._add({"PutRequest": {"Item": _wire(Item)}})

    def delete_item(self, *, Key: dict[str, Any]) -> None:
        self._add({"DeleteRequest": {"Key": _wire(Key)}})

    def _add(self, request: dict[str, Any]) -> None:
        self._requests.append(request)
        if len(self._requests) >= _BATCH_WRITE_SIZE:
            self.flush()

    def flush(self) -> None:
        while self._requests:
            chunk, self._requests = (
                self._requests[:_BATCH_WRITE_SIZE],
                self._requests[_BATCH_WRITE_SIZE:],
            )
            if send_until_done(self._send, {self._table.name: chunk}):
                raise StorageError("the table kept refusing to write some items (throttled)")

    def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        response = self._table.client.batch_write_item(RequestItems=request)
        return response.get("UnprocessedItems") or {}
