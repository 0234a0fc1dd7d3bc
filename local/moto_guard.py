"""Serialise the emulated DynamoDB's writes.

When a transaction fails its condition, moto restores a snapshot of the whole table,
which undoes any write another client made meanwhile (real DynamoDB never does): one
run brought a cancelled job back to `running` this way. One lock around moto's write
operations leaves each of them atomic, as in AWS, so the local stack and the tests
exercise the engine and not this artefact.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_LOCK = threading.RLock()


def serialise_dynamodb_writes(
    setattr_: Callable[[Any, str, Any], None] = setattr,
) -> None:
    """Wrap moto's DynamoDB write operations in one process-wide lock (idempotent).

    `setattr_` lets a test pass monkeypatch.setattr, so the wrapping is undone after it.
    """
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "_serialised", False):
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return _original(self, *args, **kwargs)

        functools.update_wrapper(locked, original)
        locked._serialised = True  # type: ignore[attr-defined]
        setattr_(DynamoDBBackend, name, locked)
