"""Exact decimals from text files survive a sync: the Parquet part holds decimal128.

Given money columns (`0.99`, `1.98`) in CSV and JSON Lines uploads, when the sources are
connected and synced, then `schema` reports `decimal` and the landed Parquet column is a
decimal128 whose values read back as the exact `Decimal`s, not floats.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Stack

FILES = {
    "prices.csv": b"id,price\n1,0.99\n2,1.98\n3,\n",
    "prices.jsonl": b'{"id": 1, "price": 0.99}\n{"id": 2, "price": 1.98}\n{"id": 3}\n',
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_money_from_a_text_file_lands_in_parquet_as_exact_decimals(stack: Stack, name: str) -> None:
    key = f"uploads/acme/money/{name}"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=FILES[name])
    source = {
        "type": "file",
        "name": name,
        "connection_config": {"url": f"s3://{stack.bucket}/{key}"},
    }
    connected = stack.call("connect", body={"sources": [source]})
    assert connected.status_code == 201, connected.body
    source_id = connected.data["connected_sources"][0]["id"]

    schema = stack.call("schema", query={"source_id": source_id, "scope": "user"})
    columns = {c["name"]: c for c in schema.data["tables"][0]["columns"]}
    assert columns["price"]["type"] == "decimal"
    assert columns["price"]["native_type"] == "decimal128(9, 2)"

    job = stack.call("sync", body={"source_ids": [source_id]}).data
    assert job["records_processed"] == 3, job
    (part,) = [
        k
        for k in stack.objects(f"org=acme/workspace=ws_demo/source={source_id}/")
        if f"/job={job['job_id']}/part-" in k and k.endswith(".parquet")
    ]
    body = stack.s3.get_object(Bucket=stack.bucket, Key=part)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.field("price").type == pa.decimal128(9, 2)
    prices = sorted(
        zip(table.column("id").to_pylist(), table.column("price").to_pylist(), strict=True)
    )
    assert prices == [(1, Decimal("0.99")), (2, Decimal("1.98")), (3, None)]
