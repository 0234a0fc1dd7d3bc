"""`Client`: one method per endpoint of the Data Sources API, typed results, retries.

Retries. A 429 is API Gateway's throttle: it refuses the request before any function
runs, so every call is retried on it, waiting what `Retry-After` says. A connection
that could not be opened never reached the API either, so that is retried for every
call too. Anything else that may have happened on the server (a 5xx, a timeout while
waiting for the answer) is retried only for calls that are safe to repeat:

- every GET (list, schema, preview, sync status, schedules) and `test_connection`:
  they read and change nothing;
- `set_schedule`: it states the schedule each source should have, so repeating it
  leaves the same schedules.

`connect`, `sync` and `cleanup` are not repeated then: a repeated connect fails on the
names the first one saved (409), a repeated sync on the job the first one started
(409), and a repeated cleanup would report the sources it already deleted as
`not_found`. Their error reaches the caller, who can look (`list_sources`,
`sync_status`) before trying again.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from datasources_client import __version__
from datasources_client.errors import ClientError, ConfigurationError, TransportError, error_for
from datasources_client.models import (
    CleanupResult,
    ConnectionTest,
    Preview,
    Schedule,
    Schema,
    Source,
    SyncJob,
)

URL_ENV = "DATASOURCES_URL"
TOKEN_ENV = "DATASOURCES_TOKEN"  # noqa: S105 - the variable's name, not a secret
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# Longest wait the client accepts from a Retry-After before giving up on a retry.
MAX_RETRY_AFTER_SECONDS = 120.0


class Client:
    """A client of the Data Sources API.

    `base_url` ends in `/api/v1`, as in the published Python examples (locally
    `http://127.0.0.1:3000/api/v1`); it and `token` default to `DATASOURCES_URL` and
    `DATASOURCES_TOKEN`. `retries` is how many times a retryable failure is retried.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base_url = base_url or os.environ.get(URL_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not base_url:
            raise ConfigurationError(
                f"no API URL: set {URL_ENV} (it ends in /api/v1, e.g. http://127.0.0.1:3000/api/v1)"
            )
        if not token:
            raise ConfigurationError(f"no API token: set {TOKEN_ENV} to a bearer token (JWT)")
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff = backoff
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"datasources-client/{__version__}",
            },
        )

    def __repr__(self) -> str:  # never the token
        return f"Client(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ endpoints

    def connect(
        self, workspace_id: str, sources: list[dict[str, Any]], *, scope: str = "user"
    ) -> list[Source]:
        """Connect sources (all or none). Secrets in the result read `********`."""
        data, _ = self._call(
            "POST", workspace_id, "connect", body={"scope": scope, "sources": sources}
        )
        return [Source.from_api(s) for s in data["connected_sources"]]

    def list_sources(
        self,
        workspace_id: str,
        *,
        scope: str = "user",
        type: str | None = None,
        page_size: int = 50,
    ) -> Iterator[Source]:
        """Every source of the scope, page after page (`page_size` per request)."""
        params: dict[str, Any] = {"scope": scope, "limit": page_size}
        if type:
            params["type"] = type
        while True:
            data, body = self._call("GET", workspace_id, "list", params=params, idempotent=True)
            for item in data:
                yield Source.from_api(item)
            token = body.get("next_token")
            if not token:
                return
            params["next_token"] = token

    def test_connection(self, workspace_id: str, source_config: dict[str, Any]) -> ConnectionTest:
        """Test a `{type, connection_config}` before saving it. An unreachable source
        raises `BadRequest` whose `stage` says where it failed."""
        data, _ = self._call(
            "POST",
            workspace_id,
            "test-connection",
            body={"source_config": source_config},
            idempotent=True,
        )
        return ConnectionTest.from_api(data)

    def schema(self, workspace_id: str, source_id: str, *, scope: str = "user") -> Schema:
        data, _ = self._call(
            "GET",
            workspace_id,
            "schema",
            params={"source_id": source_id, "scope": scope},
            idempotent=True,
        )
        return Schema.from_api(data)

    def preview(
        self,
        workspace_id: str,
        source_id: str,
        stream: str,
        *,
        limit: int = 20,
        scope: str = "user",
    ) -> Preview:
        """Up to `limit` (1..100) rows of one stream, read from the source now."""
        data, _ = self._call(
            "GET",
            workspace_id,
            "preview",
            params={"source_id": source_id, "stream": stream, "limit": limit, "scope": scope},
            idempotent=True,
        )
        return Preview.from_api(data)

    def sync(
        self,
        workspace_id: str,
        source_ids: list[str] | None = None,
        *,
        sync_options: dict[str, Any] | None = None,
        scope: str = "user",
    ) -> SyncJob:
        """Start a sync (no ids: every source of the scope). It may already be completed;
        else follow it with `wait_for_sync`."""
        body: dict[str, Any] = {"scope": scope}
        if source_ids:
            body["source_ids"] = list(source_ids)
        if sync_options:
            body["sync_options"] = sync_options
        data, _ = self._call("POST", workspace_id, "sync", body=body)
        return SyncJob.from_api(data)

    def sync_status(self, workspace_id: str, job_id: str, *, scope: str = "user") -> SyncJob:
        data, _ = self._call(
            "GET", workspace_id, f"sync/{job_id}", params={"scope": scope}, idempotent=True
        )
        return SyncJob.from_api(data)

    def wait_for_sync(
        self,
        workspace_id: str,
        job_id: str,
        *,
        scope: str = "user",
        interval: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[SyncJob], None] | None = None,
    ) -> SyncJob:
        """Poll a job until it is completed, failed or cancelled, and return it.

        `on_update` sees every poll's job. Raises `ClientError` after `timeout` seconds.
        """
        started = time.monotonic()
        while True:
            job = self.sync_status(workspace_id, job_id, scope=scope)
            if on_update is not None:
                on_update(job)
            if job.finished:
                return job
            if timeout is not None and time.monotonic() - started >= timeout:
                raise ClientError(f"sync job {job_id} is still {job.status} after {timeout:g} s")
            self._sleep(interval)

    def cleanup(
        self, workspace_id: str, source_ids: list[str] | None = None, *, scope: str = "user"
    ) -> CleanupResult:
        """Delete sources (no ids: every source of the scope) and cancel their syncs."""
        body: dict[str, Any] = {"scope": scope}
        if source_ids is not None:
            body["source_ids"] = list(source_ids)
        data, _ = self._call("POST", workspace_id, "cleanup", body=body)
        return CleanupResult.from_api(data)

    def set_schedule(
        self,
        workspace_id: str,
        source_ids: list[str],
        schedule: str | None,
        *,
        timezone: str = "UTC",
        sync_options: dict[str, Any] | None = None,
        enabled: bool = True,
        scope: str = "user",
    ) -> list[Schedule]:
        """Set the schedule of each source (`rate(...)`, `cron(...)`, `on_upload`), or
        remove it with `schedule=None`."""
        body: dict[str, Any] = {
            "scope": scope,
            "source_ids": list(source_ids),
            "schedule": schedule,
            "timezone": timezone,
            "enabled": enabled,
        }
        if sync_options:
            body["sync_options"] = sync_options
        data, _ = self._call("POST", workspace_id, "schedule", body=body, idempotent=True)
        return [Schedule.from_api(s) for s in data["schedules"]]

    def list_schedules(self, workspace_id: str, *, scope: str = "user") -> list[Schedule]:
        data, _ = self._call(
            "GET", workspace_id, "schedules", params={"scope": scope}, idempotent=True
        )
        return [Schedule.from_api(s) for s in data["schedules"]]

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        workspace_id: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = False,
    ) -> tuple[Any, dict[str, Any]]:
        """Send one request (retrying as the module docstring says); (data, whole body)."""
        url = f"{self.base_url}/data/{workspace_id}/{path}"
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, params=params, json=body)
            except httpx.ConnectError as exc:
                # Nothing was sent: safe to repeat whatever the call.
                if attempt >= self.retries:
                    raise TransportError(f"cannot reach {self.base_url}: {exc}") from None
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            except httpx.TransportError as exc:
                if not idempotent or attempt >= self.retries:
                    raise TransportError(
                        f"{method} {path}: no answer from the API ({type(exc).__name__})"
                    ) from None
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            status = response.status_code
            retryable = status == 429 or (idempotent and status in RETRY_STATUSES)
            if retryable and attempt < self.retries:
                wait = self._delay(attempt, response.headers.get("Retry-After"))
                if wait <= MAX_RETRY_AFTER_SECONDS:
                    self._sleep(wait)
                    attempt += 1
                    continue
            return self._result(response)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After when the API sends one; else exponential backoff with full jitter."""
        if retry_after:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return seconds
        return random.uniform(0, self.backoff * (2**attempt))

    @staticmethod
    def _result(response: httpx.Response) -> tuple[Any, dict[str, Any]]:
        request_id = response.headers.get("X-Request-Id")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.is_success:
                raise ClientError(f"the API answered {response.status_code} without a JSON body")
            raise error_for(
                response.status_code,
                "http_error",
                f"HTTP {response.status_code} {response.reason_phrase}",
                request_id,
                None,
            )
        if response.is_error or body.get("status") == "error":
            raw_data = body.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            raise error_for(
                response.status_code,
                str(data.get("code") or "error"),
                str(body.get("message") or f"HTTP {response.status_code}"),
                body.get("request_id") or request_id,
                data,
            )
        return body.get("data"), body


def _parse_retry_after(value: str) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
