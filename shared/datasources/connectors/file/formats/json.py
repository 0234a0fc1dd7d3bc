"""JSON: a top-level array of objects, or a sequence of objects, parsed element by element.

Each element becomes one JSON line, as written, and is typed like JSON Lines, so a
file of any size is never held whole (one element may be at most 64 MiB).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

import pyarrow as pa

from datasources.connectors.file.formats.jsonl import infer_records, records_table
from datasources.connectors.file.schema import RunSchema
from datasources.connectors.file.streams import SAMPLE_BYTES, STREAM_BUFFER_BYTES
from datasources.errors import SourceReadError
from datasources.limits import MAX_JSON_VALUES, check_json, depth_error

JSON_MAX_ELEMENT_BYTES = 64 << 20
_JSON_CHUNK_ROWS = 5_000
# A .json element still incomplete past this many characters has its values counted
# (limits.MAX_JSON_VALUES) before Python's parser builds it.
_JSON_COUNT_AFTER_CHARS = 1 << 20
_JSON_WHITESPACE = re.compile("[ \t\r\n\ufeff]*")
_LINE_BREAKS_TO_SPACES = str.maketrans("\r\n", "  ")


class JsonFormat:
    """A JSON document of objects."""

    def infer(self, stream: pa.NativeFile, key: str) -> tuple[pa.Schema, pa.Schema] | None:
        return infer_records(_json_sample(stream))

    def tables(self, stream: pa.NativeFile, key: str, read: pa.Schema | None) -> Iterator[pa.Table]:
        chunk: list[bytes] = []
        row = 0
        for element in _iter_json_elements(stream):
            chunk.append(element)
            if len(chunk) >= _JSON_CHUNK_ROWS:
                yield records_table(b"\n".join(chunk), read, key, row)
                row += len(chunk)
                chunk = []
        if chunk:
            yield records_table(b"\n".join(chunk), read, key, row)

    def find_misfit(
        self, stream: pa.NativeFile, key: str, schema: RunSchema
    ) -> SourceReadError | None:
        """None: a decimal that does not fit is named where its chunk is parsed."""
        return None


def _iter_json_elements(stream: pa.NativeFile) -> Iterator[bytes]:
    """Each object of a top-level JSON array (or of a sequence of objects) as one JSON
    line, without holding the whole document in memory. The element's own text is kept,
    so numbers reach the reader as written (`0.10` stays a decimal literal); JSON
    strings never hold a raw line break, so turning those into spaces is safe."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parser = json.JSONDecoder()
    buffer = ""
    pos = 0
    eof = False
    in_array: bool | None = None
    count = 0

    def fill(at_least: int = STREAM_BUFFER_BYTES) -> None:
        nonlocal buffer, pos, eof
        data = stream.read(max(at_least, STREAM_BUFFER_BYTES))
        if not data:
            eof = True
        buffer = buffer[pos:] + decoder.decode(data, final=eof)
        pos = 0

    def next_char() -> str:
        nonlocal pos
        while True:
            # A regex, not a loop per character: 256 MiB of whitespace took 22 s before.
            pos = _JSON_WHITESPACE.match(buffer, pos).end()  # type: ignore[union-attr]
            if pos < len(buffer) or eof:
                return buffer[pos] if pos < len(buffer) else ""
            fill()

    while True:
        char = next_char()
        if in_array is None:
            if char == "":
                return
            in_array = char == "["
            if in_array:
                pos += 1
                char = next_char()
                if char == "]":
                    return
        elif in_array:
            if char == "]":
                return
            if char != ",":
                raise ValueError(f"expected ',' or ']' after element {count} of the JSON array")
            pos += 1
            char = next_char()
        elif char == "":
            return
        if char != "{":
            raise ValueError(
                f"element {count} is not a JSON object: a json file holds an array of "
                "objects or a sequence of objects"
            )
        while True:
            try:
                _, end = parser.raw_decode(buffer, pos)
                break
            except RecursionError:
                raise depth_error(f"element {count}") from None
            except json.JSONDecodeError as exc:
                if eof:
                    raise ValueError(f"malformed JSON in element {count}: {exc.msg}") from None
                if len(buffer) - pos > JSON_MAX_ELEMENT_BYTES:
                    raise ValueError(
                        f"element {count} is malformed or larger than "
                        f"{JSON_MAX_ELEMENT_BYTES} bytes"
                    ) from None
                fill(len(buffer) - pos)  # grow geometrically so a big element parses in O(n)
                if len(buffer) - pos > _JSON_COUNT_AFTER_CHARS:
                    # The element runs on: bound what Python would build from it. The
                    # count may include elements after it, so it errs on refusing.
                    check_json(
                        buffer[pos:].encode(), f"element {count}", max_values=MAX_JSON_VALUES
                    )
        element = buffer[pos:end].translate(_LINE_BREAKS_TO_SPACES)
        pos = end
        count += 1
        yield element.encode()


def _json_sample(stream: pa.NativeFile) -> bytes:
    lines: list[bytes] = []
    size = 0
    for line in _iter_json_elements(stream):
        lines.append(line)
        size += len(line) + 1
        if size >= SAMPLE_BYTES:
            break
    return b"\n".join(lines)
