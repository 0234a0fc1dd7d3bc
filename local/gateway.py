"""A local stand-in for API Gateway (REST): template.yaml's routes, real proxy events.

Each request becomes the event API Gateway would send the function (REST proxy
integration, payload format 1.0), the handler runs in-process with a Lambda-like
context, and its result becomes the HTTP response. What API Gateway answers by itself
is mirrored too: 404 for an unknown route (template.yaml maps API Gateway's
"Missing Authentication Token" to a 404), 413 past the 10 MB payload limit, 504 past
the integration timeout, 502 for a failed or malformed function result. Those use the
API's JSON envelope, as the template's GatewayResponses do.

Besides the API it serves `GET /openapi.yaml`, Swagger UI at `GET /docs` (assets from
the `swagger-ui-py` package, so it works offline) and `GET /_local/health`.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local import DEFAULT_STACK_NAME, LOCAL_ACCOUNT_ID, REPO_ROOT
from local.functions import Handler, Route, lambda_context, load_handler

# API Gateway's payload limit for REST APIs.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# Lambda's limit for a synchronous invocation's response: past it the invoke fails
# and API Gateway answers 502, so the local stack does the same.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
# API Gateway's maximum integration timeout for REST APIs.
INTEGRATION_TIMEOUT_SECONDS = 29.0
LOCAL_API_ID = "localapi01"

# Swagger UI files served at /docs/<name>; anything else there is a 404.
SWAGGER_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "application/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Data Sources API (local)</title>
  <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="/docs/index.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "/openapi.yaml",
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      });
    };
  </script>
</body>
</html>
"""


def envelope(message: str, data: Any = None) -> dict[str, Any]:
    """The API's error envelope, for answers the gateway gives itself."""
    return {"status": "error", "message": message, "data": data}


def swagger_ui_dir() -> Path | None:
    """Where the pinned `swagger-ui-py` package keeps Swagger UI's dist files."""
    # find_spec locates the package without importing it (and its web-framework glue).
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if static.is_dir() else None


@dataclass(frozen=True)
class CompiledRoute:
    route: Route
    pattern: re.Pattern[str]


def compile_route(route: Route) -> CompiledRoute:
    """`/a/{id}/b` matches one path segment per parameter; `{proxy+}` matches the rest."""
    regex = ""
    for part in re.split(r"(\{[^}]+\})", route.path.rstrip("/")):
        if part.startswith("{") and part.endswith("+}"):
            regex += f"(?P<{part[1:-2]}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            regex += re.escape(part)
    # API Gateway ignores a trailing slash.
    return CompiledRoute(route, re.compile(f"^{regex}/?$"))


