"""Fixtures of the fault suite: the fault hook, and moto's DynamoDB writes serialised.

moto restores a snapshot of the whole table when a transaction fails its condition,
which would undo another thread's concurrent write: the engine's real DynamoDB does
not. Serialising moto's writes keeps what these tests see the engine's behaviour.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack
from tests.faults.hook import Faults

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


@pytest.fixture
def serial_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in _WRITES:
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def faulty(stack: Stack, serial_moto: None) -> Iterator[Faults]:
    """The stack with the fault hook on the engine's clients (no faults until set)."""
    stack.configure(RETRY_DELAY_SECONDS=0)
    yield Faults().install()
