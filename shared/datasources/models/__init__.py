"""Pydantic request, response and configuration models."""
