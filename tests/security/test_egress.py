"""The egress client (datasources.egress) against servers on loopback: address pinning
with the name kept for Host and TLS, the one redirect policy, the body cap, timeouts and
the read deadline. Names other than loopback literals go through a stub resolver, so no
DNS query or packet leaves the machine."""

from __future__ import annotations

import http.server
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from datasources import netguard
from datasources.config import Settings
from datasources.egress import MAX_REDIRECTS, BodyTooLarge, GuardedClient
from datasources.errors import ConnectionFailed
from tests.support.tls_servers import make_pki

LOCAL = Settings(local_mode=True)
NAME = "api.egress.test"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []  # (path, Host header)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path
        self.seen.append((path, self.headers.get("Host", "")))
        if path.startswith("/hop/"):  # /hop/<n>: redirect n more times, then answer
            left = int(path.split("/")[2].split("?")[0])
            target = f"/hop/{left - 1}" if left > 0 else "/ok"
            self._reply(302, b"", {"Location": target})
        elif path.startswith("/to?"):
            self._reply(302, b"", {"Location": path.split("=", 1)[1]})
        elif path == "/endless":  # a chunked body that never ends
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return
        elif path == "/trickle":  # one header byte a second
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                return
        elif path == "/sleep":
            time.sleep(1.5)
            self._reply(200, b"{}")
        else:
            self._reply(200, b'{"ok": true}')

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            return


