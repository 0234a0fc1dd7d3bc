"""The benchmark tables: in the local PostgreSQL, built with generate_series, and the
same shapes and values in the local MariaDB, built from its SEQUENCE engine.

A table is reused when its comment carries the current definition's fingerprint and
it holds the expected number of rows, so repeated runs skip the build.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bench.common import MY_DB, PG_SCHEMA, log, my_connect, pg_connect

NARROW_COLUMNS: list[tuple[str, str, str]] = [
    # (name, type, generator over g = 1..N)
    ("id", "bigint NOT NULL", "g"),
    ("updated_at", "timestamptz", "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'"),
    ("amount", "numeric(12,2)", "round(((g * 7919) % 10000000)::numeric / 100, 2)"),
    ("label", "text", "'item-' || (g % 10007)"),
    ("active", "boolean", "g % 3 <> 0"),
]


def _wide_columns() -> list[tuple[str, str, str]]:
    """id plus 39 columns cycling through nine common types, a few percent NULLs each."""
    kinds = [
        ("integer", "((g * {k}) % 1000003)::integer"),
        ("bigint", "g::bigint * 1000 + {k}"),
        ("double precision", "g * 0.37 + {k}"),
        ("numeric(12,2)", "round(((g * {k}) % 10000000)::numeric / 100, 2)"),
        ("text", "'text-{k}-' || (g % 50021)"),
        ("varchar(32)", "'name-' || ((g + {k}) % 5003)"),
        ("boolean", "(g + {k}) % 2 = 0"),
        ("timestamptz", "timestamptz '2023-06-01 00:00:00+00' + (g * {k}) * interval '1 second'"),
        ("date", "date '2015-01-01' + ((g + {k}) % 3650)::integer"),
    ]
    columns = [("id", "bigint NOT NULL", "g")]
    for k in range(1, 40):
        kind, expr = kinds[(k - 1) % len(kinds)]
        value = expr.format(k=k)
        # Every fifth column has NULLs, as real wide tables do.
        if k % 5 == 0:
            value = f"CASE WHEN (g + {k}) % 23 = 0 THEN NULL ELSE {value} END"
        columns.append((f"c{k:02d}_{kind.split('(')[0].split()[0]}", kind, value))
    return columns


WIDE_COLUMNS = _wide_columns()

# The MariaDB twin of each PostgreSQL type and generator: same names, same values.
# timestamptz becomes TIMESTAMP (stored as UTC, like timestamptz), text stays text.
_MY_KINDS: dict[str, tuple[str, str]] = {
    "integer": ("int", "((g * {k}) % 1000003)"),
    "bigint": ("bigint", "g * 1000 + {k}"),
    "double precision": ("double", "g * 0.37 + {k}"),
    "numeric(12,2)": ("decimal(12,2)", "round(((g * {k}) % 10000000) / 100, 2)"),
    "text": ("text", "concat('text-{k}-', g % 50021)"),
    "varchar(32)": ("varchar(32)", "concat('name-', (g + {k}) % 5003)"),
    "boolean": ("boolean", "(g + {k}) % 2 = 0"),
    "timestamptz": (
        "timestamp(6) NULL",
        "timestamp'2023-06-01 00:00:00' + interval (g * {k}) second",
    ),
    "date": ("date", "date'2015-01-01' + interval ((g + {k}) % 3650) day"),
}

MY_NARROW_COLUMNS: list[tuple[str, str, str]] = [
    ("id", "bigint NOT NULL", "g"),
    ("updated_at", "timestamp(6) NULL", "timestamp'2024-01-01 00:00:00' + interval g second"),
    ("amount", "decimal(12,2)", "round(((g * 7919) % 10000000) / 100, 2)"),
    ("label", "text", "concat('item-', g % 10007)"),
    ("active", "boolean", "g % 3 <> 0"),
]


def _my_wide_columns() -> list[tuple[str, str, str]]:
    columns = [("id", "bigint NOT NULL", "g")]
    for (name, kind, _), k in zip(WIDE_COLUMNS[1:], range(1, 40), strict=True):
        my_kind, expr = _MY_KINDS[kind]
        value = expr.format(k=k)
        if k % 5 == 0:
            value = f"CASE WHEN (g + {k}) % 23 = 0 THEN NULL ELSE {value} END"
        columns.append((name, my_kind, value))
    return columns


MY_WIDE_COLUMNS = _my_wide_columns()


@dataclass(frozen=True)
class BenchTable:
    name: str
    rows: int
    columns: list[tuple[str, str, str]]
    engine: str = "postgresql"

    @property
    def qualified(self) -> str:
        return f"{MY_DB if self.engine == 'mariadb' else PG_SCHEMA}.{self.name}"

    @property
    def key(self) -> str:
        """The table's name in results and target ids (PostgreSQL's keep their bare name)."""
        return f"mariadb_{self.name}" if self.engine == "mariadb" else self.name

    @property
    def column_names(self) -> list[str]:
        return [c[0] for c in self.columns]

    @property
    def fingerprint(self) -> str:
        spec = repr((self.rows, self.columns)).encode()
        return "datasources-bench " + hashlib.sha256(spec).hexdigest()[:16]


NARROW_1M = BenchTable("narrow_1m", 1_000_000, NARROW_COLUMNS)
NARROW_100K = BenchTable("narrow_100k", 100_000, NARROW_COLUMNS)
WIDE_200K = BenchTable("wide_200k", 200_000, WIDE_COLUMNS)
ALL_TABLES = (NARROW_1M, NARROW_100K, WIDE_200K)
MY_NARROW_1M = BenchTable("narrow_1m", 1_000_000, MY_NARROW_COLUMNS, "mariadb")
MY_WIDE_200K = BenchTable("wide_200k", 200_000, MY_WIDE_COLUMNS, "mariadb")
MY_TABLES = (MY_NARROW_1M, MY_WIDE_200K)


def ensure_tables(
    tables: tuple[BenchTable, ...] = ALL_TABLES, my_tables: tuple[BenchTable, ...] = MY_TABLES
) -> dict[str, dict[str, object]]:
    """Create (or reuse) every table; returns per-table facts for the results file."""
    facts: dict[str, dict[str, object]] = {}
    if my_tables:
        facts.update(ensure_my_tables(my_tables))
    if not tables:
        return facts
    with pg_connect() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        for table in tables:
            reused = _is_current(conn, table)
            if not reused:
                _build(conn, table)
            size = conn.execute(
                "SELECT pg_total_relation_size(%s::regclass)", [table.qualified]
            ).fetchone()
            facts[table.name] = {
                "rows": table.rows,
                "columns": len(table.columns),
                "reused": reused,
                "relation_bytes": int(size[0]) if size else None,
            }
    return facts


def _is_current(conn: object, table: BenchTable) -> bool:
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT obj_description(to_regclass(%s), 'pg_class')", [table.qualified]
    ).fetchone()
    if not row or row[0] != table.fingerprint:
        return False
    count = conn.execute(f"SELECT count(*) FROM {table.qualified}").fetchone()  # type: ignore[attr-defined]
    return bool(count and count[0] == table.rows)


def _build(conn: object, table: BenchTable) -> None:
    log(f"building {table.qualified} ({table.rows:,} rows, {len(table.columns)} columns)")
    ddl = ", ".join(f"{name} {kind}" for name, kind, _ in table.columns)
    select = ", ".join(expr for _, _, expr in table.columns)
    execute = conn.execute  # type: ignore[attr-defined]
    execute(f"DROP TABLE IF EXISTS {table.qualified}")
    execute(f"CREATE TABLE {table.qualified} ({ddl})")
    execute(
        f"INSERT INTO {table.qualified} SELECT {select} FROM generate_series(1::bigint, {table.rows}) g"
    )
    # The key after the load is faster than maintaining it row by row; VACUUM sets the
    # visibility map and ANALYZE the estimates, as on a settled production table.
    execute(f"ALTER TABLE {table.qualified} ADD PRIMARY KEY (id)")
    execute(f"VACUUM (ANALYZE) {table.qualified}")
    execute(f"COMMENT ON TABLE {table.qualified} IS '{table.fingerprint}'")


def ensure_my_tables(tables: tuple[BenchTable, ...]) -> dict[str, dict[str, object]]:
    facts: dict[str, dict[str, object]] = {}
    conn = my_connect(database=None)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {MY_DB}")
            cur.execute(f"USE {MY_DB}")
            # The generators' timestamps are UTC, as PostgreSQL's timestamptz literals.
            cur.execute("SET time_zone = '+00:00'")
            for table in tables:
                reused = _my_is_current(cur, table)
                if not reused:
                    _my_build(cur, table)
                cur.execute(
                    "SELECT data_length + index_length FROM information_schema.tables "
                    "WHERE table_schema = %s AND table_name = %s",
                    [MY_DB, table.name],
                )
                size = cur.fetchone()
                facts[table.key] = {
                    "rows": table.rows,
                    "columns": len(table.columns),
                    "reused": reused,
                    "relation_bytes": int(size[0]) if size else None,
                }
    finally:
        conn.close()
    return facts


def _my_is_current(cur: object, table: BenchTable) -> bool:
    execute = cur.execute  # type: ignore[attr-defined]
    execute(
        "SELECT table_comment FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name = %s",
        [MY_DB, table.name],
    )
    row = cur.fetchone()  # type: ignore[attr-defined]
    if not row or row[0] != table.fingerprint:
        return False
    execute(f"SELECT count(*) FROM {table.qualified}")
    count = cur.fetchone()  # type: ignore[attr-defined]
    return bool(count and count[0] == table.rows)


def _my_build(cur: object, table: BenchTable) -> None:
    log(f"building MariaDB {table.qualified} ({table.rows:,} rows, {len(table.columns)} columns)")
    execute = cur.execute  # type: ignore[attr-defined]
    ddl = ", ".join(f"{name} {kind}" for name, kind, _ in table.columns)
    names = ", ".join(name for name, _, _ in table.columns)
    select = ", ".join(expr for _, _, expr in table.columns)
    execute(f"DROP TABLE IF EXISTS {table.qualified}")
    # Rows arrive in key order, so the clustered key is cheap to keep during the load.
    execute(f"CREATE TABLE {table.qualified} ({ddl}, PRIMARY KEY (id)) ENGINE=InnoDB")
    execute(
        f"INSERT INTO {table.qualified} ({names}) SELECT {select} "
        f"FROM (SELECT seq AS g FROM seq_1_to_{table.rows}) AS s"
    )
    execute(f"ANALYZE TABLE {table.qualified}")
    cur.fetchall()  # type: ignore[attr-defined]
    execute(f"ALTER TABLE {table.qualified} COMMENT = '{table.fingerprint}'")
