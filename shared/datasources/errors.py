"""Domain exceptions. `datasources.http` maps each to one status code and the envelope."""

from __future__ import annotations

from typing import Any


class DataSourcesError(Exception):
    """Base of every error the API reports to a caller. `message` is safe to show."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(DataSourcesError):
    status_code = 400
    code = "bad_request"


class Unauthorized(DataSourcesError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DataSourcesError):
    status_code = 403
    code = "forbidden"


class NotFound(DataSourcesError):
    status_code = 404
    code = "not_found"


class SourceNotFound(NotFound):
    code = "source_not_found"


class StreamNotFound(NotFound):
    code = "stream_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class Conflict(DataSourcesError):
    status_code = 409
    code = "conflict"


class NameConflict(Conflict):
    code = "name_conflict"


class SyncAlreadyRunning(Conflict):
    code = "sync_already_running"


class PayloadTooLarge(DataSourcesError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(DataSourcesError):
    status_code = 422
    code = "validation_error"


class NotSupported(DataSourcesError):
    """A source type whose connector does not exist yet: a clear refusal, never a fake success."""

    status_code = 422
    code = "not_supported"


class Throttled(DataSourcesError):
    status_code = 429
    code = "throttled"


class ConnectionFailed(DataSourcesError):
    """A source could not be reached or used. `stage` says where: dns, tcp, timeout, tls,
    auth, database, permission, query, http, read, config."""

    status_code = 400
    code = "connection_failed"

    def __init__(self, message: str, *, stage: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={"stage": stage, **(details or {})})
        self.stage = stage


class SourceReadError(DataSourcesError):
    """A source failed while a sync was reading it (dropped table, server gone, bad file)."""

    status_code = 502
    code = "source_read_error"


class SourceConnectionLost(SourceReadError):
    """The connection to a source dropped mid-read: the stream can resume from its last
    checkpoint, so the sync retries it."""


class StreamUnreadable(SourceReadError):
    """A lasting condition of one stream (a materialized view never refreshed, no SELECT
    permission, a value that cannot be read): retrying cannot help. The stream fails at
    once with what to do; the job's other streams go on."""


class StorageError(DataSourcesError):
    """DynamoDB, S3, SQS or Secrets Manager failed in a way the caller cannot fix."""

    status_code = 500
    code = "storage_error"


class ServiceUnavailable(DataSourcesError):
    """A dependency the service needs for every request (the token signing key) cannot be
    read right now: the caller may try again shortly."""

    status_code = 503
    code = "service_unavailable"
