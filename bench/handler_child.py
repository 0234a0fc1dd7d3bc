"""One function in a fresh interpreter, loaded the way the Lambda Python runtime loads it.

    python -P bench/handler_child.py cold|warm|import <code_dir> <shared_dir|-> <event.json> <result.json> [calls]

The code directory goes first on sys.path (Lambda's /var/task) and shared/ second (the
layer's /opt/python); then `import app` and `app.handler(event, context)`, with the
local stack's fake Lambda context (local/context.py, standard library only).

- cold: the clock starts at the first line of this file and stops after the first
  answer, so it counts the handler module's imports, its module-level set-up and the
  first call (boto3 client creation included), like a Lambda INIT plus first INVOKE.
- warm: one untimed call, then `calls` timed calls in the same process.
- import: only `import app`, under `python -X importtime`; a marker on stderr separates
  the interpreter's own start-up imports from the handler's.

Standard library only until `import app`, and nothing heavy: this file is inside the
measurement. Run with -P so bench/ is not put on sys.path ahead of the code.
"""

import time

_T0 = time.perf_counter()

import copy  # noqa: E402 - after the clock starts, on purpose
import json  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

# The repository is on sys.path only while the context's module loads: the handler
# then imports from its code directory and the layer alone, as in Lambda.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from local.context import FakeLambdaContext  # noqa: E402

sys.path.pop()


def lambda_context(name: str) -> FakeLambdaContext:
    """An API function's context: 29 s (API Gateway's limit), 512 MB."""
    return FakeLambdaContext(name, timeout_seconds=29.0, memory_limit_in_mb=512)


def event_for_call(template: dict, n: int) -> dict:
    """A fresh copy of the sample; connect gets new source names so each call creates."""
    event = copy.deepcopy(template)
    body = event.get("body")
    if isinstance(body, str) and '"sources"' in body:
        data = json.loads(body)
        for source in data.get("sources", []):
            source["name"] = f"{source['name'][:80]}-{uuid.uuid4().hex[:10]}-{n}"
        event["body"] = json.dumps(data)
    if "requestContext" in event:
        event["requestContext"]["requestId"] = str(uuid.uuid4())
    return event


def status_of(response: object) -> object:
    if isinstance(response, dict):
        if "statusCode" in response:
            return response["statusCode"]
        if "batchItemFailures" in response:
            return "failures" if response["batchItemFailures"] else "ok"
    return None


def main() -> None:
    mode, code_dir, shared_dir, event_path, result_path = sys.argv[1:6]
    calls = int(sys.argv[6]) if len(sys.argv) > 6 else 200
    sys.path.insert(0, code_dir)
    if shared_dir != "-":
        sys.path.insert(1, shared_dir)
    template = json.loads(Path(event_path).read_text())
    name = Path(code_dir).name

    if mode == "import":
        sys.stderr.write("@@BENCH-IMPORT-START\n")
        sys.stderr.flush()
        started = time.perf_counter()
        import app

        Path(result_path).write_text(json.dumps({"import_s": time.perf_counter() - started}))
        return

    started_import = time.perf_counter()
    import app

    imported = time.perf_counter()
    first = app.handler(event_for_call(template, 0), lambda_context(name))
    answered = time.perf_counter()
    result: dict[str, object] = {
        "mode": mode,
        "status": status_of(first),
        "startup_s": started_import - _T0,
        "import_s": imported - started_import,
        "first_call_s": answered - imported,
        "cold_s": answered - _T0,
    }
    if mode == "warm":
        latencies = []
        statuses: dict[str, int] = {}
        for n in range(1, calls + 1):
            event = event_for_call(template, n)
            context = lambda_context(name)
            begin = time.perf_counter()
            response = app.handler(event, context)
            latencies.append(time.perf_counter() - begin)
            key = str(status_of(response))
            statuses[key] = statuses.get(key, 0) + 1
        result["latencies_s"] = latencies
        result["statuses"] = statuses
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
