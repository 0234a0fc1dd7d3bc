"""Runtime configuration, parsed once from the environment at cold start."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field, field_validator

from datasources.limits import DEFAULT_BATCH_SIZE


class Settings(BaseModel):
    """Every environment variable the service reads, in one typed model."""

    table_name: str = "datasources"
    bucket_name: str = "datasources-landing"
    queue_url: str = ""
    # Where the worker puts a continuation it gives up on (the sync queue's DLQ).
    dead_letter_queue_url: str = ""
    secret_prefix: str = "datasources"  # noqa: S105 - a name prefix, not a secret
    # Endpoint of an emulated AWS (moto server) in local mode; unset in a deployed stack.
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"

    # Auth. Either an HS256 secret (value or Secrets Manager ARN) or a JWKS URL for RS256/ES256.
    jwt_secret: str | None = None
    jwt_secret_arn: str | None = None
    jwks_url: str | None = None
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    max_token_bytes: int = 8192

    # Local mode lets connectors reach loopback hosts (a database on this machine);
    # a deployed stack refuses private and loopback addresses unless allowlisted.
    local_mode: bool = False
    allowed_cidrs: list[str] = Field(default_factory=list)

    # Limits (documented in the README); the ones a request model checks are in `models`.
    max_body_bytes: int = 262_144

    # Sync engine.
    sync_time_budget_seconds: float = 20.0
    worker_reserve_seconds: float = 30.0
    # For a job whose options lack a batch size; a request's own default is the same.
    default_batch_size: int = DEFAULT_BATCH_SIZE
    job_lease_seconds: int = 900
    # SQS receives before a unit is marked failed (the queue's maxReceiveCount moves it to the DLQ).
    max_receives: int = 3
    # First retry delay of a failed continuation; doubled per attempt without progress.
    retry_delay_seconds: int = 30
    job_ttl_days: int = 90
    secret_recovery_days: int = 7

    # Triggers and events. The schedule function manages one EventBridge Scheduler
    # schedule per source in `schedule_group`; each sends to the trigger queue as
    # `scheduler_role_arn`. Ended jobs put their event on `event_bus_name`.
    schedule_group: str = ""
    scheduler_role_arn: str = ""
    trigger_queue_arn: str = ""
    trigger_queue_url: str = ""
    event_bus_name: str = "default"
    # How long a trigger's idempotency record is kept (duplicate deliveries come
    # within minutes; Scheduler and EventBridge retry for up to 24 hours).
    trigger_dedup_days: int = 2

    @field_validator("jwt_algorithms", "allowed_cidrs", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def from_env(cls) -> Settings:
        """Each field from the variable of its own name in upper case (`table_name` from
        TABLE_NAME), as template.yaml sets them; unset or empty keeps the default."""
        values = {
            name: os.environ[env_name(name)]
            for name in cls.model_fields
            if os.environ.get(env_name(name))
        }
        return cls.model_validate(values)


def env_name(field: str) -> str:
    """The environment variable a settings field is read from."""
    return field.upper()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings.from_env()
