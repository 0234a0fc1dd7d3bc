"""The `api` connector: HTTP JSON APIs, in the shape of dlt's REST client helpers.

`connector` (the `ApiConnector` the registry builds) pages through resources with a
`paginators` class per pagination kind, finds the records in each body (`records`),
types them (`typing`), and sends every request through `client`: the egress module's
SSRF-guarded client with the source's auth, secret redaction and the backoff policy of
`retry`.
"""

from datasources.connectors.api.connector import ApiConnector

__all__ = ["ApiConnector"]
