"""The bytes of one file on their way to a parser: decompressed, transcoded, checked.

Whatever the object source, a file's raw bytes pass the same stages: the gzip inflation
guard, decompression, the checks of `datasources.limits` (deadline, JSON Lines nesting
depth), and for text tables a transcoding to UTF-8.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from datasources.limits import InflateGuard, LimitExceeded, check_json, seconds_left

STREAM_BUFFER_BYTES = 1 << 20
SAMPLE_BYTES = 1 << 20  # discovery infers types from about this much of the first file
READ_BLOCK_BYTES = 4 << 20  # pyarrow parser block while reading; bounds memory per file
SAMPLE_MAX_LINE_BYTES = 16 << 20  # a first line longer than this is not a text table


def decoded_stream(
    read: Callable[[int], bytes],
    close: Callable[[], None],
    name: str,
    *,
    gzip: bool,
    deadline: float | None,
    json_lines: bool,
    encoding: str = "utf-8",
) -> pa.NativeFile:
    """A sequential, decompressed byte stream of one file, checked on its way."""
    inflate = InflateGuard(name) if gzip else None
    if inflate is not None:
        read = inflate.counting(read)
    raw = BodyReader(read, close)
    stream = pa.PythonFile(io.BufferedReader(raw, STREAM_BUFFER_BYTES), mode="r")
    if inflate is not None:
        stream = pa.CompressedInputStream(stream, "gzip")
    # Every format passes the checks on its way to the parser (limits.py).
    checked = CheckedStream(stream, name, deadline=deadline, inflate=inflate, json_lines=json_lines)
    stream = pa.PythonFile(checked, mode="r")
    if codecs.lookup(encoding).name != "utf-8":
        # pyarrow parses UTF-8 only; transcode other encodings on the way in.
        stream = pa.transcoding_input_stream(stream, encoding, "utf-8")
    return stream


def read_up_to(stream: pa.NativeFile, size: int) -> bytes:
    """`size` bytes, or fewer only at the end of the stream (a read may return less)."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(bytes(data))
        got += len(data)
    return b"".join(parts)


class BodyReader(io.RawIOBase):
    """A raw, read-only file over a `read(n)` callable (boto3 StreamingBody, HTTP body)."""

    def __init__(self, read: Callable[[int], bytes], on_close: Callable[[], None]) -> None:
        super().__init__()
        self._read = read
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size

    def close(self) -> None:
        if not self.closed:
            self._on_close()
        super().close()


class CheckedStream(io.RawIOBase):
    """The (decompressed) bytes of one file on their way to a parser, checked against
    limits.py: the deadline, the inflated size of gzip input, and for JSON Lines the
    nesting depth of every line before pyarrow's recursive parser sees it."""

    def __init__(
        self,
        source: pa.NativeFile,
        name: str,
        *,
        deadline: float | None,
        inflate: InflateGuard | None,
        json_lines: bool,
    ) -> None:
        super().__init__()
        self._source = source
        self._name = name
        self._deadline = deadline
        self._inflate = inflate
        self._json_lines = json_lines
        self._tail = b""  # the start of a line whose end has not been read yet

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        seconds_left(self._deadline, f"reading '{self._name}'")
        data = self._source.read(len(buffer))
        if self._inflate is not None:
            self._inflate.add(len(data))
        if self._json_lines:
            self._check_lines(data)
        size = len(data)
        buffer[:size] = data
        return size

    def _check_lines(self, data: bytes) -> None:
        # pyarrow parses a line only once its end (a newline or the end of the file) has
        # been read, so checking whole lines as they complete is checking in time.
        what = f"a line of '{self._name}'"
        if not data:
            if self._tail:
                check_json(self._tail, what, max_values=None)
                self._tail = b""
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail += data
            if len(self._tail) > SAMPLE_MAX_LINE_BYTES:
                raise LimitExceeded(f"{what} is longer than {SAMPLE_MAX_LINE_BYTES} bytes")
            return
        check_json(self._tail + data[: cut + 1], what, max_values=None)
        self._tail = data[cut + 1 :]

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


class PrefixedReader(io.RawIOBase):
    """Bytes already read from a stream, followed by the rest of it."""

    def __init__(self, head: bytes, rest: pa.NativeFile) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
