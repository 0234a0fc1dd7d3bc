"""The `database` source's factory: the connector of the config's engine.

The engine modules import their drivers, so only the chosen one is loaded. Without an
engine in the config (a port that names none), the server is asked first
(`engine_probe`), through the SSRF-checked address, which the connector then keeps
using.
"""

from __future__ import annotations

from datasources.connectors.base import Connector, ConnectorContext
from datasources.connectors.sql.base import SqlConnector
from datasources.connectors.sql.engine_probe import complete_engine
from datasources.errors import ValidationFailed
from datasources.models.connection import DatabaseConfig


def open_database_connector(config: DatabaseConfig, context: ConnectorContext) -> Connector:
    """The registry factory: the connector for the config's engine (driver imported lazily)."""
    config, resolved = complete_engine(config, context.settings)
    connector: SqlConnector
    if config.engine == "postgresql":
        from datasources.connectors.sql.postgres import PostgresConnector

        connector = PostgresConnector(config, context)
    elif config.engine in ("mysql", "mariadb"):
        from datasources.connectors.sql.mysql import MySqlConnector

        connector = MySqlConnector(config, context)
    else:
        raise ValidationFailed(f"unknown database engine '{config.engine}'")
    if resolved is not None:
        connector._resolved = resolved
        connector.engine_detected = True
    return connector
