"""`csv.encoding` is checked at validation (D7): an unknown codec, a codec that does not
decode bytes to text, or an oversized name is a 422 naming the field, never a 500."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from datasources.models.connection import CsvOptions
from tests.conftest import Stack

REFUSED = [
    "no-such-codec",
    "rot13",
    "rot_13",
    "zlib_codec",
    "zlib",
    "bz2_codec",
    "base64_codec",
    "hex",
    "uu_codec",
    "quopri",
    "undefined",
    "",
    "utf-8" + "x" * 10_000,
    "x" * 10_240,
    "utf-8\n",
    "utf-8\x00",
]
ACCEPTED = ["utf-8", "UTF8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "shift_jis"]


@pytest.mark.parametrize("encoding", REFUSED, ids=lambda e: repr(e[:20]))
def test_a_codec_that_is_not_a_text_encoding_is_refused_by_the_model(encoding: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CsvOptions.model_validate({"encoding": encoding})
    assert [e["loc"] for e in caught.value.errors()] == [("encoding",)]


@pytest.mark.parametrize("encoding", ACCEPTED)
def test_text_encodings_are_accepted(encoding: str) -> None:
    assert CsvOptions.model_validate({"encoding": encoding}).encoding == encoding


@pytest.mark.parametrize("encoding", ["no-such-codec", "rot13", "zlib_codec", "x" * 10_240])
def test_test_connection_with_a_bad_codec_is_422_not_500(stack: Stack, encoding: str) -> None:
    key = "uploads/acme/encoding.csv"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"id,name\n1,caf\xe9\n")
    config = {"url": f"s3://{stack.bucket}/{key}", "format": "csv", "csv": {"encoding": encoding}}
    response = stack.call(
        "test", body={"source_config": {"type": "file", "connection_config": config}}
    )
    assert response.status_code == 422, response.body
    assert "csv.encoding" in response.body["message"]


def test_test_connection_with_latin_1_reads(stack: Stack) -> None:
    # The refusals above are not a reader that refuses every encoding.
    key = "uploads/acme/latin1.csv"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"id,name\n1,caf\xe9\n")
    config = {"url": f"s3://{stack.bucket}/{key}", "format": "csv", "csv": {"encoding": "latin-1"}}
    response = stack.call(
        "test", body={"source_config": {"type": "file", "connection_config": config}}
    )
    assert response.status_code == 200, response.body
