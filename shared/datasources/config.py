"""Runtime configuration, parsed once from the environment at cold start."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field, field_validator


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

    # Limits (documented in the README).
    max_body_bytes: int = 262_144
    max_sources_per_request: int = 25
    list_page_size: int = 50
    max_list_page_size: int = 200

    # Sync engine.
    sync_time_budget_seconds: float = 20.0
    worker_reserve_seconds: float = 30.0
    default_batch_size: int = 10_000
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
        """Read the `DS_`-free, upper-case environment names that template.yaml sets."""
        names = {
            "table_name": "TABLE_NAME",
            "bucket_name": "BUCKET_NAME",
            "queue_url": "QUEUE_URL",
            "dead_letter_queue_url": "DEAD_LETTER_QUEUE_URL",
            "secret_prefix": "SECRET_PREFIX",
            "aws_endpoint_url": "AWS_ENDPOINT_URL",
            "aws_region": "AWS_REGION",
            "jwt_secret": "JWT_SECRET",
            "jwt_secret_arn": "JWT_SECRET_ARN",
            "jwks_url": "JWKS_URL",
            "jwt_algorithms": "JWT_ALGORITHMS",
            "jwt_issuer": "JWT_ISSUER",
            "jwt_audience": "JWT_AUDIENCE",
            "max_token_bytes": "MAX_TOKEN_BYTES",
            "local_mode": "LOCAL_MODE",
            "allowed_cidrs": "ALLOWED_CIDRS",
            "max_body_bytes": "MAX_BODY_BYTES",
            "max_sources_per_request": "MAX_SOURCES_PER_REQUEST",
            "sync_time_budget_seconds": "SYNC_TIME_BUDGET_SECONDS",
            "worker_reserve_seconds": "WORKER_RESERVE_SECONDS",
            "default_batch_size": "DEFAULT_BATCH_SIZE",
            "job_lease_seconds": "JOB_LEASE_SECONDS",
            "max_receives": "MAX_RECEIVES",
            "retry_delay_seconds": "RETRY_DELAY_SECONDS",
            "job_ttl_days": "JOB_TTL_DAYS",
            "secret_recovery_days": "SECRET_RECOVERY_DAYS",
            "schedule_group": "SCHEDULE_GROUP",
            "scheduler_role_arn": "SCHEDULER_ROLE_ARN",
            "trigger_queue_arn": "TRIGGER_QUEUE_ARN",
            "trigger_queue_url": "TRIGGER_QUEUE_URL",
            "event_bus_name": "EVENT_BUS_NAME",
            "trigger_dedup_days": "TRIGGER_DEDUP_DAYS",
        }
        values = {field: os.environ[env] for field, env in names.items() if os.environ.get(env)}
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings.from_env()
