"""Read the next batch while the engine writes the previous one.

A connector spends its time waiting on the source (or parsing what it sent); the engine
spends its own encoding Parquet and waiting on S3 and DynamoDB. One producer thread
reads batch k+1 while the writer works on batch k, and starts on k+2 only once the
writer has taken k+1: at most two batches are held at once, whatever the table size.
The connector is driven from the producer thread only (a database connection is never
shared between threads), and closed there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from datasources.connectors.base import Batch

_POLL_SECONDS = 0.1


class ReadAhead:
    """Iterate `batches` one batch ahead, in a thread; `close()` stops and joins it."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._taken = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(batches,), name="sync-read-ahead", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[Batch]:
        while True:
            kind, value = self._queue.get()
            self._taken.set()
            if kind == "batch":
                yield value
            elif kind == "end":
                return
            else:
                # The connector's own exception (SourceReadError, ...), as if read inline.
                raise value

    def close(self) -> None:
        """Stop reading ahead: what was read but not consumed is dropped (the unit's
        checkpoint still points before it, so a continuation reads it again)."""
        self._stop.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(timeout=_POLL_SECONDS)
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _produce(self, batches: Iterator[Batch]) -> None:
        try:
            for batch in batches:
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(("error", exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def _put(self, item: tuple[str, Any]) -> bool:
        """Hand over one item and wait until the writer has taken it (False: stopped)."""
        self._taken.clear()
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            while not self._stop.is_set():
                if self._taken.wait(_POLL_SECONDS):
                    return True
            return False
        return False
