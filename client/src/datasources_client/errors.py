"""Errors the client raises. API errors carry the status, `code`, message and request id."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of everything this package raises."""


class ConfigurationError(ClientError):
    """The client cannot be built: no URL or token (names the variable to set)."""


class TransportError(ClientError):
    """The API could not be reached (connection refused, timeout) after the retries."""


class ApiError(ClientError):
    """The API answered with an error envelope (or a non-JSON error page)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.data = data or {}

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Validation problems (422): `{loc, msg, type}` each."""
        return list(self.data.get("errors") or [])


class BadRequest(ApiError):
    """400: malformed request, or a source that could not be reached (`stage`)."""

    @property
    def stage(self) -> str | None:
        return self.data.get("stage")


class Unauthorized(ApiError):
    """401: missing, expired or invalid token."""


class Forbidden(ApiError):
    """403: the token's role may not do this."""


class NotFound(ApiError):
    """404: unknown source, job or stream (or another tenant's, which looks the same)."""


class Conflict(ApiError):
    """409: duplicate source name, or a sync of the source is already running."""

    @property
    def running_job_id(self) -> str | None:
        return self.data.get("running_job_id")


class PayloadTooLarge(ApiError):
    """413: the request body is too large."""


class ValidationFailed(ApiError):
    """422: the request failed validation; `errors` lists each problem."""


class Throttled(ApiError):
    """429: throttled, and still throttled after the retries."""


class ServerError(ApiError):
    """5xx: the API failed; quote `request_id` when reporting it."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: Throttled,
}


def error_for(
    status: int, code: str, message: str, request_id: str | None, data: dict[str, Any] | None
) -> ApiError:
    """The exception class for an HTTP status, built from the error envelope."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, code, message, request_id, data)
