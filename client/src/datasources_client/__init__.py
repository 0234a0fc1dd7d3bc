"""Python client for the Data Sources API (`datasources_client.Client`) and the
`datasources` command line (`datasources_client.cli`)."""

__version__ = "0.1.0"

from datasources_client.client import Client
from datasources_client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    ConfigurationError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Throttled,
    TransportError,
    Unauthorized,
    ValidationFailed,
)
from datasources_client.models import (
    CleanupResult,
    Column,
    ConnectionTest,
    Preview,
    Schedule,
    Schema,
    Source,
    StreamProgress,
    SyncJob,
    Table,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "CleanupResult",
    "Client",
    "ClientError",
    "Column",
    "ConfigurationError",
    "Conflict",
    "ConnectionTest",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Preview",
    "Schedule",
    "Schema",
    "ServerError",
    "Source",
    "StreamProgress",
    "SyncJob",
    "Table",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "ValidationFailed",
    "__version__",
]
