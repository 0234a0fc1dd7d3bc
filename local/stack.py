"""`make dev`: the whole Data Sources API on this machine, without Docker or AWS.

    python -m local.stack        (PORT=3000, LOCAL_AWS_PORT=4566, JWT_SECRET=...)

PARAMETER_OVERRIDES="SyncTimeBudgetSeconds=2 JwtIssuer=me" sets template parameters,
as `sam deploy --parameter-overrides` would.

1. starts an emulated AWS endpoint (moto server) on 127.0.0.1:LOCAL_AWS_PORT;
2. creates template.yaml's table, bucket, queues and secret in it;
3. sets the functions' environment (as template.yaml declares it, pointed at the
   emulated endpoint, in local mode);
4. serves template.yaml's API routes on 127.0.0.1:PORT (real API Gateway events);
5. feeds the sync queue to the worker (real SQS events);
6. prints a token and ready-to-paste examples. Ctrl-C stops everything.

State lives in memory: it is gone when the stack stops.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from local import DEFAULT_STACK_NAME, FAKE_CREDENTIALS, LOCAL_REGION, REPO_ROOT
from local.cfn import Resolver, load_template
from local.functions import function_environment, functions, routes, sqs_functions
from local.gateway import LocalGateway
from local.moto_guard import serialise_dynamodb_writes
from local.provision import LocalResources, provision
from local.scheduler_loop import EventLog, SchedulerLoop
from local.tokens import DEV_JWT_SECRET, local_jwt_secret, mint_token
from local.worker_loop import WorkerLoop, schedules

HOST = "127.0.0.1"
DEMO_WORKSPACE = "ws_demo"
DEMO_ORG = "acme"
DEMO_USER = "user-1"
SAMPLE_KEY = f"uploads/{DEMO_ORG}/samples/orders.csv"
# A small file so the printed curl examples work on a fresh stack.
SAMPLE_CSV = """order_id,customer,amount,currency,status,updated_at
1001,Ada Lovelace,120.50,EUR,shipped,2025-01-03T10:15:00Z
1002,Alan Turing,75.00,GBP,pending,2025-01-04T08:00:00Z
1003,Grace Hopper,310.99,USD,shipped,2025-01-04T17:45:30Z
1004,Edsger Dijkstra,12.00,EUR,cancelled,2025-01-05T09:12:00Z
1005,Barbara Liskov,58.25,USD,delivered,2025-01-06T14:30:00Z
"""


@dataclass
class RunningStack:
    """Handles to the parts of a started stack, for `stop()`."""

    moto: ThreadedMotoServer
    gateway: LocalGateway
    worker: WorkerLoop
    resources: LocalResources
    aws_endpoint: str
    scheduler: SchedulerLoop | None = None
    event_log: EventLog | None = None

    def stop(self) -> None:
        self.gateway.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.event_log is not None:
            self.event_log.stop()
        self.worker.stop()
        self.moto.stop()


def _ensure_free(port: int, what: str, variable: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((HOST, port)) == 0:
            raise SystemExit(
                f"{what}: port {port} on {HOST} is already in use; set {variable} to another port"
            )


def start(
    *,
    port: int = 3000,
    aws_port: int = 4566,
    jwt_secret: str = DEV_JWT_SECRET,
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: dict[str, str] | None = None,
) -> RunningStack:
    """Start moto, provision, set the environment, start the gateway and the worker."""
    _ensure_free(aws_port, "emulated AWS endpoint", "LOCAL_AWS_PORT")
    _ensure_free(port, "API gateway", "PORT")
    # moto's server logs every request through werkzeug; the gateway logs what matters.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialise_dynamodb_writes()
    moto = ThreadedMotoServer(ip_address=HOST, port=aws_port, verbose=False)
    moto.start()
    endpoint = f"http://{HOST}:{aws_port}"
    try:
        template_path = REPO_ROOT / "template.yaml"
        template = load_template(template_path)
        resources = provision(
            template_path=template_path,
            stack_name=stack_name,
            endpoint_url=endpoint,
            secret_values={"JwtSigningSecret": jwt_secret},
            parameters=parameters,
        )
        os.environ.update(_shared_environment(template, resources, jwt_secret))
        # Functions only (the stack itself keeps `endpoint`): e.g. a fault-injecting proxy.
        if os.environ.get("LOCAL_FUNCTIONS_AWS_ENDPOINT_URL"):
            os.environ["AWS_ENDPOINT_URL"] = os.environ["LOCAL_FUNCTIONS_AWS_ENDPOINT_URL"]
        _seed_samples(resources, endpoint)
        stage = str(Resolver(template, parameters=parameters or {}).ref("StageName"))
        gateway = LocalGateway(
            routes(template), host=HOST, port=port, stage=stage, stack_name=stack_name
        )
        for failure in gateway.preload():
            print(
                f"[stack] handler not loaded yet (retried per request): {failure}", file=sys.stderr
            )
        gateway.start()
        worker = WorkerLoop(sqs_functions(template), resources, scheduled=schedules(template))
        # LOCAL_WORKER=off leaves the queues to a test that drives the worker itself.
        if os.environ.get("LOCAL_WORKER", "on").lower() not in {"off", "0", "false"}:
            worker.start()
        # Schedules fire at their real times; completion events are printed as they land.
        scheduler = SchedulerLoop(resources, group=resources.by_logical_id["SyncScheduleGroup"].ref)
        scheduler.start()
        event_log = EventLog(resources)
        event_log.start()
    except BaseException:
        moto.stop()
        raise
    return RunningStack(moto, gateway, worker, resources, endpoint, scheduler, event_log)


def parse_parameter_overrides(text: str, template: dict[str, Any]) -> dict[str, str]:
    """`Key=Value Key2=Value2`, as `sam deploy --parameter-overrides` takes them."""
    declared = template.get("Parameters") or {}
    overrides: dict[str, str] = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep or key not in declared:
            raise SystemExit(
                f"PARAMETER_OVERRIDES: {item!r} is not Key=Value with a template parameter "
                f"({', '.join(sorted(declared))})"
            )
        overrides[key] = value
    return overrides


def _shared_environment(
    template: dict[str, Any], resources: LocalResources, jwt_secret: str
) -> dict[str, str]:
    """One process runs every function, so their environments must agree: merge them."""
    merged: dict[str, str] = {}
    for logical_id in functions(template):
        env = function_environment(template, resources, logical_id, jwt_secret=jwt_secret)
        for name, value in env.items():
            if name in merged and merged[name] != value:
                raise SystemExit(
                    f"{logical_id} sets {name}={value!r}, another function {merged[name]!r}: "
                    "the local stack runs all functions in one process and needs one value"
                )
            merged[name] = value
    return merged


def _seed_samples(resources: LocalResources, endpoint: str) -> None:
    s3 = boto3.client(
        "s3",
        region_name=LOCAL_REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    s3.put_object(
        Bucket=resources.bucket_name,
        Key=SAMPLE_KEY,
        Body=SAMPLE_CSV.encode(),
        ContentType="text/csv",
    )


def banner(stack: RunningStack, port: int, jwt_secret: str) -> str:
    base = f"http://{HOST}:{port}/api/v1/data"
    token = mint_token(DEMO_USER, DEMO_ORG, "admin", secret=jwt_secret, ttl_seconds=12 * 3600)
    secret_note = (
        "the documented dev default (set JWT_SECRET to change it)"
        if jwt_secret == DEV_JWT_SECRET
        else "JWT_SECRET from the environment"
    )
    res = stack.resources
    sample_url = f"s3://{res.bucket_name}/{SAMPLE_KEY}"
    auth = '-H "Authorization: Bearer $TOKEN"'
    json_header = "-H 'Content-Type: application/json'"
    return f"""
