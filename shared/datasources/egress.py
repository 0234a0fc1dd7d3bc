"""Egress: the one SSRF-guarded HTTP client every connector reaches the internet with.

A connector that fetches a URL a tenant named (an API page, a file over https) opens
it through `GuardedClient`, so every outbound HTTP request obeys the same rules:

Address pinning
    Every TCP connection (the first request, a next-page URL, each redirect hop) is
    opened by `_GuardedBackend`: the host is resolved once through
    `netguard.resolve_host`, every answer is checked, and the socket connects to the
    checked address, never to the name again. TLS still uses the name for SNI and the
    certificate check, and the `Host` header is the name, because httpcore passes the
    URL's host along. So there is no DNS-rebinding window between check and connect.
    Proxies and .netrc from the environment are ignored (`trust_env=False`): a proxy
    would bypass the guard, and .netrc could add credentials nobody configured.

Redirects
    Followed by hand, never by httpx, at most `MAX_REDIRECTS` (5) hops, and only to the
    same scheme, host and port as the URL that redirected. The choice: credentials
    (headers, a query api key re-added by the caller's `sign` hook at each hop) must
    never travel to another host; another port on the same host is another service
    (an admin port, a metadata proxy), so it is refused too; a scheme change is refused
    both ways (https -> http would drop TLS; plain http exists only in local mode, so an
    upgrade only arises there). Five hops cover real APIs (a trailing-slash redirect, a
    versioned path, a signed-URL hop) with room to spare. Each hop is checked by this
    policy before any connection; a hop that needs a new connection goes through the
    guard again, and a pooled connection of the same origin is one the guard approved.

Body cap
    A body is streamed and refused (`BodyTooLarge`, stage `read`) as soon as more than
    the client's `max_body_bytes` arrived, before the rest is read.

Time
    Every request has the caller's timeout (connect at most `CONNECT_TIMEOUT_SECONDS`),
    each cut to the time left before the function's deadline (`datasources.limits`);
    a watchdog shuts every socket at that deadline, so trickled headers or bodies end
    as stage `timeout` ("... time ran out"). A body also has a wall-clock cap
    (`body_seconds`), because a server can keep each read's timeout from firing by
    sending one byte at a time.

Every failure is a `ConnectionFailed` with a stage (`config`, `dns`, `policy`, `tcp`,
`tls`, `timeout`, `transport`, `http`, `read`) and a message that shows URLs only
through the caller's `describe` (by default host and path, never the query, which may
hold a signature or a key).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from datasources.errors import ConnectionFailed
from datasources.limits import DeadlineExceeded, seconds_left, shut_at_deadline
from datasources.netguard import resolve_host

if TYPE_CHECKING:
    from datasources.config import Settings

MAX_REDIRECTS = 5
MAX_BODY_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "datasources/0.1 (+egress)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class BodyTooLarge(ConnectionFailed):
    """A response body past the client's `max_body_bytes` (stage `read`)."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message, stage="read")
        self.limit = limit


def port_of(url: httpx.URL) -> int:
    """The URL's port, the scheme's default when none is written."""
    return url.port or (443 if url.scheme == "https" else 80)


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme, host and port: the only places a redirect or a next link may lead."""
    return a.scheme == b.scheme and a.host == b.host and port_of(a) == port_of(b)


def host_and_path(url: httpx.URL) -> str:
    """How a URL is shown by default: host and path, never userinfo or the query."""
    return f"{url.host}{url.path or '/'}"


# ---------------------------------------------------------------- transport


class _GuardedBackend(httpcore.SyncBackend):
    """Opens every TCP connection to the address the SSRF guard approved, and ends it at
    the deadline (per-read timeouts alone let a trickling server go on)."""

    def __init__(self, settings: Settings, deadline: float | None) -> None:
        self._settings = settings
        self._deadline = deadline
        self._watchdogs: list[threading.Timer] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        # Raises ConnectionFailed(stage="dns"|"policy") before any socket exists.
        resolved = resolve_host(
            host,
            port,
            local_mode=self._settings.local_mode,
            allowed_cidrs=self._settings.allowed_cidrs,
        )
        if self._deadline is not None:
            left = max(0.001, self._deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        stream = super().connect_tcp(
            resolved.address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        watchdog = shut_at_deadline(stream.get_extra_info("socket"), self._deadline)
        if watchdog is not None:
            self._watchdogs.append(watchdog)
        return stream

    def close(self) -> None:
        """Stop the watchdogs of this backend's connections."""
        for watchdog in self._watchdogs:
            watchdog.cancel()
        self._watchdogs.clear()


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport with the pool's network backend replaced by the guarded one.

    httpx (pinned) does not expose `network_backend`, so the pool is rebuilt here with the
    same settings httpx would use; the request/response mapping stays httpx's own.
    """

    def __init__(
        self,
        backend: _GuardedBackend,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool.close()
        self.backend = backend
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )

    def close(self) -> None:
        super().close()
        self.backend.close()


# ---------------------------------------------------------------- responses


@dataclass
class Fetched:
    """A whole response: what `GuardedClient.get` returns."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL  # the final URL, after redirects, as the caller wrote it (unsigned)
    links: dict[str | None, dict[str, str]]
    latency_ms: float


