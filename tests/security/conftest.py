"""Helpers of the security suite: capture every log record, scan texts for planted secrets.

The suite reuses `stack` (tests/conftest.py): the real handlers, in-process, against
emulated AWS provisioned from template.yaml.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pytest


class RecordingHandler(logging.Handler):
    """Keeps every record whole: message, args, `extra` fields and traceback text.

    A plain formatter would print only the message; Powertools' JSON logger also prints
    the `extra` keys, so a secret hidden in one of those must be caught too.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in record.__dict__.items() if k not in ("exc_info", "args")}
        text = json.dumps(fields, default=repr)
        try:
            text += " " + record.getMessage()
        except Exception:  # a bad format string must not hide the rest
            text += f" {record.msg!r} {record.args!r}"
        if record.exc_info:
            text += " " + logging.Formatter().formatException(record.exc_info)
        if record.stack_info:
            text += " " + record.stack_info
        if self.formatter is not None:
            # The exact line Powertools prints to stdout (its JSON formatter).
            text += " " + self.format(record)
        self.lines.append(text)


@pytest.fixture
def all_logs() -> Iterator[RecordingHandler]:
    """Every log line at every level: the root logger and the service's logger at DEBUG.

    Third-party loggers (botocore, httpx, urllib3, ...) are left as they are configured,
    so what they would print with the root logger at DEBUG is captured too. Powertools
    prints JSON lines to stdout through its own handler; this handler sits beside it on
    the same logger with the same formatter, so it records exactly those lines. (pytest's
    capsys cannot be used for them: Powertools binds sys.stdout once, at import.)
    """
    from datasources.observability import logger as service_logger

    handler = RecordingHandler()
    root = logging.getLogger()
    service = logging.getLogger(service_logger.name)
    saved = (root.level, service.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    formatter = getattr(service_logger, "registered_formatter", None)
    if formatter is not None:
        handler.setFormatter(formatter)
    if not service.propagate:
        service.addHandler(handler)
    service_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        service.removeHandler(handler)
        root.setLevel(saved[0])
        service.setLevel(saved[1])


def leaks(secrets: Iterable[str], texts: Iterable[tuple[str, str]]) -> list[str]:
    """`where: secret` for each (where, text) that contains one of the secrets."""
    found = []
    secret_list = [s for s in secrets if s]
    for where, text in texts:
        for secret in secret_list:
            if secret in text:
                start = max(0, text.index(secret) - 120)
                found.append(f"{where}: {secret!r} in …{text[start : start + 300]}…")
    return found


def as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
