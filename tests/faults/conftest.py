"""Fixtures of the fault suite: the fault hook, and moto's DynamoDB writes serialised.

moto restores a snapshot of the whole table when a transaction fails its condition,
which would undo another thread's concurrent write: the engine's real DynamoDB does
not. Serialising moto's writes keeps what these tests see the engine's behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Stack
from tests.faults.hook import Faults


@pytest.fixture
def serial_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from local.moto_guard import serialise_dynamodb_writes

    serialise_dynamodb_writes(monkeypatch.setattr)


@pytest.fixture
def faulty(stack: Stack, serial_moto: None) -> Iterator[Faults]:
    """The stack with the fault hook on the engine's clients (no faults until set)."""
    stack.configure(RETRY_DELAY_SECONDS=0)
    yield Faults().install()