class Response:
    """A response whose body is still on the wire; read it through this object only,
    so the cap, the wall-clock limit and the deadline apply."""

    def __init__(self, client: GuardedClient, raw: httpx.Response, url: httpx.URL) -> None:
        self._client = client
        self._raw = raw
        self.url = url
        self.status: int = raw.status_code
        self.headers: httpx.Headers = raw.headers
        self.links: dict[str | None, dict[str, str]] = raw.links
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The (decoded) body in chunks; `BodyTooLarge` once past the cap."""
        client = self._client
        ends = time.monotonic() + client.body_seconds if client.body_seconds else None
        size = 0
        chunks = self._raw.iter_bytes(chunk_size)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except httpx.HTTPError as exc:
                raise client.transport_failure(exc, self.url) from None
            size += len(chunk)
            if size > client.max_body_bytes:
                raise BodyTooLarge(
                    f"the response from {client.describe(self.url)} is larger than "
                    f"{_size_text(client.max_body_bytes)} (limit: response body size)",
                    limit=client.max_body_bytes,
                )
            if ends is not None and time.monotonic() > ends:
                raise ConnectionFailed(
                    f"the response from {client.describe(self.url)} took longer than "
                    f"{client.body_seconds:g} s to arrive",
                    stage="timeout",
                )
            client.check_deadline(self.url)
            yield chunk

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the body (all of it when negative); b"" at its end."""
        if size < 0:
            rest = b"".join(self.iter_bytes())
            data, self._pending = self._pending + rest, b""
            return data
        if self._chunks is None:
            self._chunks = self.iter_bytes()
        while len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def close(self) -> None:
        self._raw.close()


