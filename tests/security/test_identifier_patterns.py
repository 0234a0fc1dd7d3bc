"""Identifiers and claims never end in a newline (D11).

Python's `$` matches before a final "\n", so `re.match(r"^ws$", "ws\n")` passes. Every
pattern of a request model or a token claim is tried here with trailing-newline variants,
through pydantic (the models), through `fullmatches` (the Python checks), and through the
real handlers, where such an id would otherwise reach a DynamoDB key or an S3 path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from datasources.models import requests, source_requests
from datasources.models.common import (
    CLAIM_PATTERN,
    JOB_ID_PATTERN,
    SOURCE_ID_PATTERN,
    SOURCE_NAME_PATTERN,
    WORKSPACE_ID_PATTERN,
    fullmatches,
)
from datasources.models.connection import ENCODING_NAME_PATTERN
from tests.conftest import Stack, mint

# pattern -> a value it accepts. A pattern in a model but missing here fails the test below.
VALID: dict[str, str] = {
    WORKSPACE_ID_PATTERN: "ws_demo",
    SOURCE_ID_PATTERN: "src_" + "0" * 20,
    JOB_ID_PATTERN: "job_" + "0" * 20,
    SOURCE_NAME_PATTERN: "orders",
    CLAIM_PATTERN: "acme",
    r"^[A-Za-z0-9_.-]{1,128}$": "customers",  # an API resource name
    ENCODING_NAME_PATTERN: "utf-8",
}
# Patterns that refuse spaces also refuse a trailing space; a source name may hold spaces.
ENDINGS = ["\n", "\r\n", "\r", "\n\n", " "]
SPACE_ALLOWED = {SOURCE_NAME_PATTERN}


def variants() -> Iterator[tuple[str, str]]:
    for pattern, good in VALID.items():
        for ending in ENDINGS:
            if ending == " " and pattern in SPACE_ALLOWED:
                continue
            yield pattern, good + ending


def patterns_in(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            yield schema["pattern"]
        for value in schema.values():
            yield from patterns_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from patterns_in(value)


def test_every_pattern_of_the_request_models_is_in_the_table() -> None:
    models: list[type[BaseModel]] = [
        m
        for module in (requests, source_requests)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__
    ]
    found = {p for model in models for p in patterns_in(model.model_json_schema())}
    assert found, "no patterns found: the walk is broken"
    assert found <= set(VALID), f"patterns without a row here: {found - set(VALID)}"


@pytest.mark.parametrize("pattern", list(VALID))
def test_the_valid_sample_passes_both_engines(pattern: str) -> None:
    assert fullmatches(pattern, VALID[pattern])
    TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)]).validate_python(VALID[pattern])


@pytest.mark.parametrize(("pattern", "value"), list(variants()), ids=repr)
def test_a_trailing_newline_or_space_fails_every_pattern(pattern: str, value: str) -> None:
    if value.endswith("\n") and not value.endswith(("\r\n", "\n\n")):
        assert re.match(pattern, value)  # the trap is real: `$` matches before the "\n"
    assert not fullmatches(pattern, value)
    with pytest.raises(ValidationError):
        TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)]).validate_python(value)


@pytest.mark.parametrize("ending", ["\n", "\r\n", " "])
def test_a_workspace_id_with_a_trailing_newline_is_422_and_writes_nothing(
    stack: Stack, ending: str
) -> None:
    source = {"type": "file", "name": "f", "connection_config": {"url": "s3://b/k.csv"}}
    connect = stack.call("connect", body={"sources": [source]}, workspace_id="ws1" + ending)
    assert connect.status_code == 422, connect.body
    assert stack.call("list", workspace_id="ws1" + ending).status_code == 422
    assert stack.ddb.scan(TableName=stack.resources.table_name)["Count"] == 0


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_job_id_with_a_trailing_newline_is_not_looked_up(
    stack: Stack, ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasources.sync import status

    looked_up: list[str] = []
    monkeypatch.setattr(status.jobs_dal, "get_job", lambda _t, job_id: looked_up.append(job_id))
    response = stack.call(
        "status", query={"scope": "user"}, path={"job_id": VALID[JOB_ID_PATTERN] + ending}
    )
    assert response.status_code == 404 and looked_up == []


@pytest.mark.parametrize("claim", ["sub", "organization"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", " "])
def test_a_claim_with_a_trailing_newline_is_401(stack: Stack, claim: str, ending: str) -> None:
    token = mint(**{"sub" if claim == "sub" else "org": "acme" + ending})
    assert stack.call("list", token=token).status_code == 401
