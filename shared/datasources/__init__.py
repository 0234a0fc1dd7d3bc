"""Data Sources API shared layer: models, auth, storage, connectors and the sync engine."""
