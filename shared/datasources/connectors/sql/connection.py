"""What connecting to a database needs on every engine: the TLS mode a config gets by
default, its PEM material as files, the name of the TLS check that failed, and driver
messages made safe to show.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from datasources.errors import ConnectionFailed
from datasources.models.connection import DatabaseConfig, reveal
from datasources.netguard import ResolvedHost


def effective_ssl_mode(config: DatabaseConfig, resolved: ResolvedHost) -> str:
    """The TLS mode to use: the configured one; else `verify-full` with a CA bundle given,
    else `require` unless the host is loopback.

    A database across a network must not be read in clear text by default; a loopback
    server (local mode) usually has no certificate, so it gets `prefer`.
    """
    if config.ssl_mode is not None:
        return config.ssl_mode
    if config.ssl_root_cert:
        return "verify-full"  # a CA given is a CA to verify against
    try:
        address = ipaddress.ip_address(resolved.address)
    except ValueError:
        return "require"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return "prefer" if address.is_loopback else "require"


@contextmanager
def tls_files(config: DatabaseConfig) -> Iterator[dict[str, str]]:
    """The config's PEM material in private temporary files, removed on exit.

    Drivers take certificates and keys as file paths. Keys `root`, `cert`, `key` are
    present when the config has them; the files exist only while the connection is made
    (0600 in a 0700 folder, as libpq insists for a key).
    """
    pems = {
        "root": config.ssl_root_cert,
        "cert": config.ssl_cert,
        "key": reveal(config.ssl_key),
    }
    if not any(pems.values()):
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="ds-tls-") as folder:
        paths: dict[str, str] = {}
        for name, text in pems.items():
            if text:
                path = os.path.join(folder, f"{name}.pem")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                paths[name] = path
        yield paths


# Driver and OpenSSL phrases -> which TLS check failed, most specific first (a name
# mismatch is also a "certificate verify failed" in Python's ssl).
_TLS_FAILURES = (
    (
        ("does not support ssl", "doesn't support it", "ssl is required but", "no tls offered"),
        "the server does not offer TLS",
    ),
    (
        ("does not match host name", "hostname mismatch", "ip address mismatch"),
        "the server certificate is for another name than the host (name mismatch)",
    ),
    (
        ("certificate verify failed", "unable to get local issuer", "self-signed certificate"),
        "the server certificate is not signed by a trusted CA (untrusted CA)",
    ),
    (
        (
            "certificate required",
            "client certificate",
            "certificate authentication failed",
            "alert unknown ca",
            "alert bad certificate",
            "key values mismatch",
        ),
        "the client certificate or key was refused",
    ),
)
_TLS_WORDS = ("ssl", "tls", "certificate")


def tls_failure(where: str, ssl_mode: str, text: str) -> ConnectionFailed | None:
    """A ConnectionFailed(stage='tls') naming the check that failed, if `text` is about TLS."""
    low = text.lower()
    reason = next(
        (why for phrases, why in _TLS_FAILURES if any(phrase in low for phrase in phrases)), None
    )
    if reason is None:
        if not any(word in low for word in _TLS_WORDS):
            return None
        reason = "the TLS handshake failed"
    return ConnectionFailed(
        f"TLS to {where} failed: {reason} (ssl_mode '{ssl_mode}'): {text}",
        stage="tls",
        details={"ssl_mode": ssl_mode},
    )


_URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_KV_SECRET_RE = re.compile(
    r"\b(password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*('[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)


def sanitize_message(text: str, secrets: Sequence[str | None] = ()) -> str:
    """A driver message made safe to show: no DSN/URL, no `password=...`, no known secret."""
    cleaned = _URL_RE.sub("<url>", text)
    cleaned = _KV_SECRET_RE.sub(lambda m: f"{m.group(1)}=<hidden>", cleaned)
    for secret in secrets:
        if secret and len(secret) >= 3:
            cleaned = cleaned.replace(secret, "<hidden>")
    # Drivers add hints over several lines ("Is the server running ..."): keep it short.
    lines = [line.strip() for line in cleaned.strip().splitlines() if line.strip()]
    return " ".join(lines)[:500]
