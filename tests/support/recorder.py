"""A stand-in for handler modules, for tests of the local gateway and worker loop."""

from __future__ import annotations

import json
from typing import Any


class Recorder:
    """Stands in for handler modules: records events, answers as told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Any]] = []
        self.answer: Any = None

    def loader(self, code_uri: str, handler: str = "app.handler") -> Any:
        def handle(event: dict[str, Any], context: Any) -> Any:
            self.events.append((code_uri, event, context))
            if isinstance(self.answer, BaseException):
                raise self.answer
            if self.answer is not None:
                return self.answer
            return {
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"status": "success", "message": "ok", "data": None}),
            }

        return handle
