"""Small pieces the services share."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING

from datasources.auth import Principal
from datasources.dal.keys import Tenant
from datasources.models.common import Scope
from datasources.types import choose_cursor as choose_cursor

if TYPE_CHECKING:
    from datasources.connectors.base import Connector, ConnectorContext
    from datasources.dal.sources import SourceRecord
    from datasources.models.connection import ConfigModel
    from datasources.services.lake_access import Reader

# Connector code and the connection-config models are imported inside the functions
# that open a source, so list, status and cleanup never load them at cold start.


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def tenant_for(principal: Principal, workspace_id: str, scope: Scope) -> Tenant:
    return Tenant(principal.organization, workspace_id, scope, principal.owner_for(scope))


def connector_context(reader: Reader, config: ConfigModel) -> ConnectorContext:
    """Settings, clients, and what this reader may read back from the landing bucket."""
    from datasources import aws
    from datasources.config import get_settings
    from datasources.connectors.base import ConnectorContext
    from datasources.limits import current_deadline
    from datasources.services.lake_access import lake_allowance

    return ConnectorContext(
        settings=get_settings(),
        s3_client_factory=aws.s3_client_factory,
        lake=lake_allowance(reader, config),
        deadline=current_deadline(),
    )


def open_config(config: ConfigModel, source_type: str, reader: Reader) -> Connector:
    """A connector for a config given in a request (test-connection)."""
    from datasources.connectors.registry import get_connector

    return get_connector(source_type, config, connector_context(reader, config))


def open_source(source: SourceRecord, tenant: Tenant) -> Connector:
    """A connector for a stored source, its secrets fetched from Secrets Manager.

    `tenant` is where the source lives: its scope and owner decide what it may read
    back from the landing bucket, looked up again at every opening.
    """
    from datasources.connectors.registry import get_connector
    from datasources.models.connection import merge_secrets
    from datasources.secrets_store import get_secrets
    from datasources.services.lake_access import Reader

    config = merge_secrets(source.type, source.connection_config, get_secrets(source.secret_arn))
    context = connector_context(Reader.of_source(tenant), config)
    return get_connector(source.type, config, context)
