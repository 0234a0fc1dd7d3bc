"""Exact decimals from API bodies (issue 13, item 6): amounts land as decimal128 with
their literal digits, other numbers as float64, and a later value that a decimal column
cannot hold fails the batch instead of being rounded."""

from __future__ import annotations

import decimal
from collections.abc import Iterator

import pyarrow as pa
import pytest

from datasources.config import Settings
from datasources.connectors.api import ApiConnector
from datasources.connectors.base import ConnectorContext, StreamState
from datasources.errors import SourceReadError
from datasources.models.connection import ApiConfig
from tests.support.fake_api import FakeApi

LOCAL = ConnectorContext(settings=Settings(local_mode=True))
D = decimal.Decimal


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(records=1) as server:
        yield server


def connector(api: FakeApi, *pages: str) -> ApiConnector:
    api.money_pages = [page.encode() for page in pages]
    return ApiConnector(ApiConfig(base_url=f"{api.url}/money", api_key=api.api_key), LOCAL)


def test_amounts_land_as_exact_decimals_and_other_numbers_as_float64(api: FakeApi) -> None:
    conn = connector(
        api,
        '[{"id": 1, "amount": 0.99, "ratio": 0.333333333333, "big": 1.5e300, "n": 3},'
        ' {"id": 2, "amount": 1.98, "ratio": 0.5, "big": 2.0, "n": 4},'
        ' {"id": 3, "amount": 10, "ratio": 1, "big": null, "n": 5}]',
        '[{"id": 4, "amount": 12345.10, "ratio": 0.25, "big": 7.0, "n": 6}]',
    )
    (table,) = conn.discover()
    types = {c.name: c.type for c in table.columns}
    assert types == {
        "id": "integer",
        "amount": "decimal",
        "ratio": "number",
        "big": "number",
        "n": "integer",
    }
    (batch,) = conn.read("money", StreamState(), 100)
    records = batch.records
    assert isinstance(records, pa.Table)
    amount = records.schema.field("amount").type
    assert pa.types.is_decimal(amount) and amount.scale == 2
    assert records.column("amount").to_pylist() == [D("0.99"), D("1.98"), D("10.00"), D("12345.10")]
    assert records.schema.field("ratio").type == pa.float64()
    assert records.column("ratio").to_pylist()[0] == 0.333333333333
    assert records.schema.field("big").type == pa.float64()


@pytest.mark.parametrize(
    ("later", "value_kind"),
    [
        ('{"id": 3, "amount": 0.125}', "a number with 3 decimal places"),
        ('{"id": 3, "amount": "n/a"}', "a JSON string"),
        ('{"id": 3, "amount": 123456789012.5}', "a number with 12 integer digits"),
    ],
)
def test_a_later_value_that_does_not_fit_fails_the_batch_naming_column_and_kind(
    api: FakeApi, later: str, value_kind: str
) -> None:
    conn = connector(api, '[{"id": 1, "amount": 0.99}, {"id": 2, "amount": 1.50}]', f"[{later}]")
    with pytest.raises(SourceReadError) as failed:
        list(conn.read("money", StreamState(), 100))
    message = failed.value.message
    assert "column 'amount'" in message and value_kind in message
    assert "rather than rounding" in message
    assert failed.value.details is not None and failed.value.details["stage"] == "read"


def test_nested_numbers_and_json_text_are_unchanged(api: FakeApi) -> None:
    conn = connector(api, '[{"id": 1, "meta": {"rate": 1.10, "n": 2}}]')
    (batch,) = conn.read("money", StreamState(), 10)
    assert isinstance(batch.records, pa.Table)
    assert batch.records.column("meta").to_pylist() == ['{"n":2,"rate":1.1}']


def test_a_decimal_cursor_is_committed_as_a_json_number(api: FakeApi) -> None:
    conn = connector(api, '[{"id": 1, "version": 1.5}, {"id": 2, "version": 2.25}]')
    (batch,) = conn.read("money", StreamState(cursor_field="version"), 10)
    assert batch.cursor_state == {"value": 2.25}
