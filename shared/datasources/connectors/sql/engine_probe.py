"""Which database engine listens on a port, asked of the server itself (no driver).

A MySQL or MariaDB server speaks first: its handshake packet carries protocol version
10 and a version string that names MariaDB. A PostgreSQL server waits for the client
and answers an `SSLRequest` with one byte, `S` or `N`. The probe connects to the
address the SSRF guard resolved (never the name again), waits briefly for a greeting,
sends an `SSLRequest` only if none came, and gives up at `timeout` in total. It uses
the standard library only, so the light connect function can run it.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from datasources.errors import ConnectionFailed
from datasources.netguard import ResolvedHost, resolve_host

if TYPE_CHECKING:
    from datasources.config import Settings
    from datasources.models.connection import DatabaseConfig

Engine = Literal["postgresql", "mysql", "mariadb"]

# How long to wait for a MySQL greeting before speaking: sending PostgreSQL's request
# to a MySQL server that is merely slow counts as a failed handshake there (and those
# can block the client's host), so it is sent only after this quiet time. A greeting
# that comes later still wins: it is in the stream before any answer to our request.
GREETING_WAIT_SECONDS = 0.5
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_MYSQL_PROTOCOL = 10


@dataclass(frozen=True)
class ProbeResult:
    engine: Engine
    server_version: str | None = None
    # PostgreSQL only: whether the server agreed to TLS (`S`) or not (`N`).
    tls_offered: bool | None = None


def parse_mysql_greeting(data: bytes) -> ProbeResult | None:
    """The engine named by a MySQL handshake (or error) packet, else None."""
    if len(data) < 5:
        return None
    length = int.from_bytes(data[:3], "little")
    if data[3] != 0 or length < 1 or length > 1 << 16:
        return None
    body = data[4 : 4 + length]
    if body[0] == 0xFF and len(body) >= 3:
        # An error instead of a greeting ("too many connections", "host blocked").
        return ProbeResult("mysql")
    if body[0] != _MYSQL_PROTOCOL:
        return None
    end = body.find(b"\0", 1)
    if end <= 1:
        return None
    try:
        version = body[1:end].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not version[:1].isdigit():
        return None
    engine: Engine = "mariadb" if "mariadb" in version.lower() else "mysql"
    return ProbeResult(engine, server_version=version)


def detect_engine(address: str, port: int, timeout: float, where: str) -> ProbeResult:
    """The engine at `address:port`; ConnectionFailed with stage tcp, timeout or protocol.

    `where` names the server in messages (the host as configured, and the port).
    """
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _silent(where, timeout)
        return left

    try:
        sock = socket.create_connection((address, port), timeout=remaining())
    except TimeoutError:
        raise _silent(where, timeout, connecting=True) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConnectionFailed(
            f"could not connect to {where}: {reason}; is a database server listening there?",
            stage="tcp",
        ) from None
    with sock:
        data = b""
        try:
            sock.settimeout(min(GREETING_WAIT_SECONDS, remaining()))
            data = _recv_some(sock)
        except TimeoutError:
            pass
        except OSError as exc:
            raise _closed(where, exc) from None
        if not data:
            try:
                sock.settimeout(remaining())
                sock.sendall(_SSL_REQUEST)
                data = _recv_some(sock)
            except TimeoutError:
                raise _silent(where, timeout) from None
            except OSError as exc:
                raise _closed(where, exc) from None
        # A greeting may come in pieces: read until the packet is whole or time is up.
        while _partial_greeting(data):
            try:
                sock.settimeout(remaining())
                more = _recv_some(sock)
            except (TimeoutError, ConnectionFailed, OSError):
                break
            if not more:
                break
            data += more
    found = parse_mysql_greeting(data)
    if found is not None:
        return found
    if data in (b"S", b"N"):
        return ProbeResult("postgresql", tls_offered=data == b"S")
    if data[:1] == b"E" and b"SFATAL" in data[:64]:
        # A PostgreSQL server too old (or a pooler) that rejects SSLRequest with an error.
        return ProbeResult("postgresql", tls_offered=False)
    raise ConnectionFailed(
        f"the server at {where} speaks neither the PostgreSQL nor the MySQL/MariaDB "
        "protocol: check the port, or set 'engine'",
        stage="protocol",
    )


def _partial_greeting(data: bytes) -> bool:
    """Whether `data` looks like the start of a MySQL packet that is not whole yet."""
    if len(data) < 4:
        return len(data) > 1 or data[:1] not in (b"", b"S", b"N", b"E")
    length = int.from_bytes(data[:3], "little")
    return data[3] == 0 and length <= 1024 and len(data) < 4 + length


def _recv_some(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def _silent(where: str, timeout: float, *, connecting: bool = False) -> ConnectionFailed:
    if connecting:
        text = f"connecting to {where} timed out after {timeout:g} s"
    else:
        text = (
            f"the server at {where} accepted the connection but did not answer as a database "
            f"within {timeout:g} s"
        )
    return ConnectionFailed(text + ": check the host, port and firewall rules", stage="timeout")


def _closed(where: str, exc: OSError) -> ConnectionFailed:
    reason = exc.strerror or type(exc).__name__
    return ConnectionFailed(
        f"the server at {where} closed the connection before it said what it is ({reason})",
        stage="protocol",
    )


def complete_engine(
    config: DatabaseConfig, settings: Settings
) -> tuple[DatabaseConfig, ResolvedHost | None]:
    """The config with its engine, asked of the server when absent, and the address used.

    The host is resolved once through the SSRF guard and the probe connects to that
    address; the caller connects to the same one (the ResolvedHost, None when the
    engine was already known and nothing was resolved).
    """
    if config.engine is not None:
        return config, None
    resolved = resolve_host(
        config.host,
        config.port,
        local_mode=settings.local_mode,
        allowed_cidrs=settings.allowed_cidrs,
    )
    found = detect_engine(
        resolved.address, config.port, config.connect_timeout, f"{config.host}:{config.port}"
    )
    return config.model_copy(update={"engine": found.engine}), resolved
