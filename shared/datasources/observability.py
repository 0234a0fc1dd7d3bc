"""Powertools logger and metrics shared by every handler (service name from env).

The tracer lives in `datasources.tracing`: importing it costs ~200 ms of cold start
(the X-Ray SDK builds its clients at import), so only the functions that reach a
source use it; Lambda's active tracing still records every invocation.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

# Wire-level loggers of the AWS SDK and the HTTP clients print request and response
# bodies and URLs: botocore logs CreateSecret/GetSecretValue payloads at DEBUG, httpx
# logs every URL (a query-string api key included) at INFO and httpcore the response
# headers at DEBUG. Capped at WARNING, they stay silent even when the root logger runs
# at DEBUG (e.g. Lambda's ApplicationLogLevel), so credentials never reach a log line.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore")
for _name in WIRE_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)


def sanitized_traceback(exc: BaseException) -> str:
    """Where a failure happened, never what it said.

    The frames (file, line, function) and the exception's type, without its message or
    any local value: a driver's or SDK's message can quote a DSN, a URL with a key or
    a request body. The caller logs its own safe description beside it.
    """
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
    chain = type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        chain += f" (from {type(cause).__name__})"
    return "Traceback (most recent call last):\n" + "\n".join(lines) + f"\n{chain}"


def log_failure(message: str, exc: BaseException, description: str) -> None:
    """Log a failed unit of work: a safe description and a sanitized traceback."""
    logger.error(
        message,
        extra={
            "error": description,
            "error_type": type(exc).__name__,
            "stage": getattr(exc, "stage", None),
            "traceback": sanitized_traceback(exc),
        },
    )


def unit_metrics(*, records: int, size: int, parts: int, seconds: float) -> None:
    """What one worker invocation moved: emitted where the parts were committed."""
    from aws_lambda_powertools.metrics import MetricUnit

    metrics.add_metric(name="RecordsSynced", unit=MetricUnit.Count, value=records)
    metrics.add_metric(name="BytesWritten", unit=MetricUnit.Bytes, value=size)
    metrics.add_metric(name="PartsWritten", unit=MetricUnit.Count, value=parts)
    metrics.add_metric(name="UnitDuration", unit=MetricUnit.Seconds, value=round(seconds, 3))


def failure_metric(exc: BaseException) -> None:
    """One failed attempt, by stage (a connector's `stage`, else the error's kind)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    stage = str(getattr(exc, "stage", None) or getattr(exc, "code", None) or "unexpected")
    with single_metric(
        name="SyncFailures", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as metric:
        metric.add_dimension(name="stage", value=stage)
