"""dlt's leg: load one PostgreSQL or MariaDB table into local Parquet files with `sql_table`.

Runs in the separate bench venv (dlt and its dependencies must not touch the product's
pins), from the repository root:

    .venv-bench/bin/python -m bench.dlt_leg <engine> <schema.table> <backend> <chunk_size> \
        <result.json> [max_rows]

`engine` is `postgresql` or `mariadb`; `backend` is `connectorx` (dlt's fastest),
`pyarrow`, or `sqlalchemy` (dlt's default: Python rows). `max_rows` stops the load
after that many rows (whole chunks), for a backend too slow to read a whole table
within the bench's time. The clock covers the whole `pipeline.run` (extract,
normalize, load), which is what a user waits for.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import my_dsn, peak_rss_mb, pg_dsn, write_json

# No telemetry, no network: only the loopback database is reached.
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")


def parquet_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*.parquet") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run(
    engine: str, qualified: str, backend: str, chunk_size: int, max_rows: int | None = None
) -> dict[str, object]:
    schema, table = qualified.split(".", 1)
    if max_rows:
        chunk_size = min(chunk_size, max_rows)
    work = Path(tempfile.mkdtemp(prefix="dlt-bench-"))
    try:
        started_import = time.perf_counter()
        import dlt
        from dlt.sources.sql_database import sql_table

        import_s = time.perf_counter() - started_import
        started = time.perf_counter()
        # SQLAlchemy reflects through psycopg 3 or PyMySQL; ConnectorX gets the plain
        # URL (postgresql://, mysql://) from dlt.
        credentials = (
            my_dsn("mysql+pymysql") if engine == "mariadb" else pg_dsn("postgresql+psycopg")
        )
        source = sql_table(
            credentials=credentials,
            schema=schema,
            table=table,
            backend=backend,
            chunk_size=chunk_size,
            reflection_level="full",
        )
        if max_rows:
            source.add_limit(-(-max_rows // chunk_size))
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{table}_{backend}",
            pipelines_dir=str(work / "pipelines"),
            destination=dlt.destinations.filesystem(bucket_url=(work / "out").as_uri()),
            dataset_name="bench",
            progress="log" if os.environ.get("BENCH_VERBOSE") else None,
        )
        info = pipeline.run(source, loader_file_format="parquet", write_disposition="replace")
        seconds = time.perf_counter() - started
        info.raise_on_failed_jobs()
        row_counts = pipeline.last_trace.last_normalize_info.row_counts
        files, size = parquet_bytes(work / "out")
        import connectorx

        return {
            "seconds": seconds,
            "import_s": import_s,
            "rows": int(row_counts.get(table, 0)),
            "parquet_files": files,
            "parquet_bytes": size,
            "backend": backend,
            "engine": engine,
            "chunk_size": chunk_size,
            "dlt_version": dlt.__version__,
            "connectorx_version": connectorx.__version__,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    engine, qualified, backend, chunk_size, result_path = sys.argv[1:6]
    max_rows = int(sys.argv[6]) if len(sys.argv) > 6 else None
    write_json(result_path, run(engine, qualified, backend, int(chunk_size), max_rows))


if __name__ == "__main__":
    main()
