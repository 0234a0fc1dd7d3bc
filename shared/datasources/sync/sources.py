"""A stored source opened as a connector: its secrets revealed, its reach into the
landing bucket resolved for the tenant it lives in. Used by the engine and by the
schema and preview services alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasources.connectors.base import Connector
    from datasources.dal.keys import Tenant
    from datasources.dal.sources import SourceRecord

# Connector code and the connection-config models are imported inside the function,
# so the modules that import this one never load them at cold start.


def open_source(source: SourceRecord, tenant: Tenant) -> Connector:
    """A connector for a stored source, its secrets fetched from Secrets Manager.

    `tenant` is where the source lives: its scope and owner decide what it may read
    back from the landing bucket, looked up again at every opening.
    """
    from datasources.aws.secrets import get_secrets
    from datasources.connectors.registry import open_connector
    from datasources.dal.lake_access import Reader, lake_allowance
    from datasources.models.connection import merge_secrets

    config = merge_secrets(source.type, source.connection_config, get_secrets(source.secret_arn))
    return open_connector(source.type, config, lake_allowance(Reader.of_source(tenant), config))
