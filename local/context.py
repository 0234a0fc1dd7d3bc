"""The context object Lambda hands a handler, as the local stack, the tests and the bench fake it.

The bench imports this module inside a cold-start measurement, before `import app`:
it uses only modules the bench has loaded already (no typing, no dataclasses), so
nothing the handler imports is loaded early and left out of the handler's time.
"""

import time
import uuid

from local import LOCAL_ACCOUNT_ID, LOCAL_REGION


class FakeLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read.

    The remaining time counts down from `timeout_seconds`, as Lambda's does. `frozen`
    makes it report `timeout_seconds` on every call instead, for tests whose outcome
    must not depend on how fast the machine runs them.
    """

    def __init__(
        self,
        function_name: str = "test-function",
        timeout_seconds: float = 29.0,
        memory_limit_in_mb: int = 128,
        *,
        frozen: bool = False,
    ) -> None:
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.memory_limit_in_mb = memory_limit_in_mb
        self.function_version = "$LATEST"
        self.aws_request_id = str(uuid.uuid4())
        self.identity: object = None
        self.client_context: object = None
        self.frozen = frozen
        self._deadline = time.monotonic() + timeout_seconds

    def __repr__(self) -> str:
        return (
            f"FakeLambdaContext(function_name={self.function_name!r}, "
            f"timeout_seconds={self.timeout_seconds!r}, frozen={self.frozen!r})"
        )

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{time.strftime('%Y/%m/%d')}/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout, as Lambda reports them."""
        if self.frozen:
            return int(self.timeout_seconds * 1000)
        return max(0, int((self._deadline - time.monotonic()) * 1000))