Data Sources API: local stack (template.yaml on moto; no Docker, no AWS account)

  API base URL    {base}
  Swagger UI      http://{HOST}:{port}/docs   (spec at /openapi.yaml)
  Emulated AWS    {stack.aws_endpoint}   (DynamoDB, S3, SQS, Secrets Manager; in memory)
  Table / bucket  {res.table_name} / {res.bucket_name}
  Sync queue      {res.queue_url}
  Dead letters    {res.dlq_url}

  LOCAL MODE: connectors may reach loopback hosts (127.0.0.1, localhost), so databases
  running on this machine can be connected. A deployed stack refuses loopback and
  private addresses unless ALLOWED_CIDRS lists them.

Token: admin of organization "{DEMO_ORG}", user "{DEMO_USER}", valid 12 h, HS256 signed
with {secret_note}. Others: python -m local.tokens --sub U --org O --role member

  export TOKEN={token}
  export BASE={base}

Try it (a sample CSV is already at {sample_url}):

  curl -sS -X POST "$BASE/{DEMO_WORKSPACE}/connect" {auth} {json_header} \\
    -d '{{"scope":"user","sources":[{{"type":"file","name":"orders_csv","connection_config":{{"url":"{sample_url}"}}}}]}}'
  curl -sS "$BASE/{DEMO_WORKSPACE}/list?scope=user" {auth}
  curl -sS "$BASE/{DEMO_WORKSPACE}/schema?source_id=SOURCE_ID&scope=user" {auth}
  curl -sS -X POST "$BASE/{DEMO_WORKSPACE}/sync" {auth} {json_header} -d '{{"scope":"user"}}'
  curl -sS "$BASE/{DEMO_WORKSPACE}/sync/JOB_ID?scope=user" {auth}
  curl -sS -X POST "$BASE/{DEMO_WORKSPACE}/cleanup" {auth} {json_header} -d '{{"scope":"user"}}'

AWS CLI / boto3 against the emulated endpoint (any credentials work):

  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={LOCAL_REGION}
  aws --endpoint-url {stack.aws_endpoint} s3 ls s3://{res.bucket_name}/ --recursive
  aws --endpoint-url {stack.aws_endpoint} s3 cp ./my.csv s3://{res.bucket_name}/uploads/{DEMO_ORG}/my.csv
  python -c 'import boto3; print(boto3.client("s3", endpoint_url="{stack.aws_endpoint}").list_buckets())'

Triggers and events: schedules fire at their real times (POST $BASE/{DEMO_WORKSPACE}/schedule);
an upload under s3://{res.bucket_name}/uploads/{DEMO_ORG}/ starts its on_upload sources; every
ended job prints an "[event] Sync Job ..." line here, and reaches any rule you add:

  aws --endpoint-url {stack.aws_endpoint} events put-rule --name my-jobs --event-pattern '{{"source":["datasources"]}}'

Local stack ready. Ctrl-C stops it.
"""


def main() -> None:
    port = int(os.environ.get("PORT", "3000"))
    aws_port = int(os.environ.get("LOCAL_AWS_PORT", "4566"))
    jwt_secret = local_jwt_secret()
    parameters = parse_parameter_overrides(
        os.environ.get("PARAMETER_OVERRIDES", ""), load_template(REPO_ROOT / "template.yaml")
    )
    stack = start(port=port, aws_port=aws_port, jwt_secret=jwt_secret, parameters=parameters)
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(banner(stack, port, jwt_secret), flush=True)
    # wait() with a timeout keeps the main thread responsive to signals.
    while not stopping.wait(0.5):
        pass
    print("\nStopping the local stack ...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