def _serve(context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    _Handler.seen = []
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def port() -> Iterator[int]:
    yield from _serve()


@pytest.fixture
def second_port() -> Iterator[int]:
    yield from _serve()


@pytest.fixture
def resolver() -> Iterator[list[str]]:
    """Resolves NAME (and `localhost`) to 127.0.0.1 and records every lookup."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host in (NAME, "localhost"):
            return ["127.0.0.1"]
        raise socket.gaierror(host)

    netguard.set_resolver(resolve)
    yield asked
    netguard.set_resolver(None)


def test_a_name_is_resolved_by_the_guard_and_the_host_header_keeps_the_name(
    port: int, resolver: list[str]
) -> None:
    with GuardedClient(LOCAL) as client:
        fetched = client.get(f"http://{NAME}:{port}/x")
    assert fetched.status == 200 and fetched.body == b'{"ok": true}'
    assert resolver == [NAME]  # one lookup, by the guard, the socket went to its answer
    assert _Handler.seen == [("/x", f"{NAME}:{port}")]


def test_a_deployed_client_refuses_loopback_before_any_socket_opens(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: opened.append(a))
    with (
        GuardedClient(Settings(local_mode=False)) as client,
        pytest.raises(ConnectionFailed) as refused,
    ):
        client.get(f"https://127.0.0.1:{port}/x")
    assert refused.value.stage == "policy" and opened == []


def test_plain_http_is_refused_outside_local_mode() -> None:
    with (
        GuardedClient(Settings(local_mode=False)) as client,
        pytest.raises(ConnectionFailed) as refused,
    ):
        client.get("http://example.com/")
    assert refused.value.stage == "config"


def test_same_origin_redirects_are_followed_up_to_the_limit_and_each_hop_is_signed(
    port: int,
) -> None:
    signed: list[str] = []

    def sign(url: httpx.URL) -> httpx.URL:
        signed.append(url.path)
        return url.copy_set_param("key", "k-1")

    with GuardedClient(LOCAL) as client:
        fetched = client.get(f"http://127.0.0.1:{port}/hop/{MAX_REDIRECTS - 1}", sign=sign)
        assert fetched.status == 200 and fetched.url.path == "/ok"
        assert "key" not in str(fetched.url)  # the response's URL stays unsigned
        assert len(signed) == MAX_REDIRECTS + 1
        assert all("key=k-1" in path for path, _ in _Handler.seen)
        with pytest.raises(ConnectionFailed, match=f"more than {MAX_REDIRECTS} times") as over:
            client.get(f"http://127.0.0.1:{port}/hop/{MAX_REDIRECTS}")
    assert over.value.stage == "http"


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/ok",  # another host name for the same server
        "http://127.0.0.1:{other}/ok",  # same host, another port
        "https://127.0.0.1:{port}/ok",  # another scheme
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_redirect_off_the_origin_is_refused_without_contacting_it(
    port: int, second_port: int, target: str
) -> None:
    location = target.format(port=port, other=second_port)
    with GuardedClient(LOCAL) as client, pytest.raises(ConnectionFailed) as refused:
        client.get(f"http://127.0.0.1:{port}/to?url={location}")
    assert refused.value.stage == "http" and "redirected" in refused.value.message
    assert [path for path, _ in _Handler.seen] == [f"/to?url={location}"]


def test_a_body_past_the_cap_is_refused_while_streaming(port: int) -> None:
    with GuardedClient(LOCAL, max_body_bytes=1 << 20) as client:
        started = time.monotonic()
        with pytest.raises(BodyTooLarge, match="larger than 1 MB") as refused:
            client.get(f"http://127.0.0.1:{port}/endless")
    assert refused.value.stage == "read" and refused.value.limit == 1 << 20
    assert time.monotonic() - started < 5


def test_a_streamed_read_returns_sized_chunks_and_stops_at_the_cap(port: int) -> None:
    with (
        GuardedClient(LOCAL, max_body_bytes=300_000) as client,
        client.open(f"http://127.0.0.1:{port}/endless") as response,
    ):
        assert len(response.read(1000)) == 1000
        assert len(response.read(200_000)) == 200_000
        with pytest.raises(BodyTooLarge):
            response.read(200_000)


def test_a_slow_answer_ends_at_the_timeout(port: int) -> None:
    with (
        GuardedClient(LOCAL, timeout_seconds=0.3) as client,
        pytest.raises(ConnectionFailed, match=r"did not answer within 0\.3 s") as slow,
    ):
        client.get(f"http://127.0.0.1:{port}/sleep")
    assert slow.value.stage == "timeout"


def test_trickled_headers_end_at_the_deadline(port: int) -> None:
    deadline = time.monotonic() + 1.0
    started = time.monotonic()
    with (
        GuardedClient(LOCAL, timeout_seconds=20, deadline=deadline) as client,
        pytest.raises(ConnectionFailed, match="time ran out") as late,
    ):
        client.get(f"http://127.0.0.1:{port}/trickle")
    assert late.value.stage == "timeout"
    assert time.monotonic() - started < 3


def test_a_request_after_the_deadline_is_not_sent(port: int) -> None:
    with (
        GuardedClient(LOCAL, deadline=time.monotonic() - 1) as client,
        pytest.raises(ConnectionFailed, match="time ran out"),
    ):
        client.get(f"http://127.0.0.1:{port}/x")
    assert _Handler.seen == []


@pytest.fixture
def tls_port() -> Iterator[tuple[int, ssl.SSLContext]]:
    """An https server whose certificate names only NAME, and a client context trusting
    its CA."""
    pki = make_pki()
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder, "c.pem"), Path(folder, "k.pem")
        cert.write_text(pki.other_name_server.cert)
        key.write_text(pki.other_name_server.key)
        server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cadata=pki.ca.cert)
    for served in _serve(server_side):
        yield served, client_side


def test_tls_verifies_the_name_while_connecting_to_the_pinned_address(
    tls_port: tuple[int, ssl.SSLContext], resolver: list[str]
) -> None:
    port, trusted = tls_port
    name = "db.other.example"  # the certificate's name
    netguard.set_resolver(lambda host, _port: ["127.0.0.1"])
    allowed = Settings(local_mode=False, allowed_cidrs=["127.0.0.1/32"])
    with GuardedClient(allowed, ssl_context=trusted) as client:
        assert client.get(f"https://{name}:{port}/x").status == 200
        with pytest.raises(ConnectionFailed) as wrong_name:
            client.get(f"https://localhost:{port}/x")  # same address, name not on the cert
    assert wrong_name.value.stage == "tls"
    assert _Handler.seen == [("/x", f"{name}:{port}")]
