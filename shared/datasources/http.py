"""API Gateway proxy events in, the response envelope out.

`api_route` turns a route function into the body of a Lambda handler: it checks the
body size, authenticates the bearer token, validates the workspace id, the JSON body
and the query string into pydantic models, calls the route, serialises the response
model the route declares, and maps every domain exception to one status code.
Handlers stay a few lines long.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, TypeAdapter, ValidationError

from datasources.auth import Principal, authenticate
from datasources.config import get_settings
from datasources.errors import (
    BadRequest,
    DataSourcesError,
    PayloadTooLarge,
    ValidationFailed,
)
from datasources.limits import deadline_from
from datasources.models.common import WORKSPACE_ID_PATTERN, fullmatches
from datasources.observability import logger, metrics

BodyT = TypeVar("BodyT")


@dataclass
class ApiRequest(Generic[BodyT]):
    """What a route receives: the caller, the workspace, the validated input."""

    principal: Principal
    workspace_id: str
    input: BodyT
    path: dict[str, str]
    context: Any
    request_id: str

    def remaining_ms(self) -> int:
        if self.context is not None and hasattr(self.context, "get_remaining_time_in_millis"):
            return int(self.context.get_remaining_time_in_millis())
        return 29_000


@dataclass
class ApiResult:
    """What a route answers: `data` is of the response type its `api_route` declares."""

    data: BaseModel | list[BaseModel]
    message: str
    status_code: int = 200
    extra: dict[str, Any] | None = None


Route = Callable[[ApiRequest[Any]], ApiResult]


def api_route(
    *, response: Any, body: Any = None, query: Any = None
) -> Callable[[Route], Callable[[dict[str, Any], Any], dict[str, Any]]]:
    """Wrap a route: `body` or `query` is the pydantic model (or type) for its input,
    `response` the response model (or a list of one) its `data` is, as the OpenAPI
    document names it for the route's success status."""
    body_adapter = TypeAdapter(body) if body is not None else None
    query_adapter = TypeAdapter(query) if query is not None else None
    response_type = ResponseType(response)

    def decorate(route: Route) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
            started = time.perf_counter()
            request_id = str((event.get("requestContext") or {}).get("requestId") or "")
            try:
                result = _handle(event, context, request_id, route, body_adapter, query_adapter)
                response = envelope(
                    result.status_code,
                    "success",
                    result.message,
                    response_type.dump(result.data),
                    request_id,
                    result.extra,
                )
            except DataSourcesError as exc:
                response = error_response(exc, request_id)
            except Exception:  # noqa: BLE001 - the last line of defence
                # Unknown failures are logged with their traceback (no request body is
                # logged) and answered without internals.
                logger.exception("unhandled error")
                metrics.add_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1)
                response = envelope(
                    500,
                    "error",
                    f"internal error; quote request id {request_id or 'unknown'} to support",
                    None,
                    request_id,
                )
            logger.info(
                "request handled",
                extra={
                    "http_method": event.get("httpMethod"),
                    "resource": event.get("resource"),
                    "status_code": response["statusCode"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response

        run.__wrapped__ = route  # type: ignore[attr-defined]
        run.response_type = response_type  # type: ignore[attr-defined]
        return run

    return decorate


def _handle(
    event: dict[str, Any],
    context: Any,
    request_id: str,
    route: Route,
    body_adapter: TypeAdapter[Any] | None,
    query_adapter: TypeAdapter[Any] | None,
) -> ApiResult:
    settings = get_settings()
    raw_body = event.get("body") or ""
    if event.get("isBase64Encoded") and raw_body:
        import base64

        raw_body = base64.b64decode(raw_body).decode("utf-8", errors="replace")
    if len(raw_body.encode("utf-8")) > settings.max_body_bytes:
        raise PayloadTooLarge(f"request body is larger than {settings.max_body_bytes} bytes")
    principal = authenticate(event.get("headers"))
    path = {k: str(v) for k, v in (event.get("pathParameters") or {}).items()}
    workspace_id = path.get("workspace_id", "")
    if not fullmatches(WORKSPACE_ID_PATTERN, workspace_id):
        raise ValidationFailed(
            "workspace_id must be 1-64 letters, digits, '_' or '-', starting with a letter or digit",
            details={"errors": [{"loc": "workspace_id", "msg": "invalid workspace id"}]},
        )
    logger.append_keys(organization=principal.organization, workspace_id=workspace_id)
    value: Any = None
    if body_adapter is not None:
        payload = _json_body(raw_body)
        value = _validate(body_adapter, payload)
    elif query_adapter is not None:
        params = {
            k: v for k, v in (event.get("queryStringParameters") or {}).items() if v is not None
        }
        value = _validate(query_adapter, params)
    request = ApiRequest(principal, workspace_id, value, path, context, request_id)
    # Upstream reads and parses started by the route end before the function does.
    with deadline_from(request.remaining_ms()):
        return route(request)


class ResponseType:
    """The type a route declares for its `data`: a response model, or a list of one."""

    def __init__(self, declared: Any) -> None:
        many = typing.get_origin(declared) is list
        model = typing.get_args(declared)[0] if many else declared
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"a route's response is a model or a list of one, not {declared!r}")
        self.declared = declared
        self.model: type[BaseModel] = model
        self.many = many
        self._adapter: TypeAdapter[Any] = TypeAdapter(declared)

    def dump(self, data: Any) -> Any:
        """`data` as JSON values, if it is of the declared type (else TypeError).

        Only the declared models pass, never a dict of the same shape, so a route cannot
        answer a field the document does not name. Fields left unset at their default
        are left out (a sync with no sources); null ones are kept."""
        items = data if self.many and isinstance(data, list) else [data]
        if (self.many and not isinstance(data, list)) or not all(
            isinstance(item, self.model) for item in items
        ):
            # Named by type only: the data may hold a source's (masked) config.
            raise TypeError(
                f"the route answered {type(data).__name__}, not its declared response type"
            )
        return self._adapter.dump_python(data, mode="json", exclude_unset=True)


def _json_body(raw: str) -> Any:
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"request body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return payload


def _validate(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """A 422 listing each problem by location; input values are never echoed (secrets)."""
    errors = [
        {
            "loc": ".".join(str(part) for part in error["loc"]),
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0] if errors else {"loc": "", "msg": "invalid request"}
    where = f" at '{first['loc']}'" if first["loc"] else ""
    return ValidationFailed(
        f"request validation failed{where}: {first['msg']}", details={"errors": errors}
    )


def envelope(
    status_code: int,
    status: str,
    message: str,
    data: Any,
    request_id: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one response shape: {status, message, data} (+ e.g. next_token beside data)."""
    body: dict[str, Any] = {"status": status, "message": message, "data": data}
    if extra:
        body.update(extra)
    if status == "error" and request_id:
        body["request_id"] = request_id
    return {
        "statusCode": status_code,
        "headers": {
            "Content-Type": "application/json",
            "X-Request-Id": request_id,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
        "body": json.dumps(body, default=str),
    }


def error_response(exc: DataSourcesError, request_id: str) -> dict[str, Any]:
    if exc.status_code >= 500:
        logger.error("request failed", extra={"error_code": exc.code, "error": exc.message})
    else:
        logger.info(
            "request refused", extra={"error_code": exc.code, "status_code": exc.status_code}
        )
    data: dict[str, Any] = {"code": exc.code}
    if exc.details:
        data.update(exc.details)
    return envelope(exc.status_code, "error", exc.message, data, request_id)
