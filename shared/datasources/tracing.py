"""The Powertools tracer, for the functions that reach a source (sync, worker,
test-connection, schema): their time goes to drivers and remote calls worth tracing."""

from __future__ import annotations

from aws_lambda_powertools import Tracer

tracer = Tracer()
