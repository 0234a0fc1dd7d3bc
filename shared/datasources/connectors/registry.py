"""Connectors by source `type`, imported only when a source of that type is used.

A connector is opened from resolved inputs only: its config with the secrets already
revealed and what it may read back from the landing bucket. The callers (services,
sync) look those up; this package never reads the table or Secrets Manager.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

from datasources.connectors.base import Connector, ConnectorContext
from datasources.errors import NotSupported
from datasources.models.connection import ConfigModel

if TYPE_CHECKING:
    from datasources.lake import LakeAllowance

# type -> "module:factory". The factory takes (config, context) and returns a Connector.
_FACTORIES: dict[str, str] = {
    "file": "datasources.connectors.file:FileConnector",
    "database": "datasources.connectors.sql.factory:open_database_connector",
    "api": "datasources.connectors.api:ApiConnector",
}


# Modules holding a connector or an engine of one, with their drivers.
_MODULES = (
    "datasources.connectors.file",
    "datasources.connectors.sql.factory",
    "datasources.connectors.sql.postgres",
    "datasources.connectors.sql.mysql",
    "datasources.connectors.api",
)


def load_all() -> None:
    """Import every connector and its driver now (for the functions that read sources)."""
    for module_name in _MODULES:
        importlib.import_module(module_name)


def get_connector(source_type: str, config: ConfigModel, context: ConnectorContext) -> Connector:
    """Build the connector for a source; NotSupported when that kind has none yet."""
    target = _FACTORIES.get(source_type)
    if target is None:
        raise NotSupported(f"source type '{source_type}' is not supported")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise NotSupported(
                f"'{source_type}' sources can be connected, listed and cleaned up, "
                "but their connector is not available yet"
            ) from None
        raise
    factory = getattr(module, attr)
    connector: Connector = factory(config, context)
    return connector


def open_connector(source_type: str, config: ConfigModel, lake: LakeAllowance) -> Connector:
    """A connector for `config` (secrets included), with the settings, the AWS clients,
    what it may read from the landing bucket (`lake`) and the current deadline."""
    from datasources.aws import s3
    from datasources.config import get_settings
    from datasources.limits import current_deadline

    context = ConnectorContext(
        settings=get_settings(),
        s3_client_factory=s3.client_factory,
        lake=lake,
        deadline=current_deadline(),
    )
    return get_connector(source_type, config, context)


def file_pattern(pattern: str) -> re.Pattern[str]:
    """A file source's `pattern` as the file connector matches keys relative to its prefix."""
    from datasources.connectors.file.objects import glob_regex

    return glob_regex(pattern)
