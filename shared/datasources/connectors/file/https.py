"""The https object source: one file behind one URL, fetched through the SSRF guard.

Each GET goes to the address the guard approved for the URL's host (never a fresh
resolution), follows redirects on the same host only, and ends at the function's
deadline however slowly the upstream sends. Plain http is accepted in local mode only.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import pyarrow as pa

from datasources.config import Settings
from datasources.connectors.base import ConnectorContext
from datasources.connectors.file.messages import timeout_error
from datasources.connectors.file.objects import FileRef, Location, display_name
from datasources.connectors.file.streams import STREAM_BUFFER_BYTES, capped
from datasources.errors import ConnectionFailed
from datasources.limits import DeadlineExceeded, seconds_left, shut_at_deadline
from datasources.netguard import resolve_host

HTTP_MAX_BYTES = 2 << 30
HTTP_PARQUET_MAX_BYTES = 512 << 20
_HTTP_TIMEOUT_SECONDS = 30.0
_HTTP_MAX_REDIRECTS = 3


class HttpsObject:
    """The one object of an `https://` source."""

    def __init__(self, url: str, location: Location, context: ConnectorContext) -> None:
        self._url = url
        self._location = location
        self._context = context
        self._settings: Settings = context.settings

    def files(self) -> list[FileRef]:
        response, connection = self._get(self._url)
        try:
            length = response.getheader("Content-Length")
            size = int(length) if length and length.isdigit() else None
            if size is not None and size > HTTP_MAX_BYTES:
                raise ConnectionFailed(
                    f"{display_name(self._location)} is {size} bytes; files over https may be "
                    f"at most {HTTP_MAX_BYTES} bytes (copy it to S3 instead)",
                    stage="read",
                )
            return [FileRef(key=self._location.key, size=size, etag=response.getheader("ETag"))]
        finally:
            connection.release()

    def open(self, ref: FileRef) -> tuple[Callable[[int], bytes], Callable[[], None]]:
        response, connection = self._get(self._url)
        return self._upstream_read(capped(response.read, HTTP_MAX_BYTES)), connection.release

    def open_random(self, ref: FileRef) -> pa.NativeFile:
        """The file spooled to local disk: Parquet needs to seek, an https body cannot."""
        response, connection = self._get(self._url)
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the returned PythonFile
        try:
            read = self._upstream_read(capped(response.read, HTTP_PARQUET_MAX_BYTES))
            while chunk := read(STREAM_BUFFER_BYTES):
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        finally:
            connection.release()
        spool.seek(0)
        return pa.PythonFile(spool, mode="r")

    def close(self) -> None:
        """Nothing to release: every connection is closed with the body it served."""

    def _upstream_read(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        """`read` of an https body, ended by the deadline: a read the watchdog cut short
        (an error or a premature end) is reported as the timeout it is."""
        deadline = self._context.deadline
        what = f"reading {display_name(self._location)}"

        def upstream_read(size: int) -> bytes:
            try:
                data = read(size)
            except (OSError, http.client.HTTPException) as exc:
                seconds_left(deadline, what)
                raise OSError(
                    f"the connection broke during the body ({type(exc).__name__})"
                ) from None
            seconds_left(deadline, what)
            return data

        return upstream_read

    def _get(self, url: str) -> tuple[http.client.HTTPResponse, _PinnedHTTPConnection]:
        """GET one URL over a connection to the address the SSRF guard approved."""
        current = url
        first_host = urlsplit(url).hostname
        for _ in range(_HTTP_MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            host = parts.hostname or ""
            if parts.scheme == "http" and not self._settings.local_mode:
                raise ConnectionFailed(
                    "plain http is not accepted: use an https:// url", stage="config"
                )
            port = parts.port or (443 if parts.scheme == "https" else 80)
            resolved = resolve_host(
                host,
                port,
                local_mode=self._settings.local_mode,
                allowed_cidrs=self._settings.allowed_cidrs,
            )
            deadline = self._context.deadline
            try:
                left = seconds_left(deadline, f"GET {host}")
            except DeadlineExceeded as exc:
                raise timeout_error(exc) from None
            timeout = min(_HTTP_TIMEOUT_SECONDS, left or _HTTP_TIMEOUT_SECONDS)
            connection: _PinnedHTTPConnection
            if parts.scheme == "https":
                connection = _PinnedHTTPSConnection(host, resolved.address, port, timeout, deadline)
            else:
                connection = _PinnedHTTPConnection(host, resolved.address, port, timeout, deadline)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            where = f"{host}{parts.path or '/'}"  # never the query: it may hold a signature
            try:
                connection.request(
                    "GET",
                    target,
                    headers={"Accept-Encoding": "identity", "User-Agent": "datasources-api"},
                )
                response = connection.getresponse()
            except ssl.SSLError:
                connection.release()
                raise ConnectionFailed(
                    f"TLS handshake with {host} failed (certificate not valid for this host?)",
                    stage="tls",
                ) from None
            except TimeoutError:
                connection.release()
                raise ConnectionFailed(f"{host} did not answer in time", stage="timeout") from None
            except (OSError, http.client.HTTPException):
                connection.release()
                if deadline is not None and time.monotonic() >= deadline:
                    # The watchdog ended a connection that was still sending its headers.
                    raise ConnectionFailed(
                        f"{host} did not answer before this function's time ran out",
                        stage="timeout",
                    ) from None
                raise ConnectionFailed(f"could not connect to {host}:{port}", stage="tcp") from None
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location") or ""
                connection.release()
                following = urljoin(current, location)
                follow_parts = urlsplit(following)
                if follow_parts.hostname != first_host or follow_parts.scheme not in (
                    "https",
                    parts.scheme,
                ):
                    raise ConnectionFailed(
                        f"{where} redirects to another host, which this service does not follow",
                        stage="http",
                    )
                current = following
                continue
            if response.status != 200:
                connection.release()
                stage = "permission" if response.status in (401, 403) else "http"
                raise ConnectionFailed(f"GET {where} answered HTTP {response.status}", stage=stage)
            return response, connection
        raise ConnectionFailed(f"{display_name(self._location)} redirects too often", stage="http")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address the SSRF guard approved, not to a fresh resolution, and
    ends the connection at the deadline however slowly the upstream sends."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, deadline: float | None
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._deadline = deadline
        self._watchdog: threading.Timer | None = None

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self._watchdog = shut_at_deadline(sock, self._deadline)
        return sock

    def connect(self) -> None:
        self.sock = self._open()

    def release(self) -> None:
        """Close, and stop the watchdog. Not `close()`: http.client closes a connection
        whose response says `Connection: close` before its body has been read."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.close()


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    """TLS to the approved address, with the certificate verified for the URL's host."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, deadline: float | None
    ) -> None:
        self._tls = ssl.create_default_context()
        http.client.HTTPSConnection.__init__(self, host, port, timeout=timeout, context=self._tls)
        self._address = address
        self._deadline = deadline
        self._watchdog = None

    def connect(self) -> None:
        self.sock = self._tls.wrap_socket(self._open(), server_hostname=self.host)
