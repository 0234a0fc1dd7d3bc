"""The extraction floor: `COPY (SELECT ...) TO STDOUT` through psycopg into a sink that discards.

No Python object is built per row, so this is what reading the table over the wire
costs at best; the product's sync and dlt are compared with it.

    python -m bench.copy_floor <schema.table> <result.json>
"""

from __future__ import annotations

import sys
import time

from bench.common import peak_rss_mb, pg_connect, write_json


def copy_table(qualified: str) -> dict[str, float | int]:
    from psycopg import sql

    schema, table = qualified.split(".", 1)
    with pg_connect() as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                [qualified],
            )
        ]
        query = sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(schema),
            sql.Identifier(table),
        )
        started = time.perf_counter()
        total = 0
        with conn.cursor() as cur:
            with cur.copy(query) as copy:
                for chunk in copy:
                    total += len(chunk)  # the sink: count the bytes, keep nothing
            seconds = time.perf_counter() - started
            rows = cur.rowcount  # from the server's "COPY n" tag
    return {"seconds": seconds, "bytes": total, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    qualified, result_path = sys.argv[1], sys.argv[2]
    write_json(result_path, copy_table(qualified))


if __name__ == "__main__":
    main()
