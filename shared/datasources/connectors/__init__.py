"""Connectors: one module per source kind, loaded lazily through `registry`."""
