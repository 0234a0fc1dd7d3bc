"""The `file` connector: CSV, TSV, JSON Lines, JSON and Parquet on S3 or behind one https URL.

A source is one stream: a single object (`s3://bucket/key.csv`), every object under a
prefix (`s3://bucket/prefix/`, optionally filtered by a `pattern` glob), or one
`https://` URL. Files are read in sorted key order and streamed through pyarrow, so
memory stays bounded by a parser block plus one batch whatever the object size.

The package: `objects.py` (locations, selected objects, names and globs), one module
per object source (`s3.py`, `https.py`), `streams.py` (decompression and the checks
every byte passes), one module per format under `formats/`, `schema.py` (the run's
schema and column typing), `cursor.py` (incremental filtering) and `connector.py`.

Decisions a user of this connector should know (the README repeats them):
- One schema per run, fixed from a sample (the first ~1 MiB) of the first non-empty
  file. A later file that lacks a column gets nulls for it; a later file with a column
  the schema does not have fails the read with a SourceReadError naming the file and
  the column (narrow the `pattern`, or split the source), rather than silently dropping
  data or changing the schema of a run half way. A value that cannot be cast to the
  discovered type fails the read the same way.
- Text formats keep amounts exact: a numeric column whose sampled values are all plain
  decimal literals (`types.infer_decimal`) is `decimal128(p, s)`; other numbers are
  float64. A later value that does not fit is never rounded: the read fails naming the
  file, the column, the row (from 1, after any header) and why.
- Glob semantics for `pattern`, relative to the prefix: `*` and `?` stay inside one
  path segment, `**/` crosses folders (`**/*.csv` matches at any depth).
- A prefix without a pattern selects every object with a data extension (`.csv`,
  `.tsv`, `.jsonl`, `.ndjson`, `.json`, `.parquet`, each optionally `.gz`); with an
  explicit `format`, every object. Folder markers and names starting with `_` or `.`
  (`_SUCCESS`, `.crc`) are skipped.
- `json` files hold a top-level array of objects or a sequence of objects; they are
  parsed element by element (one element may be at most 64 MiB), never whole.
- Before any parser sees them, bytes pass the checks of `datasources.limits`: JSON
  nesting depth (every jsonl line, every json element), values per json element,
  gzip inflation (ratio and cap), Parquet column chunk size (from the footer), and the
  deadline of the function the read runs in (stage `timeout`).
- https: one object fetched through `datasources.egress` (redirects on the same scheme,
  host and port only), at most 2 GiB streamed; a Parquet file over https is spooled to
  local disk first and may be at most 512 MiB. Plain http is accepted in local mode only.
- Resume tokens name the file, its ETag and the rows consumed in it; a file whose ETag
  changed during a run fails the read instead of yielding a mix of two versions.
  Objects added during a run whose keys sort before the current file are not read by
  that run.
- Incremental runs keep rows whose cursor is greater than the committed value; rows
  with a null cursor are read by a first run only.
"""

from datasources.connectors.file.connector import FileConnector

__all__ = ["FileConnector"]