def _size_text(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    return f"{size} bytes"


# ---------------------------------------------------------------- client


class GuardedClient:
    """A pooled httpx client under the egress rules of the module docstring.

    `headers` go with every request (and every redirect hop, which stays on the same
    origin). `describe` turns a URL into the text that error messages show; `peer`
    names the other end in them ("the API", "the server").
    """

    def __init__(
        self,
        settings: Settings,
        *,
        deadline: float | None = None,
        timeout_seconds: float = 15.0,
        headers: Mapping[str, str] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_seconds: float | None = None,
        max_connections: int = 4,
        describe: Callable[[httpx.URL], str] = host_and_path,
        peer: str = "the server",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.deadline = deadline
        self.timeout_seconds = timeout_seconds
        self.max_body_bytes = max_body_bytes
        # A body's wall-clock cap: generous beside the per-read timeout by default.
        self.body_seconds = (
            body_seconds if body_seconds is not None else max(4 * timeout_seconds, 30.0)
        )
        self.describe = describe
        self.peer = peer
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30,
        )
        transport = _GuardedTransport(_GuardedBackend(settings, deadline), limits, ssl_context)
        self._client = httpx.Client(
            transport=transport,
            headers={"User-Agent": USER_AGENT, **dict(headers or {})},
            timeout=self._timeout(None),
            follow_redirects=False,
            trust_env=False,
        )

    # ------------------------------------------------------------ requests

    @contextmanager
    def open(
        self,
        url: httpx.URL | str,
        *,
        headers: Mapping[str, str] | None = None,
        sign: Callable[[httpx.URL], httpx.URL] | None = None,
    ) -> Iterator[Response]:
        """GET `url`, following redirects by the policy; the body is left to read.

        `sign` adds credentials to each hop's URL (a query api key) just before it is
        sent; the URL the response carries, and every message, stay unsigned.
        """
        current = httpx.URL(url) if isinstance(url, str) else url
        for _ in range(MAX_REDIRECTS + 1):
            self._check_scheme(current)
            request = self._client.build_request(
                "GET",
                sign(current) if sign is not None else current,
                headers=dict(headers or {}),
                timeout=self._timeout(current),
            )
            try:
                raw = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self.transport_failure(exc, current) from None
            location = raw.headers.get("location")
            if raw.status_code in REDIRECT_STATUSES and location:
                raw.close()
                current = self._redirect_target(current, location)
                continue
            response = Response(self, raw, current)
            try:
                yield response
            finally:
                response.close()
            return
        raise ConnectionFailed(
            f"{self.peer} redirected more than {MAX_REDIRECTS} times ({self.describe(current)})",
            stage="http",
        )

    def get(
        self,
        url: httpx.URL | str,
        *,
        headers: Mapping[str, str] | None = None,
        sign: Callable[[httpx.URL], httpx.URL] | None = None,
    ) -> Fetched:
        """GET `url` and read the whole (capped) body."""
        started = time.perf_counter()
        with self.open(url, headers=headers, sign=sign) as response:
            body = response.read()
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return Fetched(
            response.status, response.headers, body, response.url, response.links, latency_ms
        )

    def close(self) -> None:
        """Close the pooled connections and stop their watchdogs."""
        self._client.close()

    def __enter__(self) -> GuardedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ policy

    def _check_scheme(self, url: httpx.URL) -> None:
        if url.scheme == "https" or (url.scheme == "http" and self.settings.local_mode):
            return
        raise ConnectionFailed(
            f"refusing a {url.scheme or 'scheme-less'} URL: only https is allowed"
            + ("" if self.settings.local_mode else " (plain http only in local mode)"),
            stage="config",
        )

    def _redirect_target(self, current: httpx.URL, location: str) -> httpx.URL:
        try:
            target = current.join(location)
        except httpx.InvalidURL:
            raise ConnectionFailed(
                f"{self.peer} redirected to an invalid URL ({self.describe(current)})",
                stage="http",
            ) from None
        if target.host != current.host or port_of(target) != port_of(current):
            raise ConnectionFailed(
                f"{self.peer} redirected to another host ({target.host}:{port_of(target)}); "
                "redirects are only followed on the same host and port, so credentials are "
                "never sent elsewhere",
                stage="http",
            )
        if target.scheme != current.scheme:
            raise ConnectionFailed(
                f"{self.peer} redirected from {current.scheme} to {target.scheme}; redirects "
                "keep the scheme, so this one is refused",
                stage="http",
            )
        return target

    # ------------------------------------------------------------ time

    def _timeout(self, url: httpx.URL | None) -> httpx.Timeout:
        """The configured timeouts, each cut to the time left before the deadline."""
        seconds = self.timeout_seconds
        left = self.check_deadline(url) if url is not None else None
        if left is None:
            return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_SECONDS))
        return httpx.Timeout(
            min(seconds, left), connect=min(seconds, CONNECT_TIMEOUT_SECONDS, left)
        )

    def check_deadline(self, url: httpx.URL) -> float | None:
        """Seconds left before the deadline (None: none); stage `timeout` once it passed."""
        try:
            return seconds_left(self.deadline, f"GET {self.describe(url)}")
        except DeadlineExceeded:
            raise self._deadline_failure(url) from None

    def _deadline_failure(self, url: httpx.URL) -> ConnectionFailed:
        return ConnectionFailed(
            f"{self.peer} did not answer before this function's time ran out "
            f"({self.describe(url)}; limit: the function's remaining time less a margin)",
            stage="timeout",
        )

    def transport_failure(self, exc: httpx.HTTPError, url: httpx.URL) -> ConnectionFailed:
        """The domain error for an httpx failure on `url` (the watchdog's cut included)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            # The watchdog ended the connection at the deadline, whatever broke.
            return self._deadline_failure(url)
        if isinstance(exc, httpx.TimeoutException):
            return ConnectionFailed(
                f"{self.peer} did not answer within {self.timeout_seconds:g} s "
                f"({self.describe(url)})",
                stage="timeout",
            )
        if isinstance(exc, httpx.ConnectError):
            if _is_tls_error(exc):
                return ConnectionFailed(
                    f"TLS handshake with {url.host} failed: {_tls_reason(exc)}", stage="tls"
                )
            return ConnectionFailed(
                f"could not connect to {url.host} port {port_of(url)}: "
                "connection refused or unreachable",
                stage="tcp",
            )
        return ConnectionFailed(
            f"the connection to {url.host} failed during the request ({type(exc).__name__})",
            stage="transport",
        )


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tls_reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verification failed ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return str(seen.reason or "protocol error").replace("_", " ").lower()
        seen = seen.__cause__ or seen.__context__
    return "handshake failed"