def build_proxy_event(
    *,
    route: Route,
    method: str,
    raw_path: str,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
    path_parameters: dict[str, str],
    stage: str,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The API Gateway REST proxy event (payload format 1.0) for one request."""
    split = urlsplit(raw_path)
    header_map: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        header_map[name] = value
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = value
        multi_query.setdefault(name, []).append(value)

    text_body: str | None = None
    is_base64 = False
    if body:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            text_body = base64.b64encode(body).decode("ascii")
            is_base64 = True

    now = time.time()
    request_id = str(uuid.uuid4())
    path = unquote(split.path)
    lower = {name.lower(): value for name, value in header_map.items()}
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": header_map or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": LOCAL_API_ID,
            "domainName": lower.get("host", "127.0.0.1"),
            "domainPrefix": lower.get("host", "127.0.0.1").split(".")[0],
            "extendedRequestId": request_id,
            "httpMethod": method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": source_ip,
                "user": None,
                "userAgent": lower.get("user-agent"),
                "userArn": None,
            },
            # requestContext.path carries the stage, event.path does not.
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": "local",
            "resourcePath": route.path,
            "stage": stage,
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


class _Invocation:
    """Runs a handler in its own thread so the gateway can time it out."""

    def __init__(self, handler: Handler, event: dict[str, Any], context: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(handler, event, context), daemon=True
        )

    def _run(self, handler: Handler, event: dict[str, Any], context: Any) -> None:
        try:
            self.result = handler(event, context)
        except BaseException as error:  # noqa: BLE001 - reported as a 502, like Lambda
            self.error = error

    def wait(self, timeout: float) -> bool:
        self._thread.start()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def release_when_done(self, lock: threading.Lock) -> None:
        self._thread.join()
        lock.release()


class LocalGateway:
    """Serves template.yaml's API routes on a loopback port."""

    def __init__(
        self,
        routes: list[Route],
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        stage: str = "v1",
        stack_name: str = DEFAULT_STACK_NAME,
        openapi_path: Path | None = None,
        loader: Callable[[str, str], Handler] = load_handler,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.routes = [compile_route(route) for route in routes]
        self.stage = stage
        self.stack_name = stack_name
        self.openapi_path = openapi_path or REPO_ROOT / "openapi.yaml"
        self.loader = loader
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        # One invocation at a time per function, as in one Lambda execution
        # environment: handler modules keep per-invocation state (logger keys, metrics).
        self._locks = {route.logical_id: threading.Lock() for route in routes}
        self._host = host
        self._server = ThreadingHTTPServer((host, port), self._request_handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def preload(self) -> list[str]:
        """Import every handler now (cold starts up front); return the failures."""
        failures = []
        for compiled in self.routes:
            route = compiled.route
            try:
                self.loader(route.code_uri, route.handler)
            except Exception as error:  # noqa: BLE001 - any import error is reported, not fatal
                failures.append(f"{route.logical_id} ({route.code_uri}): {error!r}")
        return failures

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for compiled in self.routes:
            found = compiled.pattern.match(path)
            if found and compiled.route.method in {method, "ANY"}:
                params = {name: unquote(value) for name, value in found.groupdict().items()}
                return compiled.route, params
        return None

    def invoke(self, route: Route, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Run the route's handler on `event`; return status, headers and body."""
        request_id = event["requestContext"]["requestId"]
        base_headers = {"x-amzn-RequestId": request_id}
        try:
            handler = self.loader(route.code_uri, route.handler)
        except Exception:  # noqa: BLE001 - a failed cold start is a 502, as in Lambda
            self.log(f"[gateway] {route.logical_id}: import failed\n{traceback.format_exc()}")
            return _json(
                502, envelope("Internal server error", {"request_id": request_id}), base_headers
            )
        context = lambda_context(
            self.stack_name, route.logical_id, route.timeout, route.memory_size
        )
        timeout = min(float(route.timeout), INTEGRATION_TIMEOUT_SECONDS)
        lock = self._locks.setdefault(route.logical_id, threading.Lock())
        started = time.monotonic()
        if not lock.acquire(timeout=timeout):
            return _json(504, envelope("Endpoint request timed out"), base_headers)
        invocation = _Invocation(handler, event, context)
        try:
            finished = invocation.wait(max(0.0, timeout - (time.monotonic() - started)))
        except BaseException:
            lock.release()
            raise
        if finished:
            lock.release()
        else:
            # The handler is still running: the function is busy until it ends.
            threading.Thread(target=invocation.release_when_done, args=(lock,), daemon=True).start()
        if not finished:
            self.log(f"[gateway] {route.logical_id}: timed out after {timeout:.0f} s")
            return _json(504, envelope("Endpoint request timed out"), base_headers)
        if invocation.error is not None:
            error = invocation.error
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.log(f"[gateway] {route.logical_id} raised:\n{trace}")
            return _json(
                502, envelope("Internal server error", {"request_id": request_id}), base_headers
            )
        return self._response(route, invocation.result, request_id)

    def _response(
        self, route: Route, result: Any, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        malformed = _json(
            502,
            envelope("Internal server error", {"request_id": request_id}),
            {"x-amzn-RequestId": request_id},
        )
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
            self.log(f"[gateway] {route.logical_id}: malformed proxy result {result!r:.200}")
            return malformed
        try:
            size = len(json.dumps(result, default=str).encode("utf-8"))
        except (TypeError, ValueError):
            self.log(f"[gateway] {route.logical_id}: result is not JSON-serialisable")
            return malformed
        if size > MAX_RESPONSE_BYTES:
            self.log(f"[gateway] {route.logical_id}: response of {size} bytes exceeds 6 MB")
            return malformed
        headers = {"x-amzn-RequestId": request_id}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(value) for value in values)
        for name, value in (result.get("headers") or {}).items():
            headers[name] = str(value)
        raw = result.get("body") or ""
        if not isinstance(raw, str):
            self.log(f"[gateway] {route.logical_id}: body must be a string")
            return malformed
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
        return result["statusCode"], headers, body

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            server_version = "local-apigateway"
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, a keep-alive client's
            # delayed ACK adds ~40 ms to every response.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def do_OPTIONS(self) -> None:
                self._dispatch("OPTIONS")

            def do_HEAD(self) -> None:
                self._dispatch("HEAD")

            def __getattr__(self, name: str) -> Any:
                # Any other method (TRACE, QUERY, ...) is routed too, so it gets the
                # envelope 404 API Gateway gives for a method no route has, not 501.
                if name.startswith("do_") and name[3:].isalpha():
                    return lambda: self._dispatch(name[3:])
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                # Replaced by one line per request in _dispatch.
                return

            def _dispatch(self, method: str) -> None:
                started = time.monotonic()
                path = urlsplit(self.path).path
                body, too_large = self._read_body()
                target = "-"
                if too_large:
                    status, headers, payload = _json(
                        413, envelope("Request body too large (API Gateway's limit is 10 MB)")
                    )
                elif method == "GET" and path in {"/docs", "/docs/"}:
                    status, headers, payload = (
                        200,
                        {"Content-Type": "text/html"},
                        DOCS_PAGE.encode(),
                    )
                elif method == "GET" and path.startswith("/docs/"):
                    status, headers, payload = gateway._asset(path.removeprefix("/docs/"))
                elif method == "GET" and path == "/openapi.yaml":
                    status, headers, payload = gateway._openapi()
                elif method == "GET" and path == "/_local/health":
                    status, headers, payload = _json(
                        200,
                        {
                            "status": "success",
                            "message": "local stack is up",
                            "data": {"routes": len(gateway.routes)},
                        },
                    )
                else:
                    matched = gateway.match(method, unquote(path))
                    if matched is None:
                        status, headers, payload = _json(404, envelope("Not found"))
                    else:
                        route, params = matched
                        target = route.logical_id
                        event = build_proxy_event(
                            route=route,
                            method=method,
                            raw_path=self.path,
                            headers=list(self.headers.items()),
                            body=body,
                            path_parameters=params,
                            stage=gateway.stage,
                            source_ip=self.client_address[0],
                        )
                        status, headers, payload = gateway.invoke(route, event)
                self._send(method, status, headers, payload)
                elapsed = (time.monotonic() - started) * 1000
                gateway.log(
                    f"[gateway] {method} {self.path} -> {target} {status} ({elapsed:.0f} ms)"
                )

            def _read_body(self) -> tuple[bytes | None, bool]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return self._read_chunked()
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_REQUEST_BYTES:
                    # Not read: the connection is closed after the answer.
                    self.close_connection = True
                    return None, True
                return (self.rfile.read(length) if length else None), False

            def _read_chunked(self) -> tuple[bytes | None, bool]:
                chunks: list[bytes] = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        # Trailer section ends with an empty line.
                        while self.rfile.readline().strip():
                            pass
                        break
                    total += size
                    if total > MAX_REQUEST_BYTES:
                        self.close_connection = True
                        return None, True
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return (b"".join(chunks) or None), False

            def _send(
                self, method: str, status: int, headers: dict[str, str], payload: bytes
            ) -> None:
                try:
                    self.send_response(status, _reason(status))
                    for name, value in headers.items():
                        if name.lower() not in {"content-length", "connection"}:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    if self.close_connection:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if method != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return RequestHandler

    def _asset(self, name: str) -> tuple[int, dict[str, str], bytes]:
        if name not in SWAGGER_ASSETS:
            return _json(404, envelope("Not found"))
        directory = swagger_ui_dir()
        if directory is None:
            return _json(
                503, envelope("Swagger UI assets missing: install the pinned swagger-ui-py")
            )
        return 200, {"Content-Type": SWAGGER_ASSETS[name]}, (directory / name).read_bytes()

    def _openapi(self) -> tuple[int, dict[str, str], bytes]:
        if not self.openapi_path.is_file():
            return _json(404, envelope(f"{self.openapi_path.name} not found in the repository"))
        return (
            200,
            {"Content-Type": "application/yaml; charset=utf-8"},
            self.openapi_path.read_bytes(),
        )


def _json(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(payload).encode("utf-8"),
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
