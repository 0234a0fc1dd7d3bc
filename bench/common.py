"""Settings and small helpers shared by the orchestrator and the product-side legs.

Standard library only: the legs import this before they start their clocks.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
EVENTS_DIR = ROOT / "events"
RESULTS_PATH = BENCH_DIR / "results.json"

# The local PostgreSQL that scripts/databases.sh starts (same defaults as the tests).
PG_HOST = os.environ.get("DS_TEST_DB_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DS_TEST_PG_PORT", "55432"))
PG_USER = os.environ.get("DS_TEST_DB_USER", "ds_test")
PG_PASSWORD = os.environ.get("DS_TEST_DB_PASSWORD", "ds_test_pw")
PG_DB = os.environ.get("DS_TEST_DB_NAME", "ds_test")
PG_SCHEMA = "bench"

# The local MariaDB of scripts/databases.sh. The bench tables live in a database of
# their own (MySQL's "schema"), named apart from the tests' databases.
MY_HOST = os.environ.get("DS_TEST_DB_HOST", "127.0.0.1")
MY_PORT = int(os.environ.get("DS_TEST_MYSQL_PORT", "53306"))
MY_USER = PG_USER
MY_PASSWORD = PG_PASSWORD
MY_DB = "ds_bench"

JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
ORG, SUB, WORKSPACE = "acme", "user-1", "ws_demo"

# The functions the template declares, as (directory, logical id). Connect, list,
# cleanup and status are the light ones the cold-start target applies to.
FUNCTIONS: dict[str, str] = {
    "connect_sources": "ConnectSourcesFunction",
    "list_sources": "ListSourcesFunction",
    "sync_sources": "SyncSourcesFunction",
    "sync_status": "SyncStatusFunction",
    "cleanup_sources": "CleanupSourcesFunction",
    "test_connection": "TestConnectionFunction",
    "get_schema": "GetSchemaFunction",
    "sync_worker": "SyncWorkerFunction",
}
LIGHT_FUNCTIONS = ("connect_sources", "list_sources", "cleanup_sources", "sync_status")


def pg_dsn(driver: str = "postgresql") -> str:
    return f"{driver}://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{PG_PORT}/{PG_DB}"


def pg_connect() -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        password=PG_PASSWORD,
        dbname=PG_DB,
        autocommit=True,
        connect_timeout=5,
    )


def my_dsn(driver: str = "mysql") -> str:
    return f"{driver}://{MY_USER}:{MY_PASSWORD}@{MY_HOST}:{MY_PORT}/{MY_DB}"


def my_connect(database: str | None = MY_DB) -> Any:
    import pymysql

    return pymysql.connect(
        host=MY_HOST,
        port=MY_PORT,
        user=MY_USER,
        password=MY_PASSWORD,
        database=database,
        autocommit=True,
        connect_timeout=5,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB; ru_maxrss if /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


@dataclass
class LegResult:
    """What a subprocess leg reported, plus the parent's view of it."""

    data: dict[str, Any]
    wall_s: float
    stderr_tail: str


class LegFailed(RuntimeError):
    pass


def run_leg(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    result_path: Path,
    stdout_path: Path | None = None,
) -> LegResult:
    """Run one leg in a fresh process; it writes its findings as JSON to `result_path`.

    Legs write results to a file, not stdout, because the product's Powertools logger
    prints JSON lines to stdout on every request.
    """
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(stdout_path or os.devnull, "wb") as out:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    wall = time.perf_counter() - started
    tail = proc.stderr.decode("utf-8", "replace")[-3000:]
    if proc.returncode != 0 or not result_path.exists():
        raise LegFailed(f"{' '.join(argv[1:3])} exited {proc.returncode}:\n{tail}")
    return LegResult(json.loads(result_path.read_text()), wall, tail)


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the final table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
