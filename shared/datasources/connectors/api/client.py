"""The API connector's HTTP client: egress's guarded client with the source's auth,
secret redaction, retries, status mapping and JSON decoding.

Requests
    One `datasources.egress.GuardedClient` per connector (at most 4 pooled connections):
    address pinning, same-origin redirects, the body cap and the deadline are egress's.
    Every request has `timeout_seconds`, and every body a wall-clock cap of
    `max(4 * timeout_seconds, 30)` s. A body is scanned for nesting depth and number of
    values before `json.loads`.

Authentication
    `api_key` goes where `api_key_in` says: `Authorization: Bearer <key>` (default), the
    header `api_key_name` (default `X-API-Key`) or the query parameter `api_key_name`
    (default `api_key`), re-added to every hop and page URL just before it is sent.
    `basic_auth`, `bearer_token` and extra `headers` are sent too; when several set
    `Authorization`, the api key wins over the bearer token, which wins over basic auth,
    which wins over `headers`.

Redaction
    Secret values (api key, bearer token, basic password, secret-looking headers and
    params) are masked in every error message and log line, and a query-parameter api
    key is stripped from every URL kept in a resume token or shown in a message.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from datasources.connectors.api.records import parse as parse_json
from datasources.connectors.api.retry import RetryPolicy
from datasources.connectors.base import ConnectorContext
from datasources.egress import BodyTooLarge, Fetched, GuardedClient, same_origin
from datasources.errors import ConnectionFailed, ValidationFailed
from datasources.limits import LimitExceeded, check_json
from datasources.models.common import MASK
from datasources.models.connection import ApiConfig, ApiResource, reveal

logger = logging.getLogger(__name__)

USER_AGENT = "datasources-api/0.1 (+api connector)"
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class ApiFailure(Exception):
    """A request or body problem; the connector turns it into the domain error."""

    def __init__(self, message: str, *, stage: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.status = status


class ApiClient:
    """GETs for one API source: authenticated, redacted, retried, decoded."""

    def __init__(
        self,
        config: ApiConfig,
        context: ConnectorContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._deadline = context.deadline
        self._sleep = sleep  # injected by tests so backoff does not really wait
        self._rng = rng or random.Random()
        base = urlsplit(config.base_url)
        if base.scheme != "https" and not context.settings.local_mode:
            raise ValidationFailed(
                "base_url must use https (plain http is only allowed in local mode)"
            )
        try:
            self.base = httpx.URL(config.base_url)
        except httpx.InvalidURL:
            # e.g. an octal IPv4 host (0177.0.0.1), which httpx refuses to parse.
            raise ValidationFailed("base_url is not a valid URL") from None
        self._query_key: tuple[str, str] | None = None
        self._secrets: list[str] = []
        headers = self._auth_headers()
        timeout = config.timeout_seconds
        self._http = GuardedClient(
            context.settings,
            deadline=context.deadline,
            timeout_seconds=timeout,
            headers=headers,
            body_seconds=max(4 * timeout, 30.0),
            describe=self.safe_url,
            peer="the API",
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # ------------------------------------------------------------ requests

    def get(self, url: httpx.URL, params: dict[str, Any], *, retry_budget: float | None) -> Fetched:
        """GET with the egress rules and, when `retry_budget` is set, backoff retries."""
        policy = RetryPolicy(retry_budget, rng=self._rng)
        waited = 0.0
        attempt = 0
        transport_failures = 0
        while True:
            response: Fetched | None = None
            try:
                response = self._send(url, params)
            except ApiFailure as failure:
                transport_failures += 1
                last = failure
                decision = policy.decide(
                    attempt,
                    waited=waited,
                    stage=failure.stage,
                    transport_failures=transport_failures,
                    time_left=self._time_left(),
                )
            else:
                if 200 <= response.status < 300:
                    return response
                last = self.status_failure(response)
                decision = policy.decide(
                    attempt,
                    waited=waited,
                    status=response.status,
                    headers=response.headers,
                    time_left=self._time_left(),
                )
            if decision.wait is None:
                last.message += decision.note
                raise last
            logger.info(
                "api request retry",
                extra={
                    "url": self.safe_url(url),
                    "status": response.status if response else last.stage,
                    "delay_s": round(decision.wait, 3),
                    "attempt": attempt + 1,
                },
            )
            self._sleep(decision.wait)
            waited += decision.wait
            attempt += 1

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _send(self, url: httpx.URL, params: dict[str, Any]) -> Fetched:
        current = url.copy_merge_params(params) if params else url
        try:
            response = self._http.get(current, sign=self._with_auth)
        except BodyTooLarge as exc:
            raise ApiFailure(f"{exc.message}; use a smaller page size", stage="read") from None
        except ConnectionFailed as exc:
            raise ApiFailure(exc.message, stage=exc.stage) from None
        logger.debug(
            "api request",
            extra={
                "url": self.safe_url(response.url),
                "status": response.status,
                "ms": response.latency_ms,
            },
        )
        return response

    def status_failure(self, response: Fetched) -> ApiFailure:
        """The failure for a non-2xx answer, with the API's own hint when it gave one."""
        status = response.status
        where = self.safe_url(response.url)
        if status in (401, 403):
            return ApiFailure(
                f"authentication rejected by the API (HTTP {status})", stage="auth", status=status
            )
        hint = _upstream_hint(response.body)
        if status == 404:
            message = f"the API answered HTTP 404 (not found) for {where}: check base_url and path"
        elif status == 429:
            message = f"the API is rate limiting requests (HTTP 429) at {where}"
        elif 300 <= status < 400:
            message = f"the API answered HTTP {status} without a usable redirect at {where}"
        else:
            message = f"the API answered HTTP {status} for {where}"
        return ApiFailure(message + (f": {hint}" if hint else ""), stage="http", status=status)

    def json(self, response: Fetched) -> Any:
        """The parsed body; a clear failure for HTML, invalid or oversized JSON."""
        content_type = response.headers.get("content-type", "")
        where = self.safe_url(response.url)
        head = response.body[:512].lstrip().lower()
        if "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html")):
            raise ApiFailure(
                f"the API answered with an HTML page, not JSON (HTTP {response.status}, "
                f"content-type '{content_type}') at {where}: check base_url and path",
                stage="read",
            )
        try:
            # Before Python builds anything: bounded nesting and number of values.
            check_json(response.body, f"the response from {where}")
        except LimitExceeded as exc:
            raise ApiFailure(str(exc), stage="read") from None
        try:
            return parse_json(response.body)
        except ValueError:
            raise ApiFailure(
                f"the response from {where} is not valid JSON (HTTP {response.status}, "
                f"content-type '{content_type}', {len(response.body)} bytes)",
                stage="read",
            ) from None

    # ------------------------------------------------------------ URLs

    def resource_url(self, resource: ApiResource) -> httpx.URL:
        """The first-page URL of a resource (its path joined to base_url)."""
        path = resource.path
        if path.startswith(("http://", "https://")):
            url = httpx.URL(path)
            if not same_origin(self.base, url):
                raise ApiFailure(
                    f"resource '{resource.name}' points to another host than base_url",
                    stage="config",
                )
            return url
        return self.join(path)

    def join(self, path: str) -> httpx.URL:
        """base_url with `path` appended (and both queries kept)."""
        if not path:
            return self.base
        base = urlsplit(self._config.base_url)
        extra = urlsplit(path)
        joined = base.path.rstrip("/") + "/" + extra.path.lstrip("/")
        query = "&".join(part for part in (base.query, extra.query) if part)
        return httpx.URL(urlunsplit((base.scheme, base.netloc, joined, query, "")))

    def follow_url(self, current: httpx.URL, target: str) -> str:
        """A next-page link resolved against the page's URL; refused off base_url's origin."""
        joined = current.join(target)
        if not same_origin(self.base, joined):
            raise ApiFailure(
                f"the API's next-page link points to another host ({joined.host}); it is "
                f"not followed, so credentials stay with {self.base.host}",
                stage="read",
            )
        return self.safe_url(joined)

    def safe_url(self, url: httpx.URL | str) -> str:
        """The URL without userinfo or the api key parameter: fit for tokens and messages."""
        parsed = httpx.URL(url) if isinstance(url, str) else url
        parsed = parsed.copy_with(username=None, password=None)
        if self._query_key is not None:
            parsed = parsed.copy_remove_param(self._query_key[0])
        return self.redact(str(parsed))

    # ------------------------------------------------------------ secrets

    def redact(self, text: str) -> str:
        """`text` with every known secret (and its URL-quoted forms) masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def reveal_param(self, value: Any) -> Any:
        """A resource param's value to send; a secret one is remembered for redaction."""
        if isinstance(value, SecretStr):  # the model wraps credential-looking params
            plain = value.get_secret_value()
            self._remember_secret(plain)
            return plain
        return value

    def connection_failed(self, failure: ApiFailure) -> ConnectionFailed:
        """The domain error for `check` and `discover`, secrets masked."""
        details = {"status_code": failure.status} if failure.status is not None else None
        return ConnectionFailed(self.redact(failure.message), stage=failure.stage, details=details)

    def _auth_headers(self) -> dict[str, str]:
        config = self._config
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        for name, value in config.headers.items():
            if name.lower() in _RESERVED_HEADERS:
                continue  # httpx sets these from the URL and body; a user value would lie
            plain = reveal(value) or ""
            headers[name] = plain
            if isinstance(value, SecretStr):  # the model wraps secret-looking headers
                self._remember_secret(plain)
        if config.basic_auth is not None:
            password = reveal(config.basic_auth.password) or ""
            pair = f"{config.basic_auth.username}:{password}".encode()
            encoded = base64.b64encode(pair).decode("ascii")
            headers["Authorization"] = f"Basic {encoded}"
            self._remember_secret(password)
            self._remember_secret(encoded)
        if config.bearer_token is not None:
            token = reveal(config.bearer_token) or ""
            headers["Authorization"] = f"Bearer {token}"
            self._remember_secret(token)
        if config.api_key is not None:
            key = reveal(config.api_key) or ""
            self._remember_secret(key)
            name = config.effective_api_key_name
            if config.api_key_in == "bearer":
                headers[name] = f"Bearer {key}"
            elif config.api_key_in == "header":
                headers[name] = key
            else:
                self._query_key = (name, key)
        return headers

    def _remember_secret(self, value: str) -> None:
        # Very short values would mask unrelated text; they are not real secrets anyway.
        if len(value) >= 4:
            for variant in (value, quote(value, safe=""), quote(value)):
                if variant not in self._secrets:
                    self._secrets.append(variant)
        self._secrets.sort(key=len, reverse=True)

    def _with_auth(self, url: httpx.URL) -> httpx.URL:
        if self._query_key is None:
            return url
        name, key = self._query_key
        return url.copy_set_param(name, key)


def _upstream_hint(body: bytes) -> str | None:
    """A short message from a JSON error body (`error`, `message`, `detail`), if any."""
    head = body[:65536]
    try:
        check_json(head, "the error body")  # a hint is not worth a deep parse
        parsed = json.loads(head)
    except ValueError:  # LimitExceeded too
        return None
    if isinstance(parsed, dict):
        for key in ("message", "error_description", "error", "detail", "title"):
            value = parsed.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return None
