"""The MariaDB extraction floor: the server streams `SELECT <columns> FROM <table>` through
its own C client (`mariadb --quick --batch`) into a sink that discards.

`--quick` makes the client print each row as it arrives instead of buffering the
result; `--batch` prints tab-separated text. The sink counts the bytes and lines in
large chunks and keeps nothing, so the time is the server's and the C client's, as
psycopg's COPY is PostgreSQL's floor.

    python -m bench.mariadb_floor <database.table> <result.json>
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from bench.common import MY_HOST, MY_PASSWORD, MY_PORT, MY_USER, my_connect, write_json

CHUNK = 1 << 20


def client() -> str:
    for name in ("mariadb", "mysql"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("the MariaDB command-line client (mariadb) is not installed")


def stream_table(qualified: str) -> dict[str, object]:
    database, table = qualified.split(".", 1)
    conn = my_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                [database, table],
            )
            columns = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    select = ", ".join(f"`{c}`" for c in columns)
    argv = [client(), "--no-defaults", "--quick", "--batch", "--skip-column-names"]
    argv += ["-h", MY_HOST, "-P", str(MY_PORT), "-u", MY_USER, "-D", database]
    argv += ["-e", f"SELECT {select} FROM `{table}`"]
    # The password goes through the environment, not the command line others can read.
    env = {**os.environ, "MYSQL_PWD": MY_PASSWORD}
    total = lines = 0
    started = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        read = proc.stdout.read
        while chunk := read(CHUNK):
            total += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"mariadb client exited {proc.returncode}")
    return {"seconds": seconds, "bytes": total, "rows": lines, "client": os.path.basename(argv[0])}


def main() -> None:
    qualified, result_path = sys.argv[1], sys.argv[2]
    write_json(result_path, stream_table(qualified))


if __name__ == "__main__":
    main()
