"""One product sync in a fresh process: PostgreSQL or MariaDB table → landing bucket
(moto server).

    python -m bench.sync_child <engine> <schema.table> <rows> <batch_size> <result.json> \
        [profile.out]

The environment is the sync function's, from template.yaml, pointed at the moto server.
The source is connected through the connect handler, then the sync handler runs the
real engine inline (a time budget longer than the sync, so it never chains to SQS).
The clock covers the sync handler's call only. Loading the handler module is its init
(Lambda's, once per execution environment: imports, the drivers, Arrow and the AWS
clients, see services.syncs.preload), which stays outside the clock as `import dlt` does in
dlt's leg; section 1 measures that init. Peak RSS (VmHWM) is the whole process's,
and the moto server is another process, so the landing bucket's bytes are not in it.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

from bench.common import JWT_SECRET, ORG, ROOT, SUB, current_rss_mb, peak_rss_mb, write_json
from local.context import FakeLambdaContext

# A Lambda's longest run is 15 min; the bench sync must finish well inside it.
TIMEOUT_SECONDS = 900


def context() -> FakeLambdaContext:
    return FakeLambdaContext("bench-sync", TIMEOUT_SECONDS, memory_limit_in_mb=10240)


def api_event(function_dir: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / f"{function_dir}.json").read_text())
    event["headers"] = {**(event.get("headers") or {}), "Authorization": f"Bearer {token}"}
    event["body"] = json.dumps(body)
    event.setdefault("requestContext", {})["requestId"] = str(uuid.uuid4())
    return event


def main() -> None:
    engine, qualified, rows, batch_size, result_path = sys.argv[1:6]
    profile_path = sys.argv[6] if len(sys.argv) > 6 else None
    from local.tokens import mint_token

    token = mint_token(SUB, ORG, secret=JWT_SECRET)
    sys.path.insert(0, str(ROOT / "shared"))
    from bench.events import local_database_config
    from local.functions import load_handler

    _report_unit_failures()
    connect = load_handler("functions/connect_sources")
    sync = load_handler("functions/sync_sources")
    schema, table = qualified.split(".", 1)
    if engine == "mariadb":
        # A MySQL source is scoped to its database; its streams are bare table names.
        config = {**local_database_config(engine), "tables": [table]}
        stream = table
    else:
        config = {**local_database_config(engine), "schemas": [schema], "tables": [table]}
        stream = qualified
    connected = connect(
        api_event(
            "connect_sources",
            token,
            {
                "scope": "user",
                "sources": [
                    {
                        "type": "database",
                        "name": f"bench-{table}-{uuid.uuid4().hex[:12]}",
                        "connection_config": config,
                    }
                ],
            },
        ),
        context(),
    )
    if connected["statusCode"] != 201:
        raise SystemExit(f"connect failed: {connected['body'][:500]}")
    source_id = json.loads(connected["body"])["data"]["connected_sources"][0]["id"]
    # Full refresh: a complete read of the table, as COPY and dlt's default load do.
    body = {
        "scope": "user",
        "source_ids": [source_id],
        "sync_options": {
            "incremental": False,
            "batch_size": int(batch_size),
            "format": "parquet",
            "streams": [stream],
        },
    }
    event = api_event("sync_sources", token, body)
    rss_before = current_rss_mb()
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    response = sync(event, context())
    seconds = time.perf_counter() - started
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    answer = json.loads(response["body"])
    job = answer.get("data") or {}
    if response["statusCode"] != 200 or job.get("status") != "completed":
        raise SystemExit(
            f"sync did not complete: {response['statusCode']} {response['body'][:800]}"
        )
    streams = [s for src in job.get("sources", []) for s in src.get("streams", [])]
    write_json(
        result_path,
        {
            "seconds": seconds,
            "rows": int(job.get("records_processed") or 0),
            "expected_rows": int(rows),
            "parts": sum(int(s.get("parts") or 0) for s in streams),
            "parquet_bytes": sum(int(s.get("bytes") or 0) for s in streams),
            "batch_size": int(batch_size),
            "rss_before_sync_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
            "job_id": job.get("job_id"),
        },
    )


def _report_unit_failures() -> None:
    """Print the traceback of any unit failure: the engine keeps only the exception's kind."""
    import traceback

    from datasources.sync import engine

    describe = engine._describe

    def describe_and_print(exc: BaseException) -> str:
        traceback.print_exception(exc, file=sys.stderr)
        return describe(exc)

    engine._describe = describe_and_print  # diagnostics only; behaviour is unchanged


if __name__ == "__main__":
    main()
