"""A thin botocore event hook that injects network faults into the engine's AWS calls.

Installed on the service's cached clients (`datasources.aws.client`), it can
- lose the reply of a call that went through (the request is applied, then the SDK
  is told to retry it, exactly as after a connection reset on the way back), and
- reset the connection before a request is sent (the SDK retries it),
for chosen calls or at a random rate. It also records every call per phase, for the
IAM check.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ConnectionClosedError

Match = Callable[[str, dict[str, Any]], bool]  # (operation, params) -> inject here?


@dataclass
class Faults:
    seed: int = 7
    reset_rate: float = 0.0  # connections reset before the request is sent
    lost_reply_rate: float = 0.0  # replies lost after the request was applied
    lose_reply_of: list[Match] = field(default_factory=list)  # one-shot, by match
    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    phase: str = ""
    injected: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._pending_loss: set[int] = set()

    def install(self, services: tuple[str, ...] = ("dynamodb", "s3", "sqs")) -> Faults:
        from datasources import aws

        for service in services:
            events = aws.client(service).meta.events
            events.register_first("provide-client-params", self._before_call)
            events.register_first("before-send", self._before_send)
            events.register_first("needs-retry", self._needs_retry)
        return self

    # provide-client-params: decide, per logical call, whether its reply will be lost
    def _before_call(self, model: Any, params: dict[str, Any], context: Any, **_: Any) -> None:
        service = model.service_model.service_name
        with self._lock:
            self.calls.append((self.phase, service, model.name, params))
            lose = any(m(model.name, params) for m in self.lose_reply_of)
            if lose:
                self.lose_reply_of = [m for m in self.lose_reply_of if not m(model.name, params)]
            elif self.lost_reply_rate and self._random.random() < self.lost_reply_rate:
                lose = True
        if lose:
            context["fault_lose_reply"] = True

    def _before_send(self, request: Any, **_: Any) -> None:
        if self.reset_rate:
            with self._lock:
                reset = self._random.random() < self.reset_rate
            if reset:
                self.injected += 1
                raise ConnectionClosedError(endpoint_url=str(request.url))

    def _needs_retry(
        self, response: Any, attempts: int, caught_exception: Any, request_dict: Any, **_: Any
    ) -> int | None:
        context = request_dict.get("context") or {}
        if context.pop("fault_lose_reply", False) and caught_exception is None and response:
            # The request was applied; its reply is "lost": the SDK sends it again.
            with self._lock:
                self.injected += 1
            return 0
        return None


def transaction_touching(fragment: str) -> Match:
    """Matches a TransactWriteItems whose update expressions mention `fragment`."""

    def match(operation: str, params: dict[str, Any]) -> bool:
        if operation != "TransactWriteItems":
            return False
        return any(fragment in str(item) for item in params.get("TransactItems", []))

    return match


def update_setting(value: str) -> Match:
    """Matches an UpdateItem that sets some attribute to the string `value`."""

    def match(operation: str, params: dict[str, Any]) -> bool:
        values = params.get("ExpressionAttributeValues") or {}
        return operation == "UpdateItem" and {"S": value} in values.values()

    return match
