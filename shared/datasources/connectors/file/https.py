"""The https object source: one file behind one URL, fetched through `datasources.egress`.

The egress client pins every connection to the address the SSRF guard approved, follows
redirects on the same scheme, host and port only, caps the body, and ends at the
function's deadline however slowly the upstream sends. Plain http is accepted in local
mode only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from urllib.parse import urlsplit

import httpx
import pyarrow as pa

from datasources.connectors.base import ConnectorContext
from datasources.connectors.file.objects import FileRef, Location, display_name
from datasources.connectors.file.streams import STREAM_BUFFER_BYTES
from datasources.egress import GuardedClient, Response, host_and_path
from datasources.errors import ConnectionFailed
from datasources.netguard import parse_ip_literal, resolve_host

HTTP_MAX_BYTES = 2 << 30
HTTP_PARQUET_MAX_BYTES = 512 << 20
_HTTP_TIMEOUT_SECONDS = 30.0


class HttpsObject:
    """The one object of an `https://` source."""

    def __init__(self, url: str, location: Location, context: ConnectorContext) -> None:
        self._url = url
        self._location = location
        self._context = context

    def files(self) -> list[FileRef]:
        response, close = self._get(HTTP_MAX_BYTES)
        try:
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            if size is not None and size > HTTP_MAX_BYTES:
                raise ConnectionFailed(
                    f"{display_name(self._location)} is {size} bytes; files over https may be "
                    f"at most {HTTP_MAX_BYTES} bytes (copy it to S3 instead)",
                    stage="read",
                )
            return [FileRef(key=self._location.key, size=size, etag=response.headers.get("ETag"))]
        finally:
            close()

    def open(self, ref: FileRef) -> tuple[Callable[[int], bytes], Callable[[], None]]:
        response, close = self._get(HTTP_MAX_BYTES)
        return response.read, close

    def open_random(self, ref: FileRef) -> pa.NativeFile:
        """The file spooled to local disk: Parquet needs to seek, an https body cannot."""
        response, close = self._get(HTTP_PARQUET_MAX_BYTES)
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the returned PythonFile
        try:
            while chunk := response.read(STREAM_BUFFER_BYTES):
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        finally:
            close()
        spool.seek(0)
        return pa.PythonFile(spool, mode="r")

    def close(self) -> None:
        """Nothing to release: every client is closed with the body it served."""

    def _get(self, max_body_bytes: int) -> tuple[Response, Callable[[], None]]:
        """A 200 response to GET the URL, its body still to read, and how to close it."""
        client = GuardedClient(
            self._context.settings,
            deadline=self._context.deadline,
            timeout_seconds=_HTTP_TIMEOUT_SECONDS,
            # The bytes as stored: a .gz file is inflated here, under the inflation guard.
            headers={"Accept-Encoding": "identity"},
            max_body_bytes=max_body_bytes,
            # No wall-clock cap of its own: a large file may stream for minutes, and the
            # function's deadline ends a slow one.
            body_seconds=0,
            max_connections=1,
        )
        resources = ExitStack()
        resources.callback(client.close)
        try:
            response = resources.enter_context(client.open(self._parsed_url()))
            if response.status != 200:
                stage = "permission" if response.status in (401, 403) else "http"
                raise ConnectionFailed(
                    f"GET {host_and_path(response.url)} answered HTTP {response.status}",
                    stage=stage,
                )
        except BaseException:
            resources.close()
            raise
        return response, resources.close

    def _parsed_url(self) -> httpx.URL:
        try:
            return httpx.URL(self._url)
        except httpx.InvalidURL:
            pass
        # httpx refuses some hosts a resolver accepts (an octal IPv4 such as 0177.0.0.1):
        # an internal one is refused by the guard's policy, like any other spelling of it.
        host = urlsplit(self._url).hostname or ""
        if parse_ip_literal(host) is not None:
            settings = self._context.settings
            resolve_host(
                host, 443, local_mode=settings.local_mode, allowed_cidrs=settings.allowed_cidrs
            )
        raise ConnectionFailed("the url is not a valid URL", stage="config")
