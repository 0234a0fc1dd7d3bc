"""The template's functions, and how the local stack runs them in-process.

`functions`, `routes` and `sqs_functions` list the AWS::Serverless::Function
resources with Globals applied and the events that invoke them; `function_environment`
is the environment Lambda would give one, pointed at the local resources;
`load_handler` imports a handler the way the runtime does; `lambda_context` is the
context of one invocation.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local import FAKE_CREDENTIALS, LOCAL_REGION, REPO_ROOT
from local.cfn import NO_VALUE, Resolver, scalar_to_string, split_get_att
from local.context import FakeLambdaContext
from local.provision import LocalResources
from local.tokens import DEV_JWT_SECRET

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class FunctionSpec:
    """What the local stack needs to run one AWS::Serverless::Function in-process."""

    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    memory_size: int


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    logical_id: str
    code_uri: str
    handler: str
    timeout: int = 3
    memory_size: int = 128


@dataclass(frozen=True)
class SqsTrigger:
    logical_id: str
    code_uri: str
    handler: str
    queue_logical_id: str
    batch_size: int
    report_batch_item_failures: bool
    timeout: int
    memory_size: int
    # MaximumBatchingWindowInSeconds: how long the poller gathers messages for one batch.
    batching_window: int = 0


def functions(template: Mapping[str, Any]) -> dict[str, FunctionSpec]:
    """Every serverless function, with Globals applied."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    params = Resolver(template)
    specs: dict[str, FunctionSpec] = {}
    for lid, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}

        def setting(key: str, default: Any, props: Mapping[str, Any] = props) -> Any:
            return params.resolve(props.get(key, globals_.get(key, default)))

        specs[lid] = FunctionSpec(
            logical_id=lid,
            code_uri=str(props["CodeUri"]).rstrip("/"),
            handler=str(setting("Handler", "app.handler")),
            timeout=int(setting("Timeout", 3)),
            memory_size=int(setting("MemorySize", 128)),
        )
    return specs


def _events(template: Mapping[str, Any], lid: str, kind: str) -> Iterable[dict[str, Any]]:
    props = template["Resources"][lid].get("Properties") or {}
    for event in (props.get("Events") or {}).values():
        if event.get("Type") == kind:
            yield event.get("Properties") or {}


def routes(template: Mapping[str, Any]) -> list[Route]:
    """The API routes the template declares (method, path template, function)."""
    found = []
    for lid, spec in functions(template).items():
        for event in _events(template, lid, "Api"):
            found.append(
                Route(
                    method=str(event["Method"]).upper(),
                    path=str(event["Path"]),
                    logical_id=lid,
                    code_uri=spec.code_uri,
                    handler=spec.handler,
                    timeout=spec.timeout,
                    memory_size=spec.memory_size,
                )
            )
    return found


def sqs_functions(template: Mapping[str, Any]) -> list[SqsTrigger]:
    """The functions an SQS queue triggers, with their event source settings."""
    found = []
    for lid, spec in functions(template).items():
        for event in _events(template, lid, "SQS"):
            queue = event["Queue"]
            if isinstance(queue, dict) and "Fn::GetAtt" in queue:
                queue_lid = split_get_att(queue["Fn::GetAtt"])[0]
            elif isinstance(queue, dict) and "Ref" in queue:
                queue_lid = str(queue["Ref"])
            else:
                raise ValueError(f"{lid}: SQS event Queue must reference a queue in the template")
            found.append(
                SqsTrigger(
                    logical_id=lid,
                    code_uri=spec.code_uri,
                    handler=spec.handler,
                    queue_logical_id=queue_lid,
                    batch_size=int(event.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (event.get("FunctionResponseTypes") or []),
                    timeout=spec.timeout,
                    memory_size=spec.memory_size,
                    batching_window=int(event.get("MaximumBatchingWindowInSeconds", 0)),
                )
            )
    return found


def function_environment(
    template: Mapping[str, Any],
    resources: LocalResources,
    logical_id: str,
    *,
    overrides: Mapping[str, str] | None = None,
    jwt_secret: str = DEV_JWT_SECRET,
) -> dict[str, str]:
    """The function's environment as Lambda would set it, pointed at the local resources.

    Globals' variables, then the function's own, with every reference resolved; then
    the local-mode settings; then `overrides`.
    """
    resolver = resources.resolver(template)
    globals_env = (
        ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    ).get("Variables") or {}
    props = template["Resources"][logical_id].get("Properties") or {}
    own_env = (props.get("Environment") or {}).get("Variables") or {}
    env: dict[str, str] = {}
    for name, value in {**globals_env, **own_env}.items():
        resolved = resolver.resolve(value)
        if resolved is not NO_VALUE:
            env[name] = scalar_to_string(resolved)
    env.update(
        {
            "LOCAL_MODE": "true",
            "JWT_SECRET": jwt_secret,
            # No X-Ray daemon here: the tracer would only warn on every segment.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_REGION": LOCAL_REGION,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            **FAKE_CREDENTIALS,
        }
    )
    if resources.endpoint_url:
        # boto3 sends every service to this endpoint (the moto server).
        env["AWS_ENDPOINT_URL"] = resources.endpoint_url
    env.update(overrides or {})
    return env


_LOAD_LOCK = threading.RLock()


def load_handler(
    code_uri: str, handler: str = "app.handler", *, root: str | Path | None = None
) -> Handler:
    """Import `<code_uri>/app.py` under a unique module name and return its handler.

    Seven functions each have an `app.py`; importing them by file path under names
    like `functions_connect_sources_app` keeps them from replacing one another in
    `sys.modules`. `shared/` goes on `sys.path`, as the layer's `python/` is in Lambda.
    """
    base = Path(root) if root is not None else REPO_ROOT
    shared = str(base / "shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    module_file, _, function_name = handler.rpartition(".")
    path = base / code_uri / f"{module_file.replace('.', '/')}.py"
    module_name = "_".join([*Path(code_uri).parts, *module_file.split(".")])
    # One import at a time: a second thread must not see the module half-initialised.
    with _LOAD_LOCK:
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None or not path.exists():
                raise FileNotFoundError(f"no handler module at {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                # A failed cold start must not leave a half-imported module behind.
                del sys.modules[module_name]
                raise
    function = getattr(module, function_name)
    if not callable(function):
        raise TypeError(f"{path}:{function_name} is not callable")
    return function


def lambda_context(
    stack_name: str, logical_id: str, timeout: float, memory: int
) -> FakeLambdaContext:
    """A fresh context for one invocation of `logical_id`."""
    return FakeLambdaContext(
        function_name=f"{stack_name}-{logical_id}",
        timeout_seconds=timeout,
        memory_limit_in_mb=memory,
    )
